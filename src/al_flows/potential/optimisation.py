"""The optimisation of a training run: Adam, the plateau schedule of the learning rate and mixed precision.

Mixed precision (``TrainingSettings.amp``, CUDA only): the member's representation (any kind) runs under
``torch.autocast(dtype=torch.bfloat16)`` and returns float32 features (:func:`autocast_representation`);
everything after it stays float32/float64. bfloat16 has float32's exponent range, so no gradient scaler
is needed for the force (double) backward.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import schnetpack as spk
import torch

from al_flows.potential.model import TrainingSettings

__all__ = ["Optimisation", "amp_dtype", "autocast_representation"]


def amp_dtype(amp: bool, device: torch.device, device_types: tuple[str, ...] = ("cuda",)) -> torch.dtype | None:
    """bfloat16 when ``amp`` is asked for and ``device`` supports it, else None (float32); warns
    (pointing at the caller's caller: the code that built the Trainer) when amp is ignored."""
    if not amp:
        return None
    if device.type not in device_types:
        warnings.warn(
            f"TrainingSettings.amp is for CUDA devices; ignored on {device.type!r} (training in float32)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bfloat16; amp ignored (training in float32)", RuntimeWarning, stacklevel=3)
        return None
    return torch.bfloat16


@contextmanager
def autocast_representation(
    module: spk.model.NeuralNetworkPotential, device_type: str, dtype: torch.dtype
) -> Iterator[None]:
    """Within the block, ``module.representation`` runs under ``torch.autocast(device_type, dtype)``
    and returns float32 ``scalar_representation``; everything after it (atomwise network, energy
    sum and reference, forces, loss) runs outside autocast. Restored on exit."""
    rep = module.representation
    inner = rep.forward

    def forward(inputs):
        with torch.autocast(device_type=device_type, dtype=dtype):
            out = inner(inputs)
        out["scalar_representation"] = out["scalar_representation"].float()
        return out

    rep.forward = forward
    try:
        yield
    finally:
        del rep.forward


class Optimisation:
    """Adam over a member's trainable parameters and ``ReduceLROnPlateau`` on the validation loss
    (the training loss without validation frames); created by :meth:`start`, once per run."""

    def __init__(self, training: TrainingSettings, amp_dtype: torch.dtype | None) -> None:
        self.training = training
        self.amp_dtype = amp_dtype
        self.params: list[torch.nn.Parameter] = []
        self.optimizer: torch.optim.Adam | None = None
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None

    def start(self, module: torch.nn.Module) -> None:
        """Optimise ``module``'s trainable parameters from the settings' learning rate."""
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=self.training.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.training.lr_decay, patience=self.training.lr_patience
        )

    @property
    def started(self) -> bool:
        """Whether the optimiser has been created."""
        return self.optimizer is not None

    def _adam(self) -> torch.optim.Adam:
        if self.optimizer is None:
            raise RuntimeError("call fit_reference(train_idx) before run_epochs")
        return self.optimizer

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self._adam().param_groups[0]["lr"])

    def precision(self, module: spk.model.NeuralNetworkPotential, device_type: str) -> AbstractContextManager[None]:
        """Context for the training forward: bfloat16 autocast of the representation, or nothing."""
        if self.amp_dtype is None:
            return nullcontext()
        return autocast_representation(module, device_type, self.amp_dtype)

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step down the gradient of ``loss``."""
        adam = self._adam()
        adam.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)
        adam.step()

    def schedule(self, loss: float) -> None:
        """Step the plateau schedule with this epoch's loss."""
        if self.scheduler is None:
            raise RuntimeError("call fit_reference(train_idx) before run_epochs")
        self.scheduler.step(loss)
