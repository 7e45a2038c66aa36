"""ASE's BFGS, LBFGS and FIRE (ASE 3.29) stepping many replicas at once as torch tensor operations.

Units: positions and steps in Angstrom, forces in eV/Angstrom, energies in eV, FIRE's time in ASE's
FIRE units. Every optimiser here makes, for each replica, the step that the ASE optimiser of that
replica alone makes (``ase.optimize.BFGS``, ``LBFGS``, ``FIRE`` with their defaults), up to the
floating-point round-off of doing the same float64 arithmetic as batched tensor operations:

- replicas of different atom counts are padded to the largest (``mask`` marks real atoms); a padded
  atom has zero position, force and step, and each update below keeps zeros there (dot products
  gain only exact zeros, BFGS's padded Hessian block stays ``alpha`` times the identity);
- BFGS: ASE takes the step ``V (f V) / |omega|`` from an eigendecomposition ``H = V diag(omega) V^T``
  of its Hessian every step (an O(n^3) ``eigh`` per replica). Where ``H`` is positive definite
  (every BFGS update with positive curvature keeps it so) that step is ``H^-1 f``, solved here with a
  batched Cholesky factorisation (about ten times cheaper than ``eigh``); replicas whose Cholesky
  factorisation fails (an indefinite ``H``) take ASE's eigendecomposition step. The two solutions
  of the same system differ by the solvers' round-off, about ``n eps kappa(H)`` relative
  (``eps`` = 2.2e-16, ``kappa`` the condition number of ``H``);
- all running replicas start together, so LBFGS's iteration count (and the history it keeps) is the
  same for all of them.

:func:`make_optimiser` builds one; :meth:`BatchedOptimiser.step` takes the forces (and energies) at
the current positions, :meth:`BatchedOptimiser.keep` drops the replicas that left the batch.
No jobflow here: this is the optimiser maths of :mod:`al_flows.exploration.batched_relax`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "BatchedOptimiser",
    "BatchedBFGS",
    "BatchedLBFGS",
    "BatchedFIRE",
    "FIREParameters",
    "make_optimiser",
]

# ASE 3.29 defaults: every optimiser's maxstep (Angstrom); BFGS's and LBFGS's initial curvature
# alpha (eV/Angstrom^2); LBFGS's memory and damping
MAXSTEP = 0.2
ALPHA = 70.0
LBFGS_MEMORY = 100
LBFGS_DAMPING = 1.0


@dataclass(frozen=True)
class FIREParameters:
    """ASE FIRE's parameters and defaults (``ase.optimize.FIRE``; ``maxstep`` in Angstrom, ``dt``
    and ``dtmax`` in ASE's FIRE time units)."""

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    Nmin: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99
    a: float = 0.1
    downhill_check: bool = False


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of [K, D] tensors: [K]."""
    return (a * b).sum(dim=-1)


def _rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, index)


class BatchedOptimiser:
    """Positions of K replicas, padded to the largest atom count: ``x`` [K, Nmax, 3] float64 on
    ``device``, ``n_atoms`` [K]. Subclasses implement :meth:`step` and list their per-replica state
    tensors in ``_state`` (first dimension K) for :meth:`keep`."""

    _state: tuple[str, ...] = ()

    def __init__(self, positions: list[np.ndarray], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.n_atoms = [len(p) for p in positions]
        n_max = max(self.n_atoms, default=0)
        x = np.zeros((len(positions), n_max, 3))
        for k, p in enumerate(positions):
            x[k, : len(p)] = p
        self.x = torch.as_tensor(x, dtype=torch.float64, device=self.device)

    def __len__(self) -> int:
        return len(self.n_atoms)

    def positions(self) -> list[np.ndarray]:
        """Each replica's positions [n_k, 3] (Angstrom, float64 numpy on the host)."""
        x = self.x.cpu().numpy()
        return [x[k, :n].copy() for k, n in enumerate(self.n_atoms)]

    def padded(self, per_replica: list[np.ndarray]) -> torch.Tensor:
        """[K, Nmax, 3] float64 tensor on the device of per-replica [n_k, 3] arrays (forces), zero padded."""
        out = np.zeros(tuple(self.x.shape))
        for k, (a, n) in enumerate(zip(per_replica, self.n_atoms, strict=True)):
            out[k, :n] = a
        return torch.as_tensor(out, dtype=torch.float64, device=self.device)

    def keep(self, rows: list[int]) -> None:
        """Keep only replicas ``rows`` (indices into the current batch, in that order)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.x = _rows(self.x, index)
        self.n_atoms = [self.n_atoms[k] for k in rows]
        for name in self._state:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, _rows(value, index))
            elif isinstance(value, list):  # LBFGS history: a list of [K, ...] tensors
                setattr(self, name, [_rows(v, index) for v in value])

    def step(self, forces: torch.Tensor, energies: torch.Tensor) -> None:
        """One optimiser step of every replica from its ``forces`` [K, Nmax, 3] (eV/A, zero padded)
        and ``energies`` [K] (eV) at the current positions."""
        raise NotImplementedError

    def _limit_by_atom(self, dpos: torch.Tensor, maxstep: float) -> torch.Tensor:
        """ASE's ``determine_step`` of BFGS and LBFGS: a replica whose largest atomic step reaches
        ``maxstep`` has its whole step scaled so that that atom moves ``maxstep``."""
        longest = torch.linalg.vector_norm(dpos.reshape(len(self), -1, 3), dim=-1).amax(dim=-1)
        scale = torch.where(longest >= maxstep, maxstep / longest, torch.ones_like(longest))
        return dpos * scale[:, None]


class BatchedBFGS(BatchedOptimiser):
    """``ase.optimize.BFGS`` (maxstep 0.2 A, alpha 70 eV/A^2) of every replica: Hessian ``H``
    [K, D, D] (D = 3 Nmax), starting at ``alpha`` times the identity, with ASE's rank-two update
    (skipped for a replica whose largest coordinate change is below 1e-7 A), the step ``H^-1 f``
    (Cholesky; ASE's ``|eigenvalue|`` step where ``H`` is not positive definite), scaled so that no
    atom moves more than ``maxstep``."""

    _state = ("H", "pos0", "forces0")

    def __init__(self, positions, device="cpu", maxstep: float = MAXSTEP, alpha: float = ALPHA):
        super().__init__(positions, device)
        self.maxstep, self.alpha = float(maxstep), float(alpha)
        d = self.x[0].numel() if len(self) else 0
        self.H = torch.eye(d, dtype=torch.float64, device=self.device).repeat(len(self), 1, 1) * self.alpha
        self.pos0: torch.Tensor | None = None
        self.forces0: torch.Tensor | None = None
        self.eigh_steps = 0  # replica steps that took the eigendecomposition (indefinite H)

    def step(self, forces, energies):
        """ASE's ``BFGS.step`` of every replica (energies unused)."""
        pos = self.x.reshape(len(self), -1)
        f = forces.reshape(len(self), -1)
        if self.pos0 is not None and self.forces0 is not None:
            self._update(pos, f)
        self.pos0, self.forces0 = pos.clone(), f.clone()
        dpos = self._limit_by_atom(self._newton_step(f), self.maxstep)
        self.x = (pos + dpos).reshape(self.x.shape)

    def _update(self, pos: torch.Tensor, f: torch.Tensor) -> None:
        """ASE's ``BFGSMethod.update`` of every replica (gradient = -forces): ``H += dgrad dgrad^T / a
        - dg dg^T / b`` with ``a = dpos . dgrad``, ``dg = H dpos``, ``b = dpos . dg``; in place (no
        [K, D, D] temporaries: ``(dgrad / a) dgrad^T``, a rounding apart from ASE's ``(dgrad
        dgrad^T) / a``); none for a replica whose coordinates all changed by less than 1e-7 A."""
        assert self.pos0 is not None and self.forces0 is not None
        dpos = pos - self.pos0
        dgrad = self.forces0 - f
        dg = torch.bmm(self.H, dpos.unsqueeze(-1)).squeeze(-1)
        moved = ~(dpos.abs().amax(dim=-1) < 1e-7)  # ASE: the same configuration again, no update
        zero = torch.zeros(len(self), dtype=pos.dtype, device=pos.device)
        inv_a = torch.where(moved, 1.0 / _dot(dpos, dgrad), zero)
        inv_b = torch.where(moved, 1.0 / _dot(dpos, dg), zero)
        self.H.baddbmm_((dgrad * inv_a[:, None]).unsqueeze(-1), dgrad.unsqueeze(-2))
        self.H.baddbmm_((dg * inv_b[:, None]).unsqueeze(-1), dg.unsqueeze(-2), alpha=-1.0)

    def _newton_step(self, f: torch.Tensor) -> torch.Tensor:
        """``V (f V) / |omega|`` of every replica: ``H^-1 f`` by Cholesky where ``H`` is positive
        definite, ASE's eigendecomposition step elsewhere."""
        factor, info = torch.linalg.cholesky_ex(self.H)
        dpos = torch.cholesky_solve(f.unsqueeze(-1), factor).squeeze(-1)
        bad = (info != 0).nonzero().flatten()
        if bad.numel():
            omega, vectors = torch.linalg.eigh(_rows(self.H, bad))
            fb = _rows(f, bad)
            coef = torch.bmm(fb.unsqueeze(-2), vectors).squeeze(-2) / omega.abs()
            dpos[bad] = torch.bmm(vectors, coef.unsqueeze(-1)).squeeze(-1)
            self.eigh_steps += int(bad.numel())
        return dpos


class BatchedLBFGS(BatchedOptimiser):
    """``ase.optimize.LBFGS`` (memory 100, maxstep 0.2 A, alpha 70 eV/A^2, damping 1, no line
    search) of every replica: ASE's two-loop recursion on the histories ``s``, ``y``, ``rho``
    (lists of [K, D] and [K] tensors, one entry per past step, the same length for all replicas)."""

    _state = ("s", "y", "rho", "r0", "f0")

    def __init__(
        self,
        positions,
        device="cpu",
        maxstep: float = MAXSTEP,
        alpha: float = ALPHA,
        memory: int = LBFGS_MEMORY,
        damping: float = LBFGS_DAMPING,
    ):
        super().__init__(positions, device)
        self.maxstep, self.h0, self.memory, self.damping = float(maxstep), 1.0 / float(alpha), int(memory), damping
        self.iteration = 0
        self.s: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []
        self.rho: list[torch.Tensor] = []
        self.r0: torch.Tensor | None = None
        self.f0: torch.Tensor | None = None

    def step(self, forces, energies):
        """ASE's ``LBFGS.step`` of every replica (energies unused)."""
        pos = self.x.reshape(len(self), -1)
        f = forces.reshape(len(self), -1)
        if self.iteration > 0 and self.r0 is not None and self.f0 is not None:
            # ASE's LBFGSMethod.update (gradient = -forces), including when it forgets the oldest pair
            s0, y0 = pos - self.r0, self.f0 - f
            self.s.append(s0)
            self.y.append(y0)
            self.rho.append(1.0 / _dot(y0, s0))
            if self.iteration > self.memory:
                self.s.pop(0)
                self.y.pop(0)
                self.rho.pop(0)
        p = -self._two_loop(-f)
        dr = self._limit_by_atom(p, self.maxstep) * self.damping
        self.x = (pos + dr).reshape(self.x.shape)
        self.r0, self.f0 = pos.clone(), f.clone()

    def _two_loop(self, gradient: torch.Tensor) -> torch.Tensor:
        """ASE's ``LBFGSMethod.compute_step`` (returns z, the step being -z)."""
        loopmax = min(self.memory, self.iteration)
        a: list[torch.Tensor] = [gradient.new_zeros(len(self))] * loopmax
        q = gradient.clone()
        for i in range(loopmax - 1, -1, -1):
            a[i] = self.rho[i] * _dot(self.s[i], q)
            q -= a[i][:, None] * self.y[i]
        z = self.h0 * q
        for i in range(loopmax):
            b = self.rho[i] * _dot(self.y[i], z)
            z += self.s[i] * (a[i] - b)[:, None]
        self.iteration += 1
        return z


class BatchedFIRE(BatchedOptimiser):
    """``ase.optimize.FIRE`` of every replica (:class:`FIREParameters`): per-replica time step ``dt``,
    mixing ``a``, ``Nsteps`` and velocities ``vel`` [K, D]; the step is limited to ``maxstep`` on its
    norm over the whole replica; ``downhill_check`` resets an uphill replica to its last positions."""

    _state = ("vel", "dt", "a", "n_steps", "e_last", "r_last", "vel_last")

    def __init__(self, positions, device="cpu", fire: FIREParameters | None = None):
        super().__init__(positions, device)
        self.p = fire or FIREParameters()
        full = torch.ones(len(self), dtype=torch.float64, device=self.device)
        self.dt, self.a = full * self.p.dt, full * self.p.a
        self.n_steps = torch.zeros(len(self), dtype=torch.long, device=self.device)
        self.vel: torch.Tensor | None = None
        self.e_last: torch.Tensor | None = None
        self.r_last: torch.Tensor | None = None
        self.vel_last: torch.Tensor | None = None

    def step(self, forces, energies):
        """ASE's ``FIRE.step`` of every replica (energies for ``downhill_check``)."""
        x = self.x.reshape(len(self), -1)
        f = forces.reshape(len(self), -1)
        if self.vel is None:
            self.vel = torch.zeros_like(x)
            if self.p.downhill_check:
                self.e_last, self.r_last, self.vel_last = energies.clone(), x.clone(), self.vel.clone()
        else:
            uphill = torch.zeros(len(self), dtype=torch.bool, device=self.device)
            if self.p.downhill_check:
                assert self.e_last is not None and self.r_last is not None
                uphill = energies > self.e_last
                # ASE resets an uphill replica to r_last, where the energy is e_last again
                x = torch.where(uphill[:, None], self.r_last, x)
                self.e_last = torch.where(uphill, self.e_last, energies)
                self.r_last, self.vel_last = x.clone(), self.vel.clone()
            self._mix(f, uphill)
        self.vel = self.vel + self.dt[:, None] * f
        dr = self.dt[:, None] * self.vel
        normdr = torch.sqrt(_dot(dr, dr))
        too_far = normdr > self.p.maxstep
        dr = torch.where(too_far[:, None], self.p.maxstep * dr / normdr[:, None], dr)
        self.x = (x + dr).reshape(self.x.shape)

    def _mix(self, f: torch.Tensor, uphill: torch.Tensor) -> None:
        """FIRE's velocity mixing (power positive, not uphill) or reset, per replica."""
        p, vel = self.p, self.vel
        assert vel is not None
        vf = _dot(f, vel)
        grad2 = _dot(f, f)
        go = (vf > 0.0) & ~uphill
        mixed = (1.0 - self.a)[:, None] * vel + self.a[:, None] * f / torch.sqrt(grad2)[:, None] * torch.sqrt(
            _dot(vel, vel)
        )[:, None]
        self.vel = torch.where(go[:, None], mixed, vel * 0.0)
        speed_up = go & (self.n_steps > p.Nmin)
        self.dt = torch.where(speed_up, torch.clamp(self.dt * p.finc, max=p.dtmax), self.dt)
        self.a = torch.where(speed_up, self.a * p.fa, self.a)
        self.n_steps = torch.where(go, self.n_steps + 1, torch.zeros_like(self.n_steps))
        self.a = torch.where(go, self.a, torch.full_like(self.a, p.astart))
        self.dt = torch.where(go, self.dt, self.dt * p.fdec)


def make_optimiser(
    name: str, positions: list[np.ndarray], device: str | torch.device = "cpu", fire: FIREParameters | None = None
) -> BatchedOptimiser:
    """The batched optimiser ``name`` ("BFGS", "LBFGS" or "FIRE") of replicas at ``positions``."""
    if name == "BFGS":
        return BatchedBFGS(positions, device)
    if name == "LBFGS":
        return BatchedLBFGS(positions, device)
    if name == "FIRE":
        return BatchedFIRE(positions, device, fire)
    raise ValueError(f"optimizer must be BFGS, LBFGS or FIRE, got {name!r}")
