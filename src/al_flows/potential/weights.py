"""Serialisation of a member (any ``ModelSettings.kind``): weights files (``torch.save`` of plain
data, read back with ``weights_only=True``) and their base64 text for the stores.

A file holds the state dict, the :class:`~al_flows.potential.model.ModelSettings`, the elements,
the per-element energy references (eV), the energy scale (eV) and a plain ``extra`` dict. The
settings leave out ``kind`` and ``lmax`` at their SchNet defaults (:func:`stored_settings`), so a
SchNet member's file is byte for byte what earlier versions wrote and read; a PaiNN or SO3net file
names its kind (an earlier version refuses it: unknown key ``kind``).
"""

from __future__ import annotations

import base64
import io
import pickle
import sys
from typing import Any

import numpy as np
import schnetpack as spk
import torch
from ase.data import chemical_symbols

from al_flows.potential.model import ModelSettings, build_member, energy_reference, member_elements, member_kind

__all__ = ["BLOB_FORMAT", "stored_settings", "member_to_bytes", "member_from_bytes", "weights_text", "weights_bytes"]

BLOB_FORMAT = "al_flows.schnet_member/1"


def _plain(obj: Any, where: str = "extra") -> Any:
    """Copy of ``obj`` made of types torch.load(weights_only=True) reads back (dict, list, str, int,
    float, bool, None, tensor); numpy scalars/arrays and str subclasses are converted. Strings are
    interned: pickle writes a string seen before as a reference to the same object, so a file's bytes
    (and the model id, their hash) depend on the values only, never on where a string came from (a
    device name read from the environment or written in the code)."""
    if type(obj) is str:
        return sys.intern(obj)
    if obj is None or type(obj) in (int, float, bool):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, str):
        return sys.intern(str(obj))
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            out[_plain(k) if isinstance(k, str) else k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored; use plain str/int/float/list/dict/tensor")


def stored_settings(settings: ModelSettings) -> dict:
    """``settings`` as a weights file holds them: ``model_dump()`` without ``kind`` when it is
    ``schnet`` and without ``lmax`` when it is None (the keys earlier versions did not have)."""
    out = settings.model_dump()
    if out.get("kind") == "schnet":
        del out["kind"]
    if out.get("lmax") is None:
        out.pop("lmax", None)
    return out


def member_to_bytes(module: torch.nn.Module, settings: ModelSettings, extra: dict) -> bytes:
    """Serialise a member as ``torch.save`` of a plain dict (state dict tensors, settings, elements,
    per-element energy references in eV, ``extra``); readable with ``weights_only=True``."""
    if member_kind(module) != settings.kind:
        raise ValueError(f"settings: model.kind is {settings.kind} but the module is a {member_kind(module)} member")
    extra = _plain(dict(extra or {}))
    ref = energy_reference(module)
    zs = member_elements(module)
    payload = {
        "format": BLOB_FORMAT,
        "settings": _plain(stored_settings(settings), "settings"),
        "elements": zs,
        "atomrefs_eV": {chemical_symbols[z]: float(ref.atomref[z]) for z in zs},
        "energy_scale_eV": float(ref.scale),
        "state_dict": {sys.intern(k): v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "extra": extra,
        "versions": _plain({"schnetpack": str(spk.__version__), "torch": str(torch.__version__)}, "versions"),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def member_from_bytes(blob: bytes) -> tuple[torch.nn.Module, ModelSettings, dict]:
    """Inverse of :func:`member_to_bytes` (``torch.load(weights_only=True)``); module in eval mode on CPU."""
    try:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model blob refused: it holds Python objects other than tensors and plain data, which are never "
            f"unpickled (torch.load weights_only=True): {first[:200]}; use a blob written by al_flows"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != BLOB_FORMAT:
        raise ValueError(f"not an al_flows member blob (expected format {BLOB_FORMAT!r})")
    settings = ModelSettings(**payload["settings"])
    module = build_member(settings, payload["elements"], seed=0)
    module.load_state_dict(payload["state_dict"])
    return module.eval(), settings, dict(payload.get("extra") or {})


def weights_text(blob: bytes) -> str:
    """Model weights (:func:`member_to_bytes` file bytes) as base64 text for a ``model_blob`` field
    (blobs are text so that every store keeps them intact)."""
    return base64.b64encode(blob).decode("ascii")


def weights_bytes(text: str | bytes) -> bytes:
    """Inverse of :func:`weights_text`."""
    return base64.b64decode(text)
