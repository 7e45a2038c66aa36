"""Active sampling over an existing labelled pool (Sprueill et al.; docs/methods.md), and its static baselines.

The loop, repeated ``n_iterations`` times, on one model whose weights, Adam state and
learning-rate schedule carry on across iterations:

1. **Train** ``epochs_per_iteration`` epochs on the current training set (rebuilt every
   iteration, so frames included at iteration k are trained on from iteration k+1).
2. **Evaluate** ``n_examine`` frames drawn (seeded) from the reserve.
3. **Filter**: the error of a structure is the same measure on both sides of the test,
   ``e = (1/N) sum_i |F_pred,i - F_i|`` (eV/A, mean over atoms of the force-error norm).
   Keep the ``top_fraction`` of examined frames with the largest e; of those keep the ones
   that are unlikely under a Gaussian N(mu, sigma^2) fitted to the errors e of the current
   training set (mean and sample standard deviation, same weights): the one-sided tail
   probability ``p = P(X >= e) = erfc((e - mu) / (sigma sqrt 2)) / 2`` must be below
   ``eps_tol``. Equivalently ``e > mu + sqrt(2) sigma erfinv(1 - 2 eps_tol)``.
4. **Include** them: they leave the reserve and join the training set.

On eps_tol: the paper says frames are included when their "likelihood is less than eps_tol"
and also that higher eps_tol is stricter; the two statements contradict each other. We follow
the definition: a higher eps_tol admits more frames (eps_tol = 0.5 keeps every top frame
above the training mean). The public code's threshold ``erfinv(1 - eps) sigma + mu`` mixed a
per-component force MAE/RMSE with per-atom vector norms and dropped the sqrt 2; here both sides
use e.

Budgets: the baselines are trained with the same model settings and the same number of
optimiser steps as the active run (``budget="steps"``) or the same number of epochs
(``budget="epochs"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field
from scipy.special import erfc, erfinv

from al_flows.potential.training import Trainer
from al_flows.settings import Settings

__all__ = [
    "PAPER_POOL_SIZE",
    "ActiveSamplingSettings",
    "split_sizes",
    "tail_probability",
    "gaussian_threshold",
    "filter_examined",
    "SamplingRun",
    "run_active_sampling",
    "train_static",
    "static_epochs",
]

PAPER_POOL_SIZE = 58_873  # 39,214 final train + 14,659 reserve + 5,000 validation (Sprueill et al.)
_PAPER_INITIAL, _PAPER_VALIDATION, _PAPER_EXAMINE = 3000, 5000, 5000


class ActiveSamplingSettings(Settings):
    """Active sampling of Sprueill et al. (docs/methods.md). Counts left unset are the paper's (3000 / 5000 /
    5000 of a 58,873-frame pool) scaled to the pool size."""

    n_iterations: int = Field(50, ge=1, description="train/evaluate/filter/include iterations")
    epochs_per_iteration: int = Field(80, ge=1, description="epochs trained per iteration")
    n_initial: int | None = Field(None, ge=1, description="initial training frames (default 5.1 % of the pool)")
    n_validation: int | None = Field(None, ge=1, description="validation frames (default 8.5 % of the pool)")
    n_examine: int | None = Field(
        None, ge=1, description="reserve frames examined per iteration (default 8.5 % of the pool)"
    )
    top_fraction: float = Field(0.3, gt=0, le=1, description="fraction of examined frames with the largest error kept")
    eps_tol: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="include a kept frame if its tail probability under the training-error Gaussian is below this",
    )


def split_sizes(n_pool: int, settings: ActiveSamplingSettings) -> tuple[int, int, int]:
    """(n_initial, n_validation, n_examine) for a pool of ``n_pool`` frames; raises ValueError
    when the initial and validation sets leave no reserve."""

    def scaled(value, paper):
        return int(value) if value is not None else max(1, round(paper * n_pool / PAPER_POOL_SIZE))

    n_init = scaled(settings.n_initial, _PAPER_INITIAL)
    n_val = scaled(settings.n_validation, _PAPER_VALIDATION)
    n_exam = scaled(settings.n_examine, _PAPER_EXAMINE)
    if n_init + n_val >= n_pool:
        raise ValueError(
            f"active_sampling: n_initial ({n_init}) + n_validation ({n_val}) leave no reserve in a pool of {n_pool} "
            "frames; lower them or import more frames"
        )
    return n_init, n_val, n_exam


def tail_probability(errors, mu: float, sigma: float) -> np.ndarray:
    """One-sided upper tail P(X >= e) of X ~ N(mu, sigma^2) for each error e (sigma = 0: a step)."""
    e = np.asarray(errors, dtype=float)
    if not np.isfinite(sigma) or sigma <= 0:
        return np.where(e > mu, 0.0, 1.0)
    return 0.5 * erfc((e - mu) / (sigma * math.sqrt(2.0)))


def gaussian_threshold(mu: float, sigma: float, eps_tol: float) -> float:
    """The error above which the tail probability is below ``eps_tol``: mu + sqrt(2) sigma erfinv(1 - 2 eps_tol)."""
    return float(mu + math.sqrt(2.0) * sigma * erfinv(1.0 - 2.0 * eps_tol))


def filter_examined(
    errors, mu: float, sigma: float, top_fraction: float, eps_tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top, included, p): positions in ``errors`` of the ceil(top_fraction * n) largest errors
    (largest first, ties by position), of those whose tail probability is below ``eps_tol``,
    and the tail probability of every examined error."""
    e = np.asarray(errors, dtype=float)
    p = tail_probability(e, mu, sigma)
    n_top = min(len(e), math.ceil(top_fraction * len(e) - 1e-9))
    top = np.argsort(-e, kind="stable")[:n_top]
    return top, top[p[top] < eps_tol], p


@dataclass
class SamplingRun:
    """A trained model and its record (active or static).

    ``curve``: one row per epoch (epoch, train_loss, val_loss, val_force_rmse,
    val_energy_rmse_per_atom, lr, n_train). ``best``/``final``: the row of the best-validation
    epoch and of the last epoch. ``blob``: best-validation weights; ``final_blob``: last weights.
    ``iterations``: per active-sampling iteration, the statistics of the filter and every
    inclusion (frame index, error e in eV/A, tail probability p). Index arrays refer to the
    frames the :class:`~al_flows.potential.training.Trainer` was built on.
    """

    strategy: str
    blob: bytes
    final_blob: bytes
    curve: list[dict]
    best: dict
    final: dict
    n_steps: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    initial_train_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    reserve_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    iterations: list[dict] = field(default_factory=list)


def _finish(trainer: Trainer, strategy: str, curve: list[dict], seed: int, train_idx, val_idx, **sets) -> SamplingRun:
    """Serialise the last and the best-validation weights (leaving the best loaded) into a SamplingRun."""
    extra = {"seed": int(seed), "n_steps": int(trainer.n_steps), "strategy": strategy}
    final_row = dict(curve[-1])
    final_blob = trainer.blob({**extra, "weights": "final", "epoch": final_row["epoch"]})
    best_row = trainer.restore_best() or final_row
    blob = trainer.blob({**extra, "weights": "best", "epoch": best_row["epoch"]})
    return SamplingRun(
        strategy=strategy,
        blob=blob,
        final_blob=final_blob,
        curve=curve,
        best=dict(best_row),
        final=final_row,
        n_steps=int(trainer.n_steps),
        train_idx=train_idx,
        val_idx=val_idx,
        **sets,
    )


def run_active_sampling(
    trainer: Trainer, pool_idx, settings: ActiveSamplingSettings, seed: int, log=None
) -> SamplingRun:
    """Active sampling over frames ``pool_idx`` of ``trainer`` (a fresh Trainer). The split and
    the reserve draws come from ``numpy.random.default_rng((seed, 7))``; ``log(msg)`` gets one
    line per iteration."""
    pool_idx = np.asarray(pool_idx, dtype=int)
    n_init, n_val, n_exam = split_sizes(len(pool_idx), settings)
    rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 7))
    perm = pool_idx[rng.permutation(len(pool_idx))]
    train = np.sort(perm[:n_init])
    val = np.sort(perm[n_init : n_init + n_val])
    reserve = np.sort(perm[n_init + n_val :])
    initial = train.copy()
    trainer.fit_reference(train)
    curve: list[dict] = []
    iterations: list[dict] = []
    for it in range(1, settings.n_iterations + 1):
        rows = trainer.run_epochs(train, val, settings.epochs_per_iteration)
        curve.extend(rows)
        record = {
            "iteration": it,
            "n_train": int(len(train)),
            "n_reserve": int(len(reserve)),
            "train_loss": rows[-1]["train_loss"],
            "val_loss": rows[-1]["val_loss"],
            "val_force_rmse": rows[-1]["val_force_rmse"],
            "lr": rows[-1]["lr"],
            "n_examined": 0,
            "n_top": 0,
            "mu": float("nan"),
            "sigma": float("nan"),
            "threshold": float("nan"),
            "included": [],
        }
        if len(reserve):
            train_err = trainer.errors(train).force_error
            mu = float(train_err.mean())
            sigma = float(train_err.std(ddof=1)) if len(train_err) > 1 else 0.0
            examined = np.sort(rng.choice(reserve, size=min(n_exam, len(reserve)), replace=False))
            err = trainer.errors(examined).force_error
            top, inc, p = filter_examined(err, mu, sigma, settings.top_fraction, settings.eps_tol)
            included = examined[inc]
            record.update(
                n_examined=int(len(examined)),
                n_top=int(len(top)),
                mu=mu,
                sigma=sigma,
                threshold=gaussian_threshold(mu, sigma, settings.eps_tol) if sigma > 0 else mu,
                examined_error_mean=float(err.mean()),
                included=[{"index": int(examined[k]), "error": float(err[k]), "p": float(p[k])} for k in inc],
            )
            train = np.sort(np.concatenate([train, included]))
            reserve = np.setdiff1d(reserve, included, assume_unique=True)
        iterations.append(record)
        if log:
            log(
                f"active sampling iteration {it}/{settings.n_iterations}: {record['n_train']} train, "
                f"val loss {record['val_loss']:.4g}, included {len(record['included'])} of {record['n_examined']} "
                "examined"
            )
    return _finish(
        trainer,
        "active",
        curve,
        seed,
        train,
        val,
        initial_train_idx=initial,
        reserve_idx=reserve,
        iterations=iterations,
    )


def static_epochs(
    trainer: Trainer, n_train: int, budget: Literal["steps", "epochs"], active_steps: int, active_epochs: int
) -> int:
    """Epochs a static baseline on ``n_train`` frames gets: the active run's optimiser steps
    (rounded up to whole epochs) or its number of epochs."""
    if budget == "epochs":
        return int(active_epochs)
    return max(1, math.ceil(int(active_steps) / trainer.steps_per_epoch(n_train)))


def train_static(trainer: Trainer, train_idx, val_idx, n_epochs: int, strategy: str, seed: int) -> SamplingRun:
    """Static training (fixed training set) of a fresh Trainer for ``n_epochs`` epochs."""
    train_idx, val_idx = np.sort(np.asarray(train_idx, dtype=int)), np.sort(np.asarray(val_idx, dtype=int))
    trainer.fit_reference(train_idx)
    curve = trainer.run_epochs(train_idx, val_idx, n_epochs)
    return _finish(trainer, strategy, curve, seed, train_idx, val_idx)
