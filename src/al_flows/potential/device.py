"""Which torch device a job runs its models on, decided where the job runs.

A campaign is written once and its jobs run wherever a queue sends them: training and
exploration on a GPU node, labelling and bookkeeping on CPU nodes. So the device is a run-time
setting, not part of the campaign (nor of its fingerprint):

- ``training.device`` (TrainingSettings) for training, default ``auto``;
- the environment variable ``AL_FLOWS_DEVICE`` on the worker for every job, the default of
  ``auto``: set it in a FireWorks worker's environment or a queue adapter's ``pre_rocket``
  (``export AL_FLOWS_DEVICE=cuda``), or in the shell before ``al-flows run``;
- ``auto`` (the default when neither says otherwise): ``cuda`` when torch sees a CUDA device,
  else ``cpu``.

Every document made by a job that evaluates or trains a model records the device it used
(``device`` of the TrainingDocument and of every ensemble document).
"""

from __future__ import annotations

import os

import torch

ENV = "AL_FLOWS_DEVICE"
"""Environment variable that sets the device of every model-evaluating job on a worker."""

KINDS = ("cpu", "cuda", "mps")


def check_device(value: str, source: str = "training.device") -> str:
    """``value`` if it names ``auto`` or a device al_flows runs on (cpu, cuda, cuda:N, mps); else a
    one-line ValueError naming ``source`` (empty: the caller names the field) and the fix.
    Nothing is checked against the hardware."""
    if value == "auto":
        return value
    what = f"{source}={value!r}" if source else repr(value)
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in KINDS:
        raise ValueError(f"{what} is not a device al_flows runs on; use auto, cpu, cuda or cuda:N")
    return value


def resolve_device(setting: str | None = "auto") -> str:
    """The device to run on, as a string torch accepts (``cpu``, ``cuda``, ``cuda:1``, ...).

    ``setting``: an explicit device wins; ``auto`` or None reads ``AL_FLOWS_DEVICE`` and, when that
    is unset or ``auto`` too, picks ``cuda`` if torch sees a CUDA device, else ``cpu``. A CUDA or MPS
    device this worker does not have is refused with one line saying which setting asked for it."""
    source = "training.device"
    if setting in (None, "auto"):
        setting, source = os.environ.get(ENV, "auto").strip() or "auto", ENV
    check_device(setting, source)
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{source}={setting!r} but torch sees no CUDA device on this worker; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{source}={setting!r} but this worker has {torch.cuda.device_count()} CUDA device(s); "
                "use cuda:0 ... or auto"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"{source}={setting!r} but torch sees no MPS device on this worker; use auto or cpu")
    return setting
