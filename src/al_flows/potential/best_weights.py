"""The weights of a training run's best validation loss so far, kept to be restored at its end."""

from __future__ import annotations

import torch

__all__ = ["BestWeights"]


class BestWeights:
    """A copy of the state dict at the lowest validation loss offered, its epoch and its curve row."""

    def __init__(self) -> None:
        self.loss = float("inf")
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.row: dict | None = None

    def offer(self, loss: float, epoch: int, module: torch.nn.Module, row: dict) -> bool:
        """Keep ``module``'s weights (a copy) and ``row`` when ``loss`` is below the best so far."""
        if not loss < self.loss:
            return False
        self.loss, self.epoch, self.row = loss, epoch, dict(row)
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return True

    def restore(self, module: torch.nn.Module) -> dict | None:
        """Load the kept weights into ``module`` (if any); return their curve row."""
        if self.state is not None:
            module.load_state_dict(self.state)
        return self.row
