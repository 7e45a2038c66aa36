"""Pydantic output documents of the campaign's jobs.

Fields ending in ``_blob`` are routed by the jobs to the JobStore's ``data`` store;
documents only keep a reference to them. Blobs are text so that every store keeps them
intact (maggma's GridFSStore JSON-encodes what it stores): frames and datasets as
extxyz text (:func:`al_flows.frames.extxyz.frames_text`), model weights as base64 of a torch
state-dict file (:func:`al_flows.potential.weights.weights_text`). Energies eV, forces
and deviations eV/Angstrom.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from al_flows.settings import Settings
from al_flows.workflow.documents import CampaignDocument, EnsembleDocument, RoundDocument


class StructuresDocument(CampaignDocument):
    """Starting structures of a campaign (the explorers start from these)."""

    n_structures: int
    structure_ids: list[str]
    structures_blob: str = Field(repr=False)


class DatasetDocument(RoundDocument):
    """All labels available after a round (round -1: the initial data)."""

    n_frames: int
    n_added: int
    frame_ids: list[str]
    counts_by_explorer: dict[str, int]
    dataset_blob: str = Field(repr=False)


class TestSetDocument(CampaignDocument):
    """Fixed labeller-computed frames that no model is ever trained on."""

    n_frames: int
    frame_ids: list[str]
    frames_blob: str = Field(repr=False)


class TrainingDocument(RoundDocument):
    """One trained ensemble member and the exact labels it saw."""

    member: int
    seed: int
    model_id: str
    n_train: int
    n_val: int
    train_ids: list[str]
    val_ids: list[str]
    best_epoch: int
    val_force_rmse: float
    val_energy_rmse_per_atom: float
    curve: list[dict]
    frame_errors: list[dict] = []
    model_settings: dict
    training_settings: dict
    lr_used: float | None = Field(
        None, description="learning rate the member was trained with (training.lr unless retried)"
    )
    retries: list[dict] = Field(
        [],
        description="one entry per diverged attempt before the kept one: lr, epoch, reason (see "
        "al_flows.potential.training)",
    )
    device: str | None = Field(None, description="torch device the member trained on, resolved on the worker")
    start: Literal["scratch", "warm"] = Field(
        "scratch",
        description="scratch: fresh weights; warm: the weights of warm_start_from (training.warm_start; "
        "al_flows.potential.warm_start)",
    )
    warm_start_from: str | None = Field(None, description="warm: the model id of the member it started from")
    warm_start_uuid: str | None = Field(None, description="warm: the uuid of that member's train job")
    scratch_reason: str = Field(
        "", description="scratch: why (warm_start off, round 0, retrain_every, settings changed); '' when warm"
    )
    labels_from: list[str] = Field(
        [],
        description="what labelled its frames: their label settings ids (else labeller names); labels made "
        "otherwise than the previous member's train from scratch",
    )
    model_blob: str = Field(repr=False)


class EvaluationDocument(EnsembleDocument):
    """Errors of a round's ensemble (mean prediction) on the fixed test set."""

    n_test: int
    test_force_rmse: float
    test_energy_rmse_per_atom: float
    test_force_r2: float | None = Field(None, description="1 - SS_res / SS_tot over the test force components")
    test_force_rel_rmse: float | None = Field(None, description="test force RMSE / RMS of the reference forces")
    test_subsets: dict[str, dict] = Field(
        {},
        description="per subset (relaxed, nonequilibrium): n_frames, force_rmse, force_r2, force_rel_rmse, "
        "energy_rmse_per_atom",
    )
    val_force_rmse: float
    test_energies: list[float]
    predicted_energies: list[float]
    member_disagreement: float | None = Field(
        None,
        description="the ensemble's diversity: mean over test frames and member pairs of the RMS difference of two "
        "members' forces, eV/Angstrom (al_flows.potential.deviation.pairwise_force_disagreement)",
    )
    test_points: list[dict] = Field(
        default_factory=list,
        description="per test frame: deviation and error (largest atomic force deviation and error, eV/Angstrom), "
        "element, energy_deviation and energy_error (eV/atom) (al_flows.selection.calibration_record.residuals_of)",
    )


class ExplorationDocument(EnsembleDocument):
    """Frames one explorer produced with a round's ensemble."""

    explorer: str
    n_frames: int
    deviations: list[float]
    frames: list[dict] = []
    dropped: list[dict] = Field(
        [],
        description="replicas that blew up and were dropped: replica, step, reason, parent_id, ... "
        "(al_flows.exploration.replica_checks)",
    )
    survival_times_ps: list[float] = Field(
        [], description="ps per trajectory before it stopped (ANI-Al sampler; al_flows.exploration.md.survival_times)"
    )
    frames_blob: str = Field(repr=False)


class SelectionDocument(EnsembleDocument):
    """Trust-level classification of a round's explored frames and the frames chosen to label."""

    n_explored: int
    n_accurate: int
    n_candidate: int
    n_failed: int
    n_duplicate: int
    n_selected: int
    strategy: str = Field("deviation", description="selection.strategy: deviation, random or all")
    pick: str | None = Field(None, description="selection.pick with strategy deviation (None: another strategy)")
    diverse_features: str | None = Field(
        None, description="selection.diverse_features with pick diverse (structure or atoms), else None"
    )
    accurate_ratio: float
    median_survival_ps: float | None = Field(
        None, description="ps, median time the round's ANI-Al trajectories ran before they stopped (None: no such run)"
    )
    stage: int = Field(0, description="the exploration stage this round ran (DP-GEN stages; 0 without stages)")
    next_stage: int = Field(0, description="the stage of the next round (stage + 1 once a stage met its targets)")
    converged: bool
    stop: bool
    trust_lo: float = Field(description="eV/Angstrom; the lower trust level this round classified with")
    trust_hi: float
    trust_lo_levels: list[float] = Field(
        [], description="trust_lo: adaptive: the levels of the last checked rounds, this round's last (eV/Angstrom)"
    )
    levels_settled: bool | None = Field(
        None, description="trust_lo: adaptive: whether those levels stopped moving (None: a fixed or calibrated level)"
    )
    n_calibration_sample: int = Field(
        0,
        description="of n_selected, frames drawn uniformly to calibrate the error bound "
        "(selection.bound.random_sample)",
    )
    bound: dict | None = Field(
        None,
        description="the calibrated error bound this round read (coverage, scale, n residuals; fitted on the "
        "labels of the rounds before); None before any residual",
    )
    trust_levels_from: str = Field(
        "settings",
        description="where trust_lo/trust_hi came from: settings, calibrate (fitted levels), error (selection.trust "
        "through the bound) or adaptive",
    )
    bound_share: float | None = Field(
        None,
        description="convergence.error_bound: share of the explored frames whose bound is below its target "
        "(None: no such target or no finite bound yet)",
    )
    bound_streak: int = Field(0, description="convergence.error_bound: rounds in a row, this one included, that met it")
    properties: list[dict] = Field(
        [], description="the round's convergence properties (PropertiesDocument.results); [] when none are listed"
    )
    properties_met: bool | None = Field(
        None, description="every listed property within its tolerance (None: no properties listed)"
    )
    stop_reason: str = Field(
        "",
        description="why the campaign stops after this round: 'converged', 'budget', "
        "'round limit' ('' when it goes on)",
    )
    budget: dict | None = Field(
        None,
        description="labeller.budget only: spent_before (what the rounds before spent: labels, core_hours, "
        "timed_runs, timed_core_hours), allowed (frames this round may label), limit, reason, "
        "core_hours_per_label and estimate_from",
    )
    budget_skipped: list[dict] = Field(
        [],
        description="selected frames not labelled for the budget, in priority order: frame_id, deviation, "
        "priority (0: the most valuable of the selection), reason",
    )
    priority: list[str] = Field(
        [],
        description="the frame ids of the selection, most valuable first (the order a labelling budget takes them "
        "in, also when an extension labels the selection of a round that stopped)",
    )
    records: list[dict] = Field(
        [],
        description="per explored frame: frame_id, explorer, parent_id, deviation, status, selected; with pick "
        "diverse a selected candidate also has pick ('diverse' or 'below cap'), pick_rank and pick_distance (the "
        "feature distance, in units of the candidates' spread, at which farthest-point sampling chose it; None for "
        "the first, highest-deviation pick)",
    )
    selected_blob: str = Field(repr=False)


class ExtensionSelection(RoundDocument):
    """The selection of round ``round``, which stopped the campaign and so was not labelled, as a
    later run that extends the campaign labels it before the next round trains (within the
    labelling budget given now)."""

    n_selected: int = Field(description="frames the round selected")
    n_to_label: int = Field(description="of them, the frames sent to the labeller now (all but budget_skipped)")
    budget: dict | None = Field(
        None, description="labeller.budget only: as SelectionDocument.budget, with what the rounds up to this one spent"
    )
    budget_skipped: list[dict] = Field([], description="selected frames not labelled for the budget (priority order)")
    selected_blob: str = Field(repr=False)


class LabelDocument(RoundDocument):
    """Labels computed in a round, and the frames whose labelling failed."""

    labeller: str
    n_requested: int
    n_labelled: int
    n_failed: int
    failures: list[dict]
    records: list[dict] = []
    core_hours: float | None = Field(
        None,
        description="VASP: core-hours of the runs that reported timings (run_stats elapsed time x cores), "
        "None for labellers that report none",
    )
    n_timed: int = Field(0, description="VASP: runs whose TaskDoc reported timings (core_hours sums them)")
    label_settings: str = Field("", description="the label settings id every label of the document carries")
    potential_file: dict | None = Field(
        None, description="EAM labeller: the potential file's name and sha256 (part of the label settings)"
    )
    labelled_blob: str = Field(repr=False)


class CalibrationDocument(EnsembleDocument):
    """A round's calibration record (:mod:`al_flows.active_learning.jobs.calibration`): how the
    round's ensemble deviation tracked the true error of the frames it labelled and of the test set,
    before training on them, and the calibrated error bound the next round reads. With
    ``selection.calibrate`` also the fitted deviation -> error relation and the trust levels
    (eV/Angstrom) it sets for the next round (:mod:`al_flows.selection.calibration`)."""

    points: list[dict] = Field(
        description="this round's labelled frames: frame_id, round, sample (selected or random), deviation and error "
        "(largest atomic force deviation and error, eV/Angstrom), element (of the most-deviating atom), "
        "energy_deviation and energy_error (eV/atom)"
    )
    residuals: list[dict] = Field(
        default_factory=list, description="every labelled frame's residual so far, this round's last (as points)"
    )
    measures: dict[str, dict] = Field(
        default_factory=dict,
        description="per kind (all, selected, random, test): n, spearman, scale, raw_coverage, coverage (of the "
        "bound fitted on the rounds before), curve (observed against nominal coverage), miscalibration_area, "
        "energy_spearman, energy_scale (al_flows.selection.calibration_record)",
    )
    bound_before: dict | None = Field(
        None, description="the bound in force during the round (fitted on the rounds before); None in the first"
    )
    bound: dict | None = Field(
        None,
        description="the bound fitted on every residual so far (coverage, scale, n, per_element): the next round's",
    )
    test_bound: dict = Field(
        default_factory=dict,
        description="the next round's bound on this round's test frames: median_bound, p90_bound, median_error, "
        "p90_error (eV/Angstrom), coverage",
    )
    per_element_coverage: dict = Field(
        default_factory=dict,
        description="per element of the most-deviating atom: coverage of bound_before on the test frames and n",
    )
    bound_streak: int = Field(0, description="convergence.error_bound: the round's streak (its selection's)")
    fit_points: list[dict] = Field(
        default_factory=list,
        description="selection.calibrate: the pairs the fit used: this round's and those of the rounds before within "
        "calibrate.window_rounds, each with its round",
    )
    fit: dict | None = None
    target_error_lo: float | None = None
    target_error_hi: float | None = None
    trust_lo_used: float | None = None
    trust_hi_used: float | None = None
    trust_lo_next: float | None = None
    trust_hi_next: float | None = None
    applied: bool | None = None
    reason: str = Field("", description="why the fit was not applied ('' when it was)")
    note: str = Field("", description="how an applied fit was limited (max_change_factor), '' when it was not")


class RoundSummary(EnsembleDocument):
    """One row of report.json, plus the references a later run needs to continue."""

    fingerprint: str
    n_labels_total: int
    n_explored: int
    n_accurate: int
    n_candidate: int
    n_failed: int
    n_labelled: int
    n_label_failures: int
    accurate_ratio: float
    median_survival_ps: float | None = None
    stage: int = 0
    next_stage: int = 0
    val_force_rmse: float
    test_force_rmse: float
    test_energy_rmse_per_atom: float
    test_force_r2: float | None = None
    test_force_rel_rmse: float | None = None
    test_force_rmse_relaxed: float | None = None
    test_force_rmse_nonequilibrium: float | None = None
    test_energy_rmse_per_atom_relaxed: float | None = None
    test_energy_rmse_per_atom_nonequilibrium: float | None = None
    member_disagreement: float | None = Field(
        None, description="eV/Angstrom, the ensemble's diversity on the test set (EvaluationDocument)"
    )
    model_ids: list[str]
    converged: bool
    stop: bool
    dataset_uuid: str
    structures_uuid: str
    test_uuid: str
    calibration_uuid: str = ""
    trust_lo: float | None = None
    trust_hi: float | None = None
    trust_lo_levels: list[float] = Field([], description="trust_lo: adaptive: SelectionDocument.trust_lo_levels")
    levels_settled: bool | None = Field(None, description="trust_lo: adaptive: SelectionDocument.levels_settled")
    stage_times: dict = Field(
        default_factory=dict,
        description="wall and CPU seconds per stage of the round's jobs that finished before the summary, the span, "
        "totals and overhead (al_flows.workflow.timing.stage_times); the status and report.json sum every job",
    )
    bound_share: float | None = Field(None, description="convergence.error_bound: SelectionDocument.bound_share")
    bound_streak: int = Field(0, description="convergence.error_bound: SelectionDocument.bound_streak")
    calibration: dict | None = Field(
        None,
        description="the round's calibration figures (CalibrationDocument): spearman, scale, coverage_selected, "
        "coverage_random, coverage_test, raw_coverage_test, miscalibration_area_test, nominal_coverage, bound_scale, "
        "bound_residuals, test_p90_bound, test_p90_error",
    )
    properties: list[dict] = Field(
        [],
        description="per listed convergence property: property, unit, members, mean, spread, reference, error, "
        "tolerance, within",
    )
    properties_met: bool | None = None
    stop_reason: str = ""
    spent_before: dict | None = Field(None, description="labeller.budget: BudgetSpent before this round's labels")
    spent_after: dict | None = Field(None, description="labeller.budget: BudgetSpent after them (the next round's)")
    labels_spent: int | None = Field(None, description="labeller.budget: labels the rounds sent up to this one")
    core_hours_spent: float | None = Field(None, description="labeller.budget, VASP: their core-hours")
    n_budget_skipped: int | None = Field(None, description="labeller.budget: selected frames left for the budget")
    labelled_on_extension: bool = Field(
        False,
        description="the round stopped the campaign, and a later run that extended it labelled the round's selection "
        "before the next round trained: n_labelled, n_label_failures, dataset_uuid and the budget fields count "
        "those labels (this summary replaces the round's first one)",
    )


class CampaignResult(CampaignDocument):
    """Written once, when the campaign stops."""

    fingerprint: str
    converged: bool
    n_rounds: int
    final_round: int
    n_labels_total: int
    stop_reason: str = Field("", description="'converged', 'budget' (labeller.budget spent) or 'round limit'")


class AutotestDocument(EnsembleDocument):
    """The final potential (ensemble mean) against the reference calculator, per element:
    ``results[element] = {reference, model, rows, passed}`` (see :mod:`al_flows.validation.autotest`)."""

    reference: str
    results: dict[str, dict]
    table: str
    passed: bool


class PropertyReferenceDocument(CampaignDocument):
    """The labeller's values of the properties a campaign converges on (``convergence.properties``),
    computed once: ``values[element][name]`` in the autotest row's unit (``units[name]``)."""

    reference: str = Field(description="the ASE calculator that computed the values (the labeller)")
    key: str = Field(description="what was computed: hash of the listed properties and the autotest settings")
    values: dict[str, dict[str, float]]
    units: dict[str, str]


class PropertiesDocument(EnsembleDocument):
    """A round's convergence properties, computed with every ensemble member: one row per listed
    property (:func:`al_flows.validation.properties.property_result`)."""

    results: list[dict]
    within: bool = Field(description="every property within its tolerance (error of the mean and spread)")
    reference_key: str


class RoundState(Settings):
    """Where the job planning round ``round`` finds what it reads: the uuids of the jobs whose
    outputs it uses (references by uuid, so no job input holds a blob)."""

    round: int = Field(ge=0)
    dataset_uuid: str
    structures_uuid: str
    test_uuid: str
    calibration_uuid: str = Field("", description="the previous round's trust-level calibration, if any")
    train_uuids: list[str] = Field(
        [], description="the previous round's train jobs, one per member (training.warm_start starts from them)"
    )
