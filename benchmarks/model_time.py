"""Wall time spent inside the models' forward and backward passes, for the benchmarks' share line.

:class:`ModelTimer` wraps ``forward`` of the given modules (a SchNet member's forward includes the
force gradient, ``torch.autograd.grad``) and ``torch.autograd.backward`` (the training loss's backward;
``Tensor.backward`` calls it) while it is active, adding the time of each call; nested calls count once.
On CUDA each timed call synchronises before and after, so the share is of real GPU work (that
synchronisation costs a little throughput; the figure is a share, not a speed). Everything else in the
wall time (neighbour lists, collation, host-device copies, optimiser steps, ASE optimisers, Python) is
the overhead the benchmarks print as ``1 - share``.
"""

from __future__ import annotations

import time

import torch


class ModelTimer:
    """``with ModelTimer(modules, device) as t: ...``; then ``t.seconds`` (model time) and ``t.calls``."""

    def __init__(self, modules, device: str = "cpu") -> None:
        self.modules = list(modules)
        self.cuda = str(device).startswith("cuda")
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0

    def _timed(self, fn):
        def run(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            try:
                if self.cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                out = fn(*args, **kwargs)
                if self.cuda:
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - t
                self.calls += 1
                return out
            finally:
                self._depth -= 1

        return run

    def __enter__(self) -> ModelTimer:
        self._backward = torch.autograd.backward
        torch.autograd.backward = self._timed(self._backward)
        for m in self.modules:
            m.forward = self._timed(m.forward)  # instance attribute: nn.Module.__call__ finds it
        return self

    def __exit__(self, *exc) -> None:
        torch.autograd.backward = self._backward
        for m in self.modules:
            del m.forward

    def share(self, wall_s: float) -> float:
        """Model time / ``wall_s`` (0 when ``wall_s`` is 0)."""
        return self.seconds / wall_s if wall_s > 0 else 0.0
