"""Replayed active learning on a labelled pool: selection isolated from exploration feedback.

One pool of labelled frames stands in for everything the explorers could propose. Each strategy
starts from the same initial labels and repeats, round after round:

1. train an ensemble on its labels;
2. score ``n_scored`` frames drawn from the pool (the same draw for every strategy of a seed and
   round, less the frames the strategy already labelled) by the ensemble's force deviation
   (:attr:`al_flows.potential.EnsemblePrediction.deviation`);
3. pick ``k`` of them with :func:`al_flows.selection.select` and add them to its labels.

Every strategy labels exactly ``k`` frames a round, so curves of different strategies meet at the
same label counts. A deviation strategy whose trust window holds fewer than ``k`` scored frames
fills the round with the next-highest deviations below ``trust_lo`` (``n_fill`` in its row says
how many); strategy random draws uniformly among the scored frames and needs no scores. The
ensemble a round trains on the initial labels is the same for every strategy of a seed, as are the
members' seeds of a given round, so strategies differ only by the frames they chose.

With ``residuals`` given, each round also checks the calibrated error bound as a campaign would
(:mod:`al_flows.selection.conformal`): the frames picked are residuals of the ensemble that picked
them (measured before it trains on them); the bound fitted on every residual so far is read on the
test frames of the ensemble trained next (``evaluate`` returns their residuals as ``test_points``).
Each row's ``calibration`` holds the coverage there, and on the frames just picked under the bound
before them (:func:`calibration_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from al_flows.selection.calibration_record import residual_measures
from al_flows.selection.conformal import fit_conformal
from al_flows.selection.strategies import select
from al_flows.selection.trust_levels import SelectionSettings

__all__ = ["ReplayStrategy", "pick_frames", "run_replay", "calibration_row"]


@dataclass(frozen=True)
class ReplayStrategy:
    """A selection rule: ``strategy`` random or deviation; deviation's ``pick`` (highest, random,
    diverse) inside the trust window [trust_lo, trust_hi) (eV/Angstrom)."""

    name: str
    strategy: str = "deviation"
    pick: str = "highest"
    trust_lo: float = 0.05
    trust_hi: float = 0.5

    @property
    def needs_scores(self) -> bool:
        """Whether picking needs the ensemble's deviations."""
        return self.strategy != "random"


def pick_frames(
    frames: Sequence[Atoms],
    deviations: np.ndarray | None,
    strategy: ReplayStrategy,
    k: int,
    seed: int,
    features: Callable[[list[int]], list[np.ndarray]] | None = None,
) -> tuple[list[int], dict]:
    """(positions in ``frames`` of the k frames to label, record): :func:`al_flows.selection.select`
    with the strategy's settings; a deviation strategy with fewer than k frames in its window takes
    the rest by deviation, highest first, from below the window (record: n_window, n_fill)."""
    settings = SelectionSettings(
        trust_lo=strategy.trust_lo,
        trust_hi=strategy.trust_hi,
        strategy="random" if strategy.strategy == "random" else "deviation",
        pick=strategy.pick if strategy.strategy != "random" else "random",
        max_candidates=k,
    )
    eps = np.full(len(frames), np.nan) if deviations is None else np.asarray(deviations, dtype=float)
    work = []
    for atoms, d in zip(frames, eps, strict=True):
        view = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        view.info = {"deviation": float(d), "frame_id": atoms.info.get("frame_id") or str(id(atoms))}
        work.append(view)
    result = select(work, settings, seed=seed, features=features)
    chosen = list(result.selected)
    n_window = result.n_candidate if strategy.strategy != "random" else len(frames)
    n_fill = 0
    if len(chosen) < k and strategy.strategy != "random":
        below = [i for i in np.argsort(-np.nan_to_num(eps, nan=-np.inf), kind="stable") if i not in set(chosen)]
        below = [int(i) for i in below if np.isfinite(eps[i]) and eps[i] < strategy.trust_lo]
        n_fill = min(k - len(chosen), len(below))
        chosen += below[:n_fill]
    picked = eps[chosen] if deviations is not None else np.zeros(0)
    return sorted(chosen), {
        "n_window": int(n_window),
        "window_share": float(n_window / len(frames)) if len(frames) else 0.0,
        "n_fill": int(n_fill),
        "picked_deviation_median": float(np.median(picked)) if len(picked) else None,
        "scored_deviation_median": float(np.nanmedian(eps)) if deviations is not None else None,
    }


def run_replay(
    n_pool: int,
    initial: Sequence[int],
    strategies: Sequence[ReplayStrategy],
    k: int,
    n_rounds: int,
    n_scored: int,
    train: Callable[[list[int], int], object],
    score: Callable[[object, list[int]], np.ndarray],
    evaluate: Callable[[object], dict],
    pool_frames: Sequence[Atoms],
    seed: int,
    log: Callable[[str], None] | None = None,
    features: Callable[[object, list[int]], list[np.ndarray]] | None = None,
    residuals: Callable[[object, list[int]], list[dict]] | None = None,
    coverage: float = 0.9,
) -> dict[str, list[dict]]:
    """{strategy name: one row per round (round 0: the initial labels)}: each row holds round,
    labels, the pool indices labelled that round (``picked``), the pick record of
    :func:`pick_frames`, n_scored, and ``evaluate(model)``'s metrics.

    ``train(pool indices, round)`` returns a model (the members' seeds may depend on the round, not
    on the strategy); ``score(model, pool indices)`` its deviations on them; ``features(model,
    pool indices)`` the atom features for pick diverse; ``residuals(model, pool indices)`` the residual
    points of those frames under the model (:func:`al_flows.selection.calibration_record.residuals_of`),
    which turns on the bound's check at nominal ``coverage`` (module doc)."""
    initial = sorted(int(i) for i in initial)
    model0 = train(initial, 0)
    metrics0 = evaluate(model0)
    metrics0.pop("test_points", None)
    row0 = {"round": 0, "labels": len(initial), "picked": initial, "n_scored": 0, **metrics0}
    out: dict[str, list[dict]] = {}
    for strategy in strategies:
        labelled, model, rows = list(initial), model0, [dict(row0)]
        so_far: list[dict] = []
        for r in range(1, n_rounds + 1):
            draw = np.random.default_rng((int(seed) & 0xFFFFFFFF, r, 17)).permutation(n_pool)
            taken = set(labelled)
            scored = [int(i) for i in draw if int(i) not in taken][:n_scored]
            eps = score(model, scored) if strategy.needs_scores else None
            feats = None
            if strategy.pick == "diverse" and features is not None:
                m = model

                def feats(pos: list[int], m=m, scored=scored) -> list[np.ndarray]:
                    return features(m, [scored[p] for p in pos])

            pos, record = pick_frames(
                [pool_frames[i] for i in scored], eps, strategy, k, seed=int(seed) * 1000 + r, features=feats
            )
            picked = [scored[p] for p in pos]
            new = residuals(model, picked) if residuals is not None else []
            labelled = sorted(labelled + picked)
            model = train(labelled, r)
            metrics = evaluate(model)
            test_points = metrics.pop("test_points", None)
            row = {"round": r, "labels": len(labelled), "picked": picked, "n_scored": len(scored), **record} | metrics
            if residuals is not None:
                row["calibration"] = calibration_row(new, so_far, test_points or [], coverage)
                so_far = so_far + new
            rows.append(row)
            if log:
                log(f"    {strategy.name} round {r}: {len(labelled)} labels, window share {record['window_share']:.2f}")
        out[strategy.name] = rows
    return out


def calibration_row(new: list[dict], earlier: list[dict], test_points: list[dict], coverage: float) -> dict:
    """One replay round's check of the bound at nominal ``coverage``: on the frames just picked
    (``new``, residuals of the ensemble that picked them) the coverage of the bound fitted on the
    residuals before them (``earlier``); on ``test_points`` (the residuals of the ensemble trained
    next) the coverage of the bound fitted on all of them, its raw coverage, Spearman correlation
    and miscalibration area; the pooled scale and residual count."""
    every = earlier + new
    bound = fit_conformal(every, coverage, None)
    picked = residual_measures(new, earlier, coverage, None)
    test = residual_measures(test_points, every, coverage, None)
    return {
        "n_residuals": len(every),
        "bound_scale": bound.scale if bound.finite else None,
        "picked_coverage": picked["coverage"],
        "picked_scale": picked["scale"],
        "test_coverage": test["coverage"],
        "test_raw_coverage": test["raw_coverage"],
        "test_spearman": test["spearman"],
        "test_area": test["miscalibration_area"],
    }
