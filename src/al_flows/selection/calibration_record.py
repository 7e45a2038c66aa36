"""How well the ensemble deviation tracks the true error: the measures a round's calibration record
holds (docs/methods.md, "Calibrated error bounds").

For residual points (dicts with ``deviation`` and ``error``, eV/Angstrom: the largest atomic force
deviation and error of the ensemble that has not trained on the frame; optionally ``element``,
``energy_deviation`` and ``energy_error``, eV/atom):

- **Spearman correlation** of deviation and error (does a higher deviation rank a higher error?);
- **scale**: the least-squares slope of error on deviation through the origin (error ~ scale * eps;
  the ensemble underestimates the error when it is above 1);
- **raw coverage**: the share of frames whose error is at most their deviation (the deviation read
  as a bound, uncalibrated);
- **coverage**: the share whose error is at most the conformal bound fitted on the residuals of
  earlier rounds (:mod:`al_flows.selection.conformal`), none before a bound exists;
- **coverage curve and miscalibration area**: the observed coverage of the bound fitted on earlier
  residuals at nominal coverages 0.1 ... 0.95, and the area between that curve and the diagonal
  over [0, 1] (with the ends (0, 0) and (1, 1)): 0 for a calibrated bound, at most 0.5.

Pure code: numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

from al_flows.potential.deviation import atomic_force_deviation
from al_flows.selection.calibration import fit_relation
from al_flows.selection.conformal import ConformalBound, covered, fit_conformal

__all__ = ["NOMINALS", "residuals_of", "spearman", "coverage_curve", "miscalibration_area", "residual_measures"]

NOMINALS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def residuals_of(frames: Sequence, energies: np.ndarray, forces: Sequence[np.ndarray], round_: int) -> list[dict]:
    """One residual point per labelled frame (ASE Atoms with the label's energy and forces) from the
    member predictions of an ensemble that has not trained on it: ``energies`` [M, n_frames] (eV),
    ``forces`` one [M, n_atoms, 3] array per frame (eV/Angstrom). Each point: frame_id, round, sample
    (``random`` for a frame labelled as a calibration sample, else ``selected``), deviation and error
    (largest atomic force deviation and largest atomic force error of the ensemble mean,
    eV/Angstrom), element (of the most-deviating atom), energy_deviation and energy_error (the
    members' population standard deviation and the mean's absolute error, eV/atom)."""
    points = []
    for j, atoms in enumerate(frames):
        f = np.asarray(forces[j], dtype=float)
        per_atom = atomic_force_deviation(f)
        worst = int(np.argmax(per_atom))
        n = len(atoms)
        e = np.asarray(energies[:, j], dtype=float)
        points.append(
            {
                "frame_id": atoms.info.get("frame_id", ""),
                "round": round_,
                "sample": "random" if atoms.info.get("calibration_sample") else "selected",
                "deviation": float(per_atom[worst]),
                "error": float(np.linalg.norm(f.mean(axis=0) - atoms.get_forces(), axis=1).max()),
                "element": atoms.get_chemical_symbols()[worst],
                "energy_deviation": float(e.std() / n),
                "energy_error": float(abs(e.mean() - atoms.get_potential_energy()) / n),
            }
        )
    return points


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman rank correlation of finite pairs; None for fewer than 3 or a constant side."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def coverage_curve(
    calibration: Sequence[dict], points: Sequence[dict], min_per_element: int | None = 20, nominals=NOMINALS
) -> list[dict]:
    """Observed coverage on ``points`` of the bound fitted on ``calibration`` at each nominal
    coverage ({nominal, observed, finite}); [] without points or calibration residuals."""
    if not points or not calibration:
        return []
    rows = []
    for p in nominals:
        bound = fit_conformal(calibration, p, min_per_element)
        rows.append({"nominal": p, "observed": float(covered(bound, points).mean()), "finite": bound.finite})
    return rows


def miscalibration_area(curve: Sequence[dict]) -> float | None:
    """Area between an observed-coverage curve (:func:`coverage_curve`) and the diagonal over [0, 1],
    with the ends (0, 0) and (1, 1); None for an empty curve."""
    if not curve:
        return None
    x = np.array([0.0, *(r["nominal"] for r in curve), 1.0])
    y = np.array([0.0, *(r["observed"] for r in curve), 1.0])
    gap = np.abs(y - x)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    fit = fit_relation(x, y, "proportional")
    return float(fit["a"]) if fit["n"] else None


def residual_measures(
    points: Sequence[dict], earlier: Sequence[dict], coverage: float, min_per_element: int | None = 20
) -> dict:
    """The measures of the module doc for ``points`` (this round's residuals of one kind), with the
    bound fitted on ``earlier`` (the residuals of the rounds before) at ``coverage``."""
    dev = np.array([float(p["deviation"]) for p in points], dtype=float)
    err = np.array([float(p["error"]) for p in points], dtype=float)
    e_dev = np.array([float(p.get("energy_deviation", np.nan)) for p in points], dtype=float)
    e_err = np.array([float(p.get("energy_error", np.nan)) for p in points], dtype=float)
    before: ConformalBound | None = fit_conformal(earlier, coverage, min_per_element) if earlier else None
    curve = coverage_curve(earlier, points, min_per_element)
    return {
        "n": len(points),
        "spearman": spearman(dev, err),
        "scale": _slope(dev, err) if len(points) else None,
        "raw_coverage": float(np.mean(err <= dev)) if len(points) else None,
        "coverage": float(covered(before, points).mean()) if before is not None and before.finite and points else None,
        "curve": curve,
        "miscalibration_area": miscalibration_area(curve),
        "energy_spearman": spearman(e_dev, e_err),
        "energy_scale": _slope(e_dev, e_err) if np.isfinite(e_dev).any() else None,
    }
