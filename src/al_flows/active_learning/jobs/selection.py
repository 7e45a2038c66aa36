"""The selection job of a round: classify the explored frames by the trust window (DP-GEN) and pick
the frames to label (within the labelling budget, :mod:`al_flows.selection.budget`); the job also
records the stop policy's decision on the round (:mod:`al_flows.active_learning.stop_policy`), taken
here because the round's measures are known here (jobflow Maker over :mod:`al_flows.selection`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker

from al_flows.active_learning.schemas import ExtensionSelection, SelectionDocument
from al_flows.active_learning.stop_policy import RoundMeasures, StopDecision, StopPolicy
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.provenance import as_float
from al_flows.selection.adaptive import levels_settled
from al_flows.selection.budget import Allowance, BudgetSpent
from al_flows.selection.error_bounds import bound_of, deviation_levels, share_below
from al_flows.selection.strategies import SelectionResult, calibration_sample, select
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field, field_or_none, load_ensemble

__all__ = [
    "SelectMaker",
    "FeatureReader",
    "records",
    "classes",
    "budget_cut",
    "to_label",
    "budget_record",
    "skipped_records",
    "selected_words",
    "priority_of",
]


class FeatureReader:
    """Per-atom features of ``frames`` from the first member of the ensemble of ``models``
    (TrainingDocuments), loaded on the worker's device on the first call (the ``features`` of
    :func:`al_flows.selection.trust_levels.select`); ``device``: where it ran, None before."""

    def __init__(self, frames: list, models: list):
        self.frames, self.models = frames, models
        self.device: str | None = None

    def __call__(self, indices: list[int]) -> list[np.ndarray]:
        """Atom features of ``frames[i]`` for each of ``indices``."""
        ensemble = load_ensemble(self.models)
        self.device = str(ensemble.device)
        return ensemble.atom_features([self.frames[i] for i in indices])


def records(frames: list, result: SelectionResult, labelled: set[int], sample: set[int] | None = None) -> list[dict]:
    """One provenance record per explored frame: ids, deviation, class, whether it is labelled
    (``labelled``: the selection within the budget), ``calibration_sample`` True for a frame of
    ``sample`` (drawn uniformly to calibrate the error bound) and, with pick diverse, why it was
    chosen (``pick``, ``pick_rank``, ``pick_distance``: :class:`SelectionResult`)."""
    chosen = labelled
    return [
        {
            "frame_id": a.info["frame_id"],
            "explorer": a.info.get("explorer", ""),
            "parent_id": a.info.get("parent_id", ""),
            "deviation": as_float(a.info.get("deviation")),
            "status": status,
            "selected": i in chosen,
            **({"calibration_sample": True} if sample and i in sample else {}),
            **result.picks.get(i, {}),
        }
        for i, (a, status) in enumerate(zip(frames, result.status, strict=True))
    ]


@dataclass
class SelectMaker(Maker):
    """Classify a round's explored frames as accurate/candidate/failed and pick at most
    ``max_candidates`` new candidates (those of highest priority when the labelling budget allows
    fewer). Whether the campaign stops after the round is the stop ``policy``'s decision
    (:class:`~al_flows.active_learning.stop_policy.StopPolicy`), taken in this job because the
    round's measures are known here; the SelectionDocument records it."""

    name: str = "select"
    settings: SelectionSettings = dc_field(default_factory=SelectionSettings)

    def measure(
        self,
        explorations: list,
        result: SelectionResult,
        properties,
        levels: list | None,
        bound_share: float | None = None,
        bound_streak: int = 0,
    ) -> tuple[RoundMeasures, list[float]]:
        """What the round measured for the stop policy (the classes, the ANI-Al trajectories' median
        survival time, the convergence-property rows of ``properties``, whether the adaptive levels
        settled, the calibrated bound's share below the convergence target and its streak,
        :meth:`bound_progress`) and the adaptive levels of the last rounds ([] with a fixed or
        calibrated level); the other arguments as :meth:`make`'s."""
        survival = [t for e in explorations for t in (field_or_none(e, "survival_times_ps") or [])]
        n = result.n_frames
        history, settled = self.adaptive_levels(levels, result.trust_lo)
        measures = RoundMeasures(
            accurate_ratio=result.accurate_ratio,
            n_explored=n,
            median_survival_ps=float(np.median(survival)) if survival else None,
            property_rows=list(field(properties, "results")) if properties is not None else None,
            failed_ratio=result.n_failed / n if n else None,
            levels_settled=settled,
            bound_share=bound_share,
            bound_streak=bound_streak,
        )
        return measures, history

    def adaptive_levels(self, previous: list | None, level: float) -> tuple[list[float], bool | None]:
        """With ``trust_lo: adaptive``: the levels of the last ``checked_rounds`` rounds ending with this
        round's ``level`` (``previous``: the round before's list, eV/Angstrom) and whether they settled
        (:func:`al_flows.selection.adaptive.levels_settled`); ([], None) with a fixed or calibrated level."""
        if not self.settings.is_adaptive:
            return [], None
        adaptive = self.settings.adaptive_settings
        history = [*(float(x) for x in previous or []), float(level)][-adaptive.checked_rounds :]
        return history, levels_settled(history, adaptive)

    def round_settings(self, calibration=None) -> tuple[SelectionSettings, str]:
        """The selection settings of a round and where its trust levels came from (``settings``,
        ``calibrate``, ``error`` or ``adaptive``). ``calibration``: the previous round's
        CalibrationDocument. With ``selection.calibrate`` its fitted levels (or the levels in use when
        the fit was not applied) replace the configured ones; with ``selection.trust`` the error window
        read through the bound of every residual so far (:func:`al_flows.selection.error_bounds.deviation_levels`),
        once that bound is finite."""
        s = self.settings
        own = "adaptive" if s.is_adaptive else "settings"
        if calibration is None:
            return s, own
        if s.calibrate is not None:
            lo, hi = field_or_none(calibration, "trust_lo_next"), field_or_none(calibration, "trust_hi_next")
            if lo is not None and hi is not None:
                return s.model_copy(update={"trust_lo": lo, "trust_hi": hi}), "calibrate"
        if s.trust is not None:
            bound = bound_of(field_or_none(calibration, "residuals"), s.trust_coverage)
            levels = deviation_levels(s.trust, bound)
            if levels is not None:
                return s.model_copy(update={"trust_lo": levels[0], "trust_hi": levels[1]}), "error"
        return s, own

    def bound_progress(self, frames: list, calibration, policy: StopPolicy) -> tuple[float | None, int]:
        """With ``convergence.error_bound``: the share of ``frames`` whose bound (every residual so far,
        the previous round's CalibrationDocument ``calibration``) is below the target, and the rounds in a
        row that met it, this one included; (None, 0) otherwise."""
        target = policy.error_bound
        if target is None or calibration is None:
            return None, 0
        coverage = target.coverage if target.coverage is not None else self.settings.bound.coverage
        bound = bound_of(field_or_none(calibration, "residuals"), coverage)
        share = share_below([as_float(a.info.get("deviation")) for a in frames], bound, target.target)
        return share, policy.bound_streak(share, int(field_or_none(calibration, "bound_streak") or 0))

    @al_job(output_schema=SelectionDocument)
    def make(
        self,
        explorations: list,
        exclude_ids: list,
        campaign: str,
        round: int,
        seed: int,
        calibration=None,
        stage: int = 0,
        spent: dict | None = None,
        properties=None,
        models: list | None = None,
        levels: list | None = None,
        policy: StopPolicy | None = None,
    ) -> SelectionDocument:
        """``calibration``: the previous round's CalibrationDocument, whose next levels replace the
        configured ones (a fit not applied carries the levels in use). ``spent``: the labelling budget
        the rounds before spent (a BudgetSpent dict); a round allowed fewer frames than it selected
        labels those of highest priority and records the others in ``budget_skipped``. ``properties``:
        the round's PropertiesDocument (``convergence.properties``). ``models``: the round's TrainingDocuments,
        given only with ``pick: diverse`` (the first member's atom features, loaded only above the cap).
        ``levels``: with ``trust_lo: adaptive``, the round before's adaptive levels (``trust_lo_levels``).
        ``policy``: the campaign's stop policy (default: :class:`StopPolicy`'s defaults)."""
        start = time.perf_counter()
        frames = [a for e in explorations for a in frames_from_bytes(field(e, "frames_blob"))]
        settings, levels_from = self.round_settings(calibration)
        features = FeatureReader(frames, models) if models is not None else None
        result = select(frames, settings, exclude_ids=exclude_ids, seed=seed, features=features)
        sample = calibration_sample(frames, result, settings.bound.random_sample, exclude_ids, seed)
        policy = policy if policy is not None else StopPolicy()
        share, streak = self.bound_progress(frames, calibration, policy)
        measures, history = self.measure(explorations, result, properties, levels, share, streak)
        decision = policy.decide(measures, round, stage, spent)
        allowed = policy.allowance(spent)
        keep, skipped = to_label(frames, result.priority, sample, allowed, decision.stop, settings.strategy)
        chosen = [frames[i] for i in sorted(keep)]  # exploration order, as without a budget
        if skipped:
            progress.report("budget", round, labelled=len(keep), skipped=len(skipped), limit=allowed.limit)
        device = features.device if features is not None else None
        met = policy.properties_met(measures.property_rows)
        extra = {
            **({"pick": settings.pick, "device": device} if device else {}),
            **({"trust_lo": f"{result.trust_lo:.4f}", "settled": measures.levels_settled} if history else {}),
        }
        counts = classes(result, len(frames))
        report_selection(round, stage, counts, result, decision, len(chosen), measures.property_rows, extra)
        return SelectionDocument(
            campaign=campaign,
            round=round,
            ensemble_id=field(explorations[0], "ensemble_id") if explorations else "",
            **counts,
            n_selected=len(chosen),
            strategy=settings.strategy,
            median_survival_ps=measures.median_survival_ps,
            stage=stage,
            next_stage=decision.next_stage,
            converged=decision.converged,
            stop=decision.stop,
            trust_lo=result.trust_lo,
            trust_hi=settings.trust_hi,
            trust_lo_levels=history,
            levels_settled=measures.levels_settled,
            n_calibration_sample=len(set(sample) & set(keep)),
            bound=self.bound_record(calibration),
            trust_levels_from=levels_from,
            bound_share=share,
            bound_streak=streak,
            properties=measures.property_rows or [],
            properties_met=met,
            stop_reason=decision.reason,
            budget=None if policy.budget is None else budget_record(allowed, spent),
            budget_skipped=skipped_records(frames, skipped, len(keep), allowed.reason),
            pick=settings.pick if settings.strategy == "deviation" else None,
            diverse_features=settings.diverse_features if settings.needs_features else None,
            device=device,
            priority=[frames[i].info["frame_id"] for i in keep],
            records=records(frames, result, set(keep), set(sample)),
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )

    def bound_record(self, calibration) -> dict | None:
        """The bound a round reads at ``selection.bound.coverage`` (the previous round's
        CalibrationDocument's residuals) as a dict; None before any residual."""
        residuals = field_or_none(calibration, "residuals") if calibration is not None else None
        bound = bound_of(residuals, self.settings.bound.coverage)
        return bound.as_dict() if bound is not None else None

    @al_job(output_schema=ExtensionSelection)
    def extension(
        self, selection, campaign: str, round: int, spent: dict | None = None, policy: StopPolicy | None = None
    ) -> ExtensionSelection:
        """The frames of round ``round``'s selection (its SelectionDocument ``selection``) that a run
        extending the campaign labels before the next round trains: the round stopped the campaign,
        so its selection was not labelled. ``spent``: what the rounds up to ``round`` spent of the
        labelling budget (a BudgetSpent dict) that ``policy`` (the campaign's stop policy) sets; a
        budget that allows fewer frames keeps those of highest priority (:func:`priority_of`) and
        records the others in ``budget_skipped``. The frames kept are marked ``labelled_on_extension``
        (their labels' provenance)."""
        start = time.perf_counter()
        frames = frames_from_bytes(field(selection, "selected_blob"))
        order = priority_of(frames, field_or_none(selection, "priority") or [], field_or_none(selection, "records"))
        policy = policy if policy is not None else StopPolicy()
        allowed = policy.allowance(spent)
        keep, skipped = budget_cut(order, allowed.n, False)
        chosen = [frames[i] for i in sorted(keep)]  # the selection's order, as a round labels
        for atoms in chosen:
            atoms.info["labelled_on_extension"] = True
        progress.report(
            "label the stopped round's selection",
            round,
            selected=len(frames),
            to_label=len(chosen),
            **({"skipped": len(skipped), "limit": allowed.limit} if skipped else {}),
        )
        return ExtensionSelection(
            campaign=campaign,
            round=round,
            n_selected=len(frames),
            n_to_label=len(chosen),
            budget=None if policy.budget is None else budget_record(allowed, spent),
            budget_skipped=skipped_records(frames, skipped, len(keep), allowed.reason),
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )


def selected_words(n: int, decision: StopDecision) -> str:
    """The ``selected`` count of a select progress line: a round that stops the campaign labels
    nothing, and the line says so (a later run that extends the campaign labels them first)."""
    if decision.stop and n:
        return f"{n} (not labelled: the campaign stops, {decision.reason})"
    return str(n)


def priority_of(frames: list, priority: list[str], records: list[dict] | None = None) -> list[int]:
    """Indices of ``frames`` (a round's selection), most valuable first: in the order of the frame
    ids ``priority`` (SelectionDocument.priority); for a document without it, the diverse pick's
    rank where the records have one, else the highest deviation first (ties: selection order)."""
    ids = [a.info["frame_id"] for a in frames]
    if priority and set(priority) == set(ids):
        where = {fid: i for i, fid in enumerate(ids)}
        return [where[fid] for fid in priority]
    ranks = {r["frame_id"]: r["pick_rank"] for r in records or [] if r.get("pick_rank") is not None}

    def key(i: int):
        dev = as_float(frames[i].info.get("deviation"))
        return (ranks.get(ids[i], len(frames)), -dev if dev is not None else np.inf, i)

    return sorted(range(len(frames)), key=key)


def classes(result: SelectionResult, n_explored: int) -> dict:
    """The class counts and accurate ratio of a selection, as SelectionDocument fields."""
    return {
        "n_explored": n_explored,
        "n_accurate": result.n_accurate,
        "n_candidate": result.n_candidate,
        "n_failed": result.n_failed,
        "n_duplicate": result.n_duplicate,
        "accurate_ratio": result.accurate_ratio,
    }


def report_selection(
    round_: int,
    stage: int,
    counts: dict,
    result: SelectionResult,
    decision: StopDecision,
    n_chosen: int,
    prop_rows: list[dict] | None,
    extra: dict,
) -> None:
    """The progress lines of a round's selection: the stage it finished (staged exploration), then one
    line with the class counts, the frames selected (and whether they are labelled), the accurate
    ratio, the properties within tolerance (``prop_rows``, None when the campaign lists none) and
    ``extra`` fields (pick diverse's device; with ``trust_lo: adaptive`` the round's level and whether
    the levels settled)."""
    if decision.next_stage != stage:
        progress.report("exploration stage done", round_, done=stage, next=decision.next_stage)
    progress.report(
        "select",
        round_,
        **{k.removeprefix("n_"): v for k, v in counts.items() if k not in ("n_duplicate", "accurate_ratio")},
        selected=selected_words(n_chosen, decision),
        accurate_ratio=f"{result.accurate_ratio:.3f}",
        **(
            {}
            if prop_rows is None
            else {"properties_within": f"{sum(r['within'] for r in prop_rows)}/{len(prop_rows)}"}
        ),
        **extra,
    )


def to_label(
    frames: list, priority: list[int], sample: list[int], allowed: Allowance, stop: bool, strategy: str
) -> tuple[list[int], list[int]]:
    """(frames to label, frames skipped for the budget), as :func:`budget_cut` over the selection's
    ``priority`` followed by the calibration ``sample``; each frame to label is marked with how it was
    chosen (``info['selection']``: ``strategy`` or ``calibration_sample``, kept with its label)."""
    keep, skipped = budget_cut(priority + sample, allowed.n, stop)
    for i in keep:
        frames[i].info["selection"] = "calibration_sample" if i in sample else strategy
        if i in sample:
            frames[i].info["calibration_sample"] = True
    return keep, skipped


def budget_cut(priority: list[int], allowed: int | None, stop: bool) -> tuple[list[int], list[int]]:
    """(frames to label, frames skipped for the budget), both in priority order: the first
    ``allowed`` of ``priority`` (all when None). A round that stops labels nothing, so it skips
    nothing for the budget."""
    if allowed is None or stop:
        return list(priority), []
    return list(priority[:allowed]), list(priority[allowed:])


def budget_record(allowed: Allowance, spent: dict | None) -> dict:
    """The ``budget`` entry of a SelectionDocument: what the rounds before spent and this round's allowance."""
    return {
        "spent_before": BudgetSpent.model_validate(spent or {}).model_dump(),
        "allowed": allowed.n,
        "limit": allowed.limit,
        "reason": allowed.reason,
        "core_hours_per_label": allowed.core_hours_per_label,
        "estimate_from": allowed.estimate_from,
    }


def skipped_records(frames: list, skipped: list[int], n_kept: int, reason: str) -> list[dict]:
    """The ``budget_skipped`` entries of the frames ``skipped`` (in priority order, after the
    ``n_kept`` labelled ones): frame id, deviation, priority (0: the most valuable) and reason."""
    return [
        {
            "frame_id": frames[i].info["frame_id"],
            "deviation": as_float(frames[i].info.get("deviation")),
            "priority": n_kept + rank,
            "reason": f"{reason}; {n_kept} frame(s) of higher priority labelled",
        }
        for rank, i in enumerate(skipped)
    ]
