"""Statistics of a label-efficiency comparison between two selection strategies (no jobflow, numpy only).

A *curve* is one run of one strategy: the label counts it trained on, round by round, and a test
error at each (test force RMSE, energy RMSE, ...). Two strategies are compared seed by seed (the
runs of one seed share their initial labels, their pool and their members' seeds), and only ever
at label counts both curves hold:

- :func:`equal_label_ratios`: the error ratio a / b at every label count both curves reached;
  nothing is interpolated, so a strategy that labelled fewer frames is compared at its own counts
  and never against an extrapolation of the other;
- :func:`mean_log_error`: the area under log(error) against labels over a label range, divided by
  its width (the mean log error over the campaign); exp of the difference of two strategies is
  their geometric-mean error ratio over the whole curve;
- :func:`label_ratio`: labels strategy a needs to reach b's final error, over the labels b's own
  curve needed to reach it (identical curves give 1; below 1: a saves labels); when a never
  reaches it, a's last label count stands in and the ratio is a lower bound;
- :func:`paired_bootstrap`: a percentile bootstrap interval of a statistic of paired per-seed
  values (the seeds are resampled, each keeping its pair);
- :func:`energy_differences` and :func:`profile_errors`: errors of energy differences (formation
  energies, stacking-fault and surface energies, shear energy profiles relative to gamma = 0)
  computed from per-frame energies, so that a potential is scored on what it is for and not only
  on absolute frame energies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "common_labels",
    "equal_label_ratios",
    "mean_log_error",
    "labels_to_reach",
    "label_ratio",
    "paired_bootstrap",
    "ratio_of_means",
    "label_ratio_interval",
    "format_interval",
    "energy_differences",
    "profile_errors",
]


def common_labels(a_labels: Sequence[float], b_labels: Sequence[float]) -> list[float]:
    """The label counts present in both curves, ascending."""
    return sorted(set(map(float, a_labels)) & set(map(float, b_labels)))


def equal_label_ratios(
    a_labels: Sequence[float], a_values: Sequence[float], b_labels: Sequence[float], b_values: Sequence[float]
) -> dict[float, float]:
    """{label count: a's error / b's error} at every label count both curves hold (no interpolation)."""
    a = dict(zip(map(float, a_labels), map(float, a_values), strict=True))
    b = dict(zip(map(float, b_labels), map(float, b_values), strict=True))
    return {n: a[n] / b[n] for n in common_labels(list(a), list(b))}


def mean_log_error(labels: Sequence[float], values: Sequence[float], lo: float, hi: float) -> float:
    """(1 / (hi - lo)) * the trapezoid area under log(value) against labels, over the points with
    lo <= labels <= hi (both ends must be points of the curve; ValueError otherwise)."""
    x = np.asarray(labels, dtype=float)
    y = np.log(np.asarray(values, dtype=float))
    keep = (x >= lo) & (x <= hi)
    x, y = x[keep], y[keep]
    if not len(x) or x[0] != lo or x[-1] != hi or hi <= lo:
        raise ValueError(f"mean_log_error: the curve must hold label counts {lo} and {hi} (lo < hi)")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (hi - lo))


def labels_to_reach(labels: Sequence[float], values: Sequence[float], target: float) -> tuple[float, bool]:
    """(label count at which the curve first reaches ``target``, reached?), linear between its own
    consecutive rounds; when it never does: (its last label count, False)."""
    x, y = list(map(float, labels)), list(map(float, values))
    if y[0] <= target:
        return x[0], True
    for (x0, y0), (x1, y1) in zip(zip(x, y, strict=True), zip(x[1:], y[1:], strict=True), strict=False):
        if y1 <= target < y0:
            return x0 + (y0 - target) / (y0 - y1) * (x1 - x0), True
    return x[-1], False


def label_ratio(
    a_labels: Sequence[float], a_values: Sequence[float], b_labels: Sequence[float], b_values: Sequence[float]
) -> dict:
    """Labels a needs to reach b's final error / labels b's own curve needed to reach it:
    ``{ratio, needed, base, reached}`` (reached False: a never reached it; ``needed`` is then a's
    last label count and the ratio a lower bound)."""
    target = float(b_values[-1])
    base, _ = labels_to_reach(b_labels, b_values, target)
    needed, reached = labels_to_reach(a_labels, a_values, target)
    return {"ratio": needed / base, "needed": needed, "base": base, "reached": reached, "target": target}


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    statistic: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(statistic of all pairs, lower, upper): the percentile bootstrap interval at ``level`` of
    ``statistic(a_sample, b_sample)``, where each resample draws seeds with replacement and keeps
    every seed's pair (a[i], b[i]) together."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1 or not len(a_arr):
        raise ValueError("paired_bootstrap: a and b must be paired 1-d sequences of equal, non-zero length")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a_arr), size=(n_boot, len(a_arr)))
    stats = np.array([statistic(a_arr[i], b_arr[i]) for i in idx])
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(statistic(a_arr, b_arr)), float(lo), float(hi)


def ratio_of_means(a: np.ndarray, b: np.ndarray) -> float:
    """mean(a) / mean(b)."""
    return float(np.mean(a) / np.mean(b))


def label_ratio_interval(per_seed: Sequence[dict], n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """The label ratio over seeds, sum of labels needed / sum of base labels (``label_ratio`` rows,
    one per seed), with its paired bootstrap interval: ``{ratio, lo, hi, lower_bound, n_seeds,
    n_unreached}``; ``lower_bound``: some seed never reached the target, so the ratio (and the
    interval's ends) are lower bounds."""
    needed = [r["needed"] for r in per_seed]
    base = [r["base"] for r in per_seed]
    ratio, lo, hi = paired_bootstrap(needed, base, ratio_of_means, n_boot, seed, level)
    unreached = sum(not r["reached"] for r in per_seed)
    return {
        "ratio": ratio,
        "lo": lo,
        "hi": hi,
        "lower_bound": unreached > 0,
        "n_seeds": len(per_seed),
        "n_unreached": unreached,
    }


def format_interval(value: float, lo: float, hi: float, lower_bound: bool = False, digits: int = 2) -> str:
    """'X [lo, hi]', with '>' before X (and each end) when they are lower bounds."""
    g = ">" if lower_bound else ""
    return f"{g}{value:.{digits}f} [{g}{lo:.{digits}f}, {g}{hi:.{digits}f}]"


def energy_differences(specs: Sequence[dict], energies: Sequence[float]) -> np.ndarray:
    """Each spec's ``scale * sum(coefficient * energies[index])`` for its ``terms`` [(index,
    coefficient), ...] (e.g. a vacancy: [(defect, 1), (bulk, -(N-1)/N)])."""
    e = np.asarray(energies, dtype=float)
    return np.array([float(s.get("scale", 1.0)) * sum(c * e[int(i)] for i, c in s["terms"]) for s in specs])


def profile_errors(reference: Sequence[float], predicted: Sequence[float]) -> dict:
    """Errors of an energy profile along a path whose first point is the reference state (gamma = 0):
    both profiles are taken relative to their own first point; ``{rmse, barrier_error}`` (RMSE over
    the other points, and predicted - reference of the profile maximum), in the energies' unit."""
    ref = np.asarray(reference, dtype=float)
    pred = np.asarray(predicted, dtype=float)
    if ref.shape != pred.shape or len(ref) < 2:
        raise ValueError("profile_errors: two profiles of equal length, at least 2 points")
    ref, pred = ref - ref[0], pred - pred[0]
    return {
        "rmse": float(np.sqrt(np.mean((pred[1:] - ref[1:]) ** 2))),
        "barrier_error": float(pred.max() - ref.max()),
    }
