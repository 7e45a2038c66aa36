"""The comparison of active sampling with static training of Sprueill et al. (their Table I), on one pool.

The pool is split once (seeded) into a held-out test set, never trained on or used for model
selection, and the rest. Three strategies train the same model settings on the rest:

- ``active``: active sampling (:mod:`al_flows.pool_study.active_sampling`);
- ``uniform``: static training on a uniform random 8:1 train:validation split of the rest,
  which with a 10 % test set is the paper's 8:1:1 split;
- ``active_set``: static training on the active run's final training and validation sets.

Static strategies get the active run's budget (same optimiser steps, or same epochs). Every
strategy is scored with its best-validation weights on the common test set.
"""

from __future__ import annotations

import math

import numpy as np

from al_flows.potential.training import Trainer

__all__ = [
    "STRATEGIES",
    "split_test",
    "uniform_split",
    "heldout_metrics",
    "strategy_row",
    "table_markdown",
    "TABLE_COLUMNS",
]

STRATEGIES = ("active", "uniform", "active_set")
STRATEGY_TITLES = {
    "active": "Active learning (1)",
    "uniform": "Uniform train set (2)",
    "active_set": "Active train set (3)",
}
TABLE_COLUMNS = (
    ("best_train_loss", "Best train loss"),
    ("best_val_loss", "Best val loss"),
    ("final_train_loss", "Final train loss"),
    ("final_val_loss", "Final val loss"),
    ("test_loss", "Test loss"),
    ("test_force_rmse", "Test force RMSE (eV/Å)"),
    ("test_force_mae", "Test force error (eV/Å)"),
    ("test_energy_rmse_per_atom", "Test energy RMSE (meV/atom)"),
    ("n_train", "Train frames"),
    ("n_steps", "Optimiser steps"),
)


def split_test(n_frames: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, test) frame indices, sorted; test holds round(test_fraction * n) frames (>= 1 when > 0)."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    n_test = 0 if test_fraction == 0 else max(1, round(test_fraction * n_frames))
    if n_test >= n_frames:
        raise ValueError(f"test_fraction: {test_fraction} of {n_frames} frames leaves nothing to train on")
    perm = np.random.default_rng((int(seed) & 0xFFFFFFFF, 11)).permutation(n_frames)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def uniform_split(rest_idx, seed: int, train_share: int = 8, val_share: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) uniform random split of ``rest_idx`` in the ratio train_share:val_share."""
    rest_idx = np.asarray(rest_idx, dtype=int)
    n_val = max(1, round(len(rest_idx) * val_share / (train_share + val_share)))
    perm = rest_idx[np.random.default_rng((int(seed) & 0xFFFFFFFF, 13)).permutation(len(rest_idx))]
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def uniform_train(rest_idx, val_idx, seed: int, train_share: int = 8, val_share: int = 1) -> np.ndarray:
    """Uniform random training frames for a given (common) validation set: as many frames as an
    8:1 split of ``rest_idx`` trains on, drawn from ``rest_idx`` outside ``val_idx`` (all of those
    when fewer remain)."""
    n_train = len(uniform_split(rest_idx, seed, train_share, val_share)[0])  # the same count as the own split
    free = np.setdiff1d(np.asarray(rest_idx, dtype=int), np.asarray(val_idx, dtype=int))
    perm = free[np.random.default_rng((int(seed) & 0xFFFFFFFF, 13)).permutation(len(free))]
    return np.sort(perm[:n_train])


def heldout_metrics(trainer: Trainer, test_idx) -> dict:
    """Errors of the trainer's current weights on the test frames: test_loss, test_force_rmse
    (per component, eV/A), test_force_mae (mean over frames of the mean force-error norm, eV/A),
    test_energy_rmse_per_atom (eV/atom)."""
    s = trainer.errors(test_idx).summary()
    return {
        "test_loss": s["loss"],
        "test_force_rmse": s["force_rmse"],
        "test_force_mae": s["force_mae"],
        "test_energy_rmse_per_atom": s["energy_rmse_per_atom"],
    }


def strategy_row(strategy: str, best: dict, final: dict, n_train: int, n_val: int, n_steps: int, metrics: dict) -> dict:
    """One row of the comparison table (losses from the best-validation and the last epoch)."""
    return {
        "strategy": strategy,
        "best_epoch": int(best["epoch"]),
        "best_train_loss": float(best["train_loss"]),
        "best_val_loss": float(best["val_loss"]) if best.get("val_loss") is not None else float("nan"),
        "final_train_loss": float(final["train_loss"]),
        "final_val_loss": float(final["val_loss"]) if final.get("val_loss") is not None else float("nan"),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_steps": int(n_steps),
        **{k: float(v) for k, v in metrics.items()},
    }


def _fmt(key: str, value) -> str:
    if isinstance(value, int):
        return str(value)
    if value is None or not math.isfinite(value):
        return "n/a"
    if key == "test_energy_rmse_per_atom":
        return f"{1000 * value:.2f}"
    return f"{value:.3g}" if "force" in key else f"{value:.2e}"


def table_markdown(rows: list[dict]) -> str:
    """Markdown table like Table I of Sprueill et al., plus the held-out test errors."""
    head = "| Learning strategy | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |"
    sep = "|---" * (len(TABLE_COLUMNS) + 1) + "|"
    lines = [head, sep]
    for row in rows:
        title = STRATEGY_TITLES.get(row["strategy"], row["strategy"])
        lines.append(f"| {title} | " + " | ".join(_fmt(k, row.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    return "\n".join(lines)
