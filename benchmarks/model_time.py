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


class PhaseTimer:
    """Wall time inside named phases: ``with PhaseTimer({name: [(owner, attribute), ...]}) as t``
    wraps each ``owner.attribute`` (a module function as its callers imported it, or a class method)
    while active and adds the time of each outermost call to ``t.seconds[name]``. For the breakdown
    of what is not the model (``1 - share``): neighbour lists, batch collation, optimiser steps."""

    def __init__(self, phases: dict[str, list[tuple[object, str]]]) -> None:
        self.phases = phases
        self.seconds = {name: 0.0 for name in phases}
        self._saved: list[tuple[object, str, object]] = []

    def _timed(self, name: str, fn):
        depth = [0]

        def run(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
                depth[0] -= 1

        return run

    def __enter__(self) -> PhaseTimer:
        for name, targets in self.phases.items():
            for owner, attr in targets:
                fn = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
                self._saved.append((owner, attr, fn))
                setattr(owner, attr, self._timed(name, fn))
        return self

    def __exit__(self, *exc) -> None:
        for owner, attr, fn in reversed(self._saved):
            setattr(owner, attr, fn)
        self._saved.clear()

    def shares(self, wall_s: float) -> dict[str, float]:
        """Each phase's time / ``wall_s``."""
        return {name: (s / wall_s if wall_s > 0 else 0.0) for name, s in self.seconds.items()}


def breakdown_text(
    wall_s: float, model_s: float, phases: dict[str, float], nested: dict[str, str] | None = None
) -> str:
    """'model forward+backward 61 %, neighbour lists 12 %, ..., rest 9 %' (shares of ``wall_s``).
    ``nested``: phase -> the phase it runs inside (shown as 'of which', not subtracted again)."""
    nested = nested or {}
    parts = [("model forward+backward", model_s), *((n, s) for n, s in phases.items() if n not in nested)]
    rest = wall_s - sum(s for _, s in parts)
    text = []
    for name, s in [*parts, ("rest (Python, numpy)", rest)]:
        inner = [f"of which {n} {100 * phases[n] / wall_s:.0f} %" for n, outer in nested.items() if outer == name]
        text.append(f"{name} {100 * s / wall_s:.0f} %" + (f" ({', '.join(inner)})" if inner else ""))
    return ", ".join(text)
