"""An ensemble of members of one ``ModelSettings`` (one kind: SchNet, PaiNN or SO3net): batched
prediction, model deviation, ASE calculator.

Energies in eV, forces in eV/Angstrom, stresses (on request) in eV/Angstrom^3, ASE convention
(Voigt xx, yy, zz, yz, xz, xy; ``(1/V) dE/d eps``, tensile positive). The model deviation of a frame is
:func:`al_flows.potential.deviation.max_force_deviation` of the members' forces (DP-GEN; docs/methods.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import schnetpack.properties as P
import torch
from ase import Atoms
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)
from ase.data import chemical_symbols

from al_flows.potential.atom_energies import atom_energies, enable_atom_energies, intensive_energy_spread
from al_flows.potential.deviation import max_force_deviation
from al_flows.potential.inputs import collate_inputs, frame_inputs
from al_flows.potential.model import SO3NET_LMAX, ModelSettings, member_elements, member_kind
from al_flows.potential.stress import enable_stress, stress_enabled, stress_to_voigt
from al_flows.potential.weights import member_from_bytes

__all__ = ["EnsemblePrediction", "Ensemble", "EnsembleCalculator", "default_max_pairs", "pair_bytes"]

# bytes of prediction memory (forces by autograd) per neighbour pair, per interaction and per feature,
# measured on CPU (peak RSS of one batch, float32): SchNet 20, PaiNN 94, SO3net about 22 per nonzero
# Clebsch-Gordan coefficient of its lmax (10, 83, 353, 1158 for lmax 1 to 4: 235, 1783, 7376 measured
# for 1 to 3). Rounded up; the default pair cap gives every kind SchNet's memory.
_PAIR_BYTES = {"schnet": 24, "painn": 96}
_SO3NET_CG = {1: 10, 2: 83, 3: 353, 4: 1158}
_SCHNET_MAX_PAIRS = 400_000


def pair_bytes(settings: ModelSettings) -> int:
    """Approximate prediction memory per neighbour pair (bytes): a kind's measured bytes per pair,
    interaction and feature times ``n_interactions * n_atom_basis``."""
    if settings.kind == "so3net":
        per = 22 * _SO3NET_CG[SO3NET_LMAX if settings.lmax is None else settings.lmax]
    else:
        per = _PAIR_BYTES[settings.kind]
    return per * settings.n_interactions * settings.n_atom_basis


def default_max_pairs(settings: ModelSettings) -> int:
    """The neighbour pairs per collated batch that cost a member of ``settings`` what 400 000 pairs cost
    SchNet of the same size (400 000 for SchNet, 100 000 for PaiNN, 5 257 for SO3net with lmax 2)."""
    if settings.kind == "schnet":
        return _SCHNET_MAX_PAIRS
    schnet = pair_bytes(settings.model_copy(update={"kind": "schnet", "lmax": None}))
    return max(1, _SCHNET_MAX_PAIRS * schnet // pair_bytes(settings))


@dataclass
class EnsemblePrediction:
    """Member predictions: ``energies`` [M, n_frames] (eV); ``forces`` one [M, n_atoms, 3] array per frame (eV/A);
    ``stresses`` [M, n_frames, 6] (ASE Voigt, eV/A^3; NaN for frames that are not periodic in 3D)
    when asked for (``Ensemble.predict(..., stress=True)``), else None; ``atom_energies`` one
    [M, n_atoms] array per frame (eV, summing to ``energies``; :mod:`al_flows.potential.atom_energies`),
    None where the predictor gives none."""

    energies: np.ndarray
    forces: list[np.ndarray]
    stresses: np.ndarray | None = None
    atom_energies: list[np.ndarray] | None = None

    @property
    def mean_energies(self) -> np.ndarray:
        """Ensemble-mean energy per frame [n_frames] (eV)."""
        return self.energies.mean(axis=0)

    @property
    def energy_std(self) -> np.ndarray:
        """Population standard deviation of the members' energies per frame [n_frames] (eV)."""
        return self.energies.std(axis=0)

    @property
    def energy_spread(self) -> np.ndarray:
        """ANI's ensemble disagreement per frame, rho = sigma_E / sqrt(N_atoms) [n_frames] (eV): sigma_E is
        the sample standard deviation (ddof 1) of the members' energies, N_atoms the frame's atom count
        (docs/methods.md, the ANI-Al stop criterion)."""
        n_atoms = np.array([f.shape[1] for f in self.forces], dtype=float)
        return self.energies.std(axis=0, ddof=1) / np.sqrt(n_atoms)

    @property
    def energy_spread_intensive(self) -> np.ndarray:
        """The size-intensive energy spread per frame [n_frames] (eV): the spread over members of the
        per-atom energies once each member's mean per-atom energy is removed, root mean over atoms
        (:func:`al_flows.potential.atom_energies.intensive_energy_spread`; docs/methods.md). Needs
        ``atom_energies``."""
        if self.atom_energies is None:
            raise ValueError(
                "this prediction has no per-atom energies (atom_energies), so energy_spread_intensive cannot be "
                "computed; predict with al_flows' Ensemble or use stop_measure: energy_spread"
            )
        return np.array([intensive_energy_spread(e) for e in self.atom_energies], dtype=float)

    @property
    def mean_forces(self) -> list[np.ndarray]:
        """Ensemble-mean forces per frame, each [n_atoms, 3] (eV/A)."""
        return [f.mean(axis=0) for f in self.forces]

    @property
    def mean_stresses(self) -> np.ndarray | None:
        """Ensemble-mean stress per frame [n_frames, 6] (ASE Voigt, eV/A^3), None without stresses."""
        return None if self.stresses is None else self.stresses.mean(axis=0)

    @property
    def deviation(self) -> np.ndarray:
        """Model deviation max_i sqrt(<|f_i - <f_i>|^2>) per frame [n_frames] (eV/A)."""
        return np.array([max_force_deviation(f) for f in self.forces], dtype=float)


class Ensemble:
    """M members sharing one :class:`ModelSettings` (one kind, same cutoff, so one neighbour list per
    frame); a member of another kind than ``settings.kind`` is refused.

    ``max_pairs`` caps the neighbour pairs of one collated batch (memory: roughly :func:`pair_bytes`,
    ``24 * n_interactions * n_atom_basis`` bytes per pair for SchNet, 4x that for PaiNN, 76x for SO3net
    with lmax 2); default :func:`default_max_pairs` (400 000 for SchNet). A chunk closes at
    ``batch_size`` frames or when the next frame would pass the cap.
    """

    def __init__(
        self,
        members: list[torch.nn.Module],
        settings: ModelSettings,
        device: str = "cpu",
        max_pairs: int | None = None,
    ):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        kinds = [member_kind(m) for m in members]
        other = next((k for k, kind in enumerate(kinds) if kind != settings.kind), None)
        if other is not None:
            raise ValueError(
                f"members: member {other} is a {kinds[other]} member but model.kind is {settings.kind}; "
                "an ensemble holds members of one kind"
            )
        self.settings = settings
        self.device = torch.device(device)
        self.max_pairs = default_max_pairs(settings) if max_pairs is None else int(max_pairs)
        self.members = [enable_atom_energies(m.to(self.device).eval()) for m in members]
        self.elements = sorted(set.intersection(*(set(member_elements(m)) for m in self.members)))

    @classmethod
    def from_bytes(cls, blobs: list[bytes], device: str = "cpu") -> "Ensemble":
        """Load members from :func:`al_flows.potential.weights.member_to_bytes` blobs (weights_only=True)."""
        loaded = [member_from_bytes(b) for b in blobs]
        if not loaded:
            raise ValueError("no member blobs")
        settings = loaded[0][1]
        for _, s, _ in loaded[1:]:
            if s != settings:
                raise ValueError(f"members have different settings: {s} vs {settings}")
        return cls([m for m, _, _ in loaded], settings, device=device)

    @classmethod
    def from_files(cls, paths, device: str = "cpu") -> "Ensemble":
        """Load the members written by ``al-flows export --workdir W model --output DIR [--round k]``
        (:func:`al_flows.campaign.export.export_model`): ``paths`` is DIR, which must hold the
        ``round{k}_member{i}.pt`` files of one round, or a list of such files (or of any
        :func:`al_flows.potential.weights.member_to_bytes` files; read with ``torch.load(weights_only=True)``).
        Members are ordered by ``i``; ``device``: torch device ("cpu", "cuda", ...)."""
        files = _member_files(paths)
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"paths: no such model file {missing[0]}; pass files written by `al-flows export ... model`"
            )
        loaded = []
        for f in files:
            try:
                loaded.append(member_from_bytes(f.read_bytes()))
            except ValueError as exc:
                raise ValueError(f"paths: {f}: {exc}") from None
        settings = loaded[0][1]
        for f, (_, s, _) in zip(files[1:], loaded[1:]):
            if s != settings:
                raise ValueError(
                    f"paths: {f} has other model settings than {files[0]} ({s} vs {settings}); pass one ensemble's "
                    "files"
                )
        return cls([m for m, _, _ in loaded], settings, device=device)

    def __len__(self) -> int:
        return len(self.members)

    def _check_elements(self, frames: list[Atoms]) -> None:
        from al_flows.frames.checks import StructureError, describe

        known = set(self.elements)
        unknown = sorted({int(z) for a in frames for z in a.numbers} - known)
        if unknown:
            k = next(k for k, a in enumerate(frames) if {int(z) for z in a.numbers} - known)
            raise StructureError(
                f"{describe(frames[k], k)}: elements {[chemical_symbols[z] for z in unknown]} unknown to the ensemble "
                f"(trained on {[chemical_symbols[z] for z in self.elements]}); add them to elements: in the campaign "
                "file (the members are trained for those only) or drop those frames"
            )

    def _chunks(self, inputs: Iterable[dict[str, torch.Tensor]], batch_size: int):
        """(start index, per-frame inputs) of consecutive chunks of at most ``batch_size`` frames
        and ``max_pairs`` neighbour pairs (a single larger frame forms its own chunk); ``inputs``
        is consumed lazily (a frame's neighbour list is built when its chunk is filled)."""
        chunk: list[dict] = []
        start = pairs = 0
        for k, frame in enumerate(inputs):
            n_pairs = int(frame[P.idx_i].shape[0])
            if chunk and (len(chunk) >= batch_size or pairs + n_pairs > self.max_pairs):
                yield start, chunk
                chunk, start, pairs = [], k, 0
            chunk.append(frame)
            pairs += n_pairs
        if chunk:
            yield start, chunk

    def _frame_inputs(self, frames: list[Atoms]) -> Iterator[dict[str, torch.Tensor]]:
        return (frame_inputs(atoms, self.settings.cutoff) for atoms in frames)

    def predict(self, frames: list[Atoms], batch_size: int = 64, stress: bool = False) -> EnsemblePrediction:
        """Energies and forces of every member for every frame; chunks of up to ``batch_size`` frames
        are collated into one batch whose inputs (neighbour lists, computed once) all members share.
        ``stress=True`` also returns ``stresses`` (members switched to stress for this call only, see
        :func:`al_flows.potential.stress.enable_stress`; energies and forces are unchanged)."""
        frames = list(frames)
        self._check_elements(frames)
        pred = self._predict(self._frame_inputs(frames), len(frames), batch_size, bool(stress))
        if pred.stresses is not None:
            for k, atoms in enumerate(frames):
                if not (np.all(atoms.pbc) and atoms.cell.volume > 1e-6):
                    pred.stresses[:, k] = np.nan
        return pred

    def predict_inputs(self, inputs: Sequence[dict[str, torch.Tensor]], batch_size: int = 64) -> EnsemblePrediction:
        """:meth:`predict` (no stress) of frames given as their model inputs, the dicts of
        :func:`al_flows.potential.inputs.frame_inputs` (neighbour lists built by the caller, e.g.
        :class:`al_flows.potential.skin_neighbours.SkinNeighbours`); the same chunks and numbers."""
        inputs = list(inputs)
        known = torch.tensor(self.elements, dtype=torch.long)
        for k, frame in enumerate(inputs):
            if not bool(torch.isin(frame[P.Z], known).all()):
                from al_flows.frames.checks import StructureError

                unknown = sorted({int(z) for z in frame[P.Z]} - set(self.elements))
                raise StructureError(
                    f"frame {k}: elements {[chemical_symbols[z] for z in unknown]} unknown to the ensemble "
                    f"(trained on {[chemical_symbols[z] for z in self.elements]})"
                )
        return self._predict(iter(inputs), len(inputs), batch_size, False)

    def _predict(
        self, inputs: Iterator[dict[str, torch.Tensor]], n_frames: int, batch_size: int, stress: bool
    ) -> EnsemblePrediction:
        """Every member on the collated chunks of ``inputs`` (``n_frames`` frames); stresses of
        every frame when ``stress`` (the caller blanks those of frames that are not 3D periodic)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n_members = len(self.members)
        energies = np.zeros((n_members, n_frames), dtype=np.float64)
        stresses = np.full((n_members, n_frames, 6), np.nan) if stress else None
        forces: list[np.ndarray] = []
        per_atom: list[np.ndarray] = []
        previous = [stress_enabled(m) for m in self.members]
        try:
            for member in self.members:
                if stress_enabled(member) != stress:
                    enable_stress(member, stress)
            for start, chunk in self._chunks(inputs, batch_size):
                batch = collate_inputs(chunk, self.device)
                split = batch[P.n_atoms].tolist()
                f_chunk = np.zeros((n_members, int(sum(split)), 3), dtype=np.float64)
                e_chunk = np.zeros((n_members, int(sum(split))), dtype=np.float64)
                for m, member in enumerate(self.members):
                    # fresh positions leaf per member: its own autograd graph, shared neighbour list
                    member_inputs = dict(batch)
                    member_inputs[P.R] = batch[P.R].detach().clone()
                    with torch.enable_grad():
                        out = member(member_inputs)
                    energies[m, start : start + len(chunk)] = out[P.energy].detach().cpu().numpy()
                    f_chunk[m] = out[P.forces].detach().cpu().numpy()
                    e_chunk[m] = atom_energies(member, out, batch[P.Z])
                    if stresses is not None:
                        stresses[m, start : start + len(chunk)] = stress_to_voigt(out[P.stress], batch[P.cell])
                pos = 0
                for n in split:
                    forces.append(f_chunk[:, pos : pos + n])
                    per_atom.append(e_chunk[:, pos : pos + n])
                    pos += n
        finally:
            for member, was in zip(self.members, previous, strict=True):
                if stress_enabled(member) != was:
                    enable_stress(member, was)
        return EnsemblePrediction(energies=energies, forces=forces, stresses=stresses, atom_energies=per_atom)

    def atom_features(self, frames: list[Atoms], member: int = 0, batch_size: int = 64) -> list[np.ndarray]:
        """The learned atom features of member ``member``: the SchNet representation's output
        ``scalar_representation`` for every atom, one float64 array [n_atoms, n_atom_basis] per frame.

        One member, not a mean over members: each member learned its own feature space from its own
        initialisation, so the k-th feature of two members measures different things and their
        average mixes unrelated coordinates. Only the member's input modules and representation run
        (no energy head, no autograd); frames are batched as in :meth:`predict`."""
        frames = list(frames)
        self._check_elements(frames)
        if not -len(self.members) <= member < len(self.members):
            raise ValueError(f"member {member}: the ensemble has {len(self.members)} members")
        module: Any = self.members[member]  # a schnetpack NeuralNetworkPotential
        out: list[np.ndarray] = []
        with torch.no_grad():
            for _, chunk in self._chunks(self._frame_inputs(frames), max(1, int(batch_size))):
                batch = collate_inputs(chunk, self.device)
                inputs = dict(batch)
                for step in module.input_modules:
                    inputs = step(inputs)
                x = module.representation(inputs)["scalar_representation"].double().cpu().numpy()
                pos = 0
                for n in batch[P.n_atoms].tolist():
                    out.append(x[pos : pos + n])
                    pos += n
        return out

    def calculator(self) -> "EnsembleCalculator":
        """ASE calculator giving the ensemble-mean energy, forces and (when asked) stress, and the
        model deviation (see :class:`EnsembleCalculator`)."""
        return EnsembleCalculator(self)


_MEMBER_FILE = re.compile(r"^round(-?\d+)_member(\d+)\.pt$")


def _member_files(paths) -> list[Path]:
    """The member files of ``paths`` (a directory, one file or a list of files); files named
    round<k>_member<i>.pt are ordered by i and must be of one round k."""
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        where = Path(paths)
        files = [f for f in where.iterdir() if _MEMBER_FILE.match(f.name)]
        if not files:
            raise FileNotFoundError(
                f"paths: {where} holds no round<k>_member<i>.pt files; write them with "
                f"`al-flows export --workdir W model --output {where}`"
            )
    else:
        where = None
        files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        if not files:
            raise ValueError("paths: an empty list; pass a directory or the round<k>_member<i>.pt files")
    keys = [m for m in (_MEMBER_FILE.match(f.name) for f in files) if m is not None]
    if len(keys) < len(files):
        return files  # other names: the order given
    rounds = sorted({int(m.group(1)) for m in keys})
    if len(rounds) > 1:
        what = f"{where} holds" if where else "the files hold"
        raise ValueError(
            f"paths: {what} members of rounds {rounds}; pass one round's files, e.g. "
            f"sorted(Path({str(where or 'DIR')!r}).glob('round{rounds[-1]}_member*.pt'))"
        )
    return [f for _, f in sorted(zip((int(m.group(2)) for m in keys), files), key=lambda kv: kv[0])]


class EnsembleCalculator(Calculator):
    """ASE calculator: energy/free_energy (eV), forces (eV/A) and, when asked for, stress (ASE Voigt,
    eV/A^3; 3D-periodic cells only) are ensemble means; ``model_deviation`` (eV/A, max force
    deviation, :attr:`EnsemblePrediction.deviation`) and ``energy_std`` (eV) are properties too
    (``calc.get_property("model_deviation", atoms)``); results also hold ``member_energies`` ([M], eV)."""

    implemented_properties = ["energy", "forces", "free_energy", "stress", "model_deviation", "energy_std"]

    def __init__(self, ensemble: Ensemble, **kwargs):
        super().__init__(**kwargs)
        self.ensemble = ensemble

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Predict ``atoms`` with the ensemble and fill ``results`` (stress only when asked for)."""
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not (np.all(self.atoms.pbc) and self.atoms.cell.volume > 1e-6):
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        pred = self.ensemble.predict([self.atoms], stress=want_stress)
        energy = float(pred.mean_energies[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": pred.mean_forces[0],
            "model_deviation": float(pred.deviation[0]),
            "energy_std": float(pred.energy_std[0]),
            "member_energies": pred.energies[:, 0].copy(),
        }
        if want_stress:
            self.results["stress"] = pred.mean_stresses[0]
