"""The active-learning loop as a dynamic jobflow Flow.

``ActiveLearningMaker.make()`` returns
``[starting_structures, test_set, initial label, initial merge, round 0]``;
the job ``round k`` replaces itself (``Response(replace=...)``) with

    train x ensemble_size -> evaluate -> explore (each explorer) -> select
    -> label -> merge -> round_summary -> round k+1

until a round's accurate ratio reaches the target or ``max_rounds`` rounds have
trained; a round that stops labels nothing. Every job carries
``metadata = {"campaign", "fingerprint", "round", "stage"}`` for queries.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
from jobflow import CURRENT_JOB, Flow, Job, Maker, OutputReference, Response

from al_flows.active_learning.autotest_jobs import autotest_job
from al_flows.active_learning.config import CampaignConfig, InitialData, TestSetConfig
from al_flows.active_learning.jobs import (
    AseLabelMaker,
    MDExploreMaker,
    SelectMaker,
    ShearExploreMaker,
    TrainMemberMaker,
    calibrate_levels,
    merge_labels,
)
from al_flows.active_learning.schemas import (
    CampaignResult,
    EvaluationDocument,
    RoundSummary,
    StructuresDocument,
    TestSetDocument,
)
from al_flows.active_learning.vasp_jobs import VaspLabelMaker
from al_flows.exploration.md import NVTSettings, ScheduleSettings
from al_flows.exploration.shear import ShearSettings
from al_flows.frames.dataset import frames_from_bytes, frames_text
from al_flows.labelling.ase import calculator_factory
from al_flows.labelling.vasp_inputs import label_settings_id, static_maker
from al_flows.selection.trust_levels import stop_decision
from al_flows.structures.initial_data import build_structures, perturbed_copies
from al_flows.validation.heldout import NONEQUILIBRIUM, holdout_errors, labeller_test_frames, subset_of, tag
from al_flows.workflow import progress
from al_flows.workflow.jobs import (
    al_job,
    derived_seed,
    drop_completed,
    ensemble_id,
    field,
    load_ensemble,
    model_ids_of,
    route,
    stable_uuid,
)


@al_job(data=["structures_blob"], output_schema=StructuresDocument)
def starting_structures(
    initial: InitialData, base_dir: str, campaign: str, elements: list | None = None, seed: int = 0
) -> StructuresDocument:
    """Build the campaign's starting structures (explorers start from these)."""
    structures = build_structures(initial.structures, base_dir, elements, seed)
    progress.report("structures", -1, n=len(structures))
    return StructuresDocument(
        campaign=campaign,
        n_structures=len(structures),
        structure_ids=[a.info["structure_id"] for a in structures],
        structures_blob=frames_text(structures),
    )


@al_job(data=["selected_blob"])
def perturbed_structures(
    structures, n: int, sigma: float, strain_max: float, seed: int, explorer: str = "initial", originals: bool = False
) -> dict:
    """Rattled and strained copies of the starting structures, to be labelled (the initial
    data, or a ``perturbed`` test set); with ``originals`` the structures themselves too."""
    starts = frames_from_bytes(field(structures, "structures_blob"))
    copies = perturbed_copies(starts, n, sigma, strain_max, seed)
    if originals:
        for atoms in starts:
            atoms.info.update(
                round=-1, parent_id=atoms.info.get("structure_id", ""), model_id="", deviation=float("nan")
            )
        copies = starts + copies
    for atoms in copies:
        atoms.info["explorer"] = explorer
    return {"n_frames": len(copies), "selected_blob": frames_text(copies)}


@al_job(data=["frames_blob"], output_schema=TestSetDocument)
def test_set_from_labels(labels, campaign: str) -> TestSetDocument:
    """The labelled perturbed copies as the fixed test set."""
    frames = tag(frames_from_bytes(field(labels, "labelled_blob")), NONEQUILIBRIUM, "perturbed")
    progress.report("test set", -1, frames=len(frames))
    return TestSetDocument(
        campaign=campaign,
        n_frames=len(frames),
        frame_ids=[a.info["frame_id"] for a in frames],
        frames_blob=frames_text(frames),
    )


@al_job(data=["frames_blob"], output_schema=TestSetDocument)
def labeller_test_set(
    structures, settings: TestSetConfig, labeller: AseLabelMaker, campaign: str, seed: int
) -> TestSetDocument:
    """The fixed test set computed with the labeller itself (kinds mixed and labeller_shear;
    al_flows.validation.heldout): never trained on."""
    starts = frames_from_bytes(field(structures, "structures_blob"))
    make_calc = calculator_factory(labeller.calculator, labeller.calculator_kwargs)
    frames = labeller_test_frames(starts, make_calc, settings, seed, labeller.labeller_name, labeller.max_force)
    subsets = Counter(subset_of(a) for a in frames)
    progress.report("test set", -1, frames=len(frames), **subsets)
    return TestSetDocument(
        campaign=campaign,
        n_frames=len(frames),
        frame_ids=[a.info["frame_id"] for a in frames],
        frames_blob=frames_text(frames),
    )


@al_job(output_schema=EvaluationDocument)
def evaluate(models: list, test_set, campaign: str, round: int) -> EvaluationDocument:
    """Ensemble-mean errors on the fixed test set; validation error = mean of the members'."""
    start = time.perf_counter()
    frames = frames_from_bytes(field(test_set, "frames_blob"))
    pred = load_ensemble(models).predict(frames)
    ref_e = np.array([a.get_potential_energy() for a in frames])
    errors = holdout_errors(frames, pred.mean_energies, pred.mean_forces)
    test_force_rmse, test_energy_rmse = errors["force_rmse"], errors["energy_rmse_per_atom"]
    val = float(np.mean([field(m, "val_force_rmse") for m in models]))
    r2 = errors["force_r2"]
    progress.report(
        "evaluate",
        round,
        test_force_rmse=f"{test_force_rmse:.4f}",
        test_force_r2="n/a" if r2 is None else f"{r2:.3f}",
        test_energy_rmse_per_atom=f"{test_energy_rmse:.5f}",
    )
    return EvaluationDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        n_test=len(frames),
        test_force_rmse=test_force_rmse,
        test_energy_rmse_per_atom=test_energy_rmse,
        test_force_r2=errors["force_r2"],
        test_force_rel_rmse=errors["force_rel_rmse"],
        test_subsets=errors["subsets"],
        val_force_rmse=val,
        test_energies=ref_e.tolist(),
        predicted_energies=pred.mean_energies.tolist(),
        wall_time=time.perf_counter() - start,
    )


@al_job(output_schema=RoundSummary)
def round_summary(
    campaign: str,
    fingerprint: str,
    round: int,
    model_ids: list,
    n_labels_total: int,
    evaluation,
    selection,
    labels,
    dataset_uuid: str,
    structures_uuid: str,
    test_uuid: str,
    calibration_uuid: str = "",
) -> RoundSummary:
    """One row of report.json; also the checkpoint a later run continues from."""
    summary = RoundSummary(
        campaign=campaign,
        fingerprint=fingerprint,
        round=round,
        n_labels_total=n_labels_total,
        n_explored=field(selection, "n_explored"),
        n_accurate=field(selection, "n_accurate"),
        n_candidate=field(selection, "n_candidate"),
        n_failed=field(selection, "n_failed"),
        n_labelled=field(labels, "n_labelled"),
        n_label_failures=field(labels, "n_failed"),
        accurate_ratio=field(selection, "accurate_ratio"),
        val_force_rmse=field(evaluation, "val_force_rmse"),
        test_force_rmse=field(evaluation, "test_force_rmse"),
        test_energy_rmse_per_atom=field(evaluation, "test_energy_rmse_per_atom"),
        test_force_r2=field(evaluation, "test_force_r2"),
        test_force_rel_rmse=field(evaluation, "test_force_rel_rmse"),
        **subset_columns(field(evaluation, "test_subsets")),
        ensemble_id=ensemble_id(list(model_ids)),
        model_ids=list(model_ids),
        converged=field(selection, "converged"),
        stop=field(selection, "stop"),
        dataset_uuid=dataset_uuid,
        structures_uuid=structures_uuid,
        test_uuid=test_uuid,
        calibration_uuid=calibration_uuid,
        trust_lo=field(selection, "trust_lo"),
        trust_hi=field(selection, "trust_hi"),
    )
    progress.report(
        "round done",
        round,
        labels=summary.n_labels_total + summary.n_labelled,
        accurate_ratio=f"{summary.accurate_ratio:.3f}",
    )
    return summary


def subset_columns(subsets: dict) -> dict:
    """The per-subset columns of a round summary from an evaluation's ``test_subsets``."""
    out = {}
    for name in ("relaxed", "nonequilibrium"):
        errs = (subsets or {}).get(name) or {}
        out[f"test_force_rmse_{name}"] = errs.get("force_rmse")
        out[f"test_energy_rmse_per_atom_{name}"] = errs.get("energy_rmse_per_atom")
    return out


def _tag(
    j: Job, campaign: str, fingerprint: str, round_: int, stage: str, category: str, key: str | None = None
) -> Job:
    """Metadata, FireWorks category and a uuid fixed by (campaign, fingerprint, round, stage, key)."""
    j.set_uuid(stable_uuid(campaign, fingerprint, round_, stage, key if key is not None else j.name))
    j.update_metadata(
        {"campaign": campaign, "fingerprint": fingerprint, "round": round_, "stage": stage}, dynamic=False
    )
    return route(j, category)


def _autotest_settings(config: CampaignConfig):
    """The campaign's autotest settings with the reference calculator filled in (or None)."""
    if config.autotest is None:
        return None
    if config.autotest.reference is not None:
        return config.autotest
    return config.autotest.model_copy(
        update={"reference": config.labeller.calculator, "reference_kwargs": dict(config.labeller.kwargs)}
    )


def _explore_maker(e) -> Maker:
    """The Maker of one configured explorer."""
    fields = e.model_dump(exclude={"kind", "name"})
    if e.kind == "shear":
        return ShearExploreMaker(name=e.name, settings=ShearSettings(**fields))
    if e.kind == "langevin_schedule":
        return MDExploreMaker(name=e.name, settings=ScheduleSettings(**fields))
    return MDExploreMaker(name=e.name, settings=NVTSettings(**fields))


@dataclass
class ActiveLearningMaker(Maker):
    """Train -> explore -> select -> label, round after round (docs/methods.md)."""

    name: str = "active learning"
    campaign: str = "campaign"
    fingerprint: str = ""
    seed: int = 0
    ensemble_size: int = 4
    max_rounds: int = 5
    initial: InitialData | None = None
    base_dir: str = "."
    test_set: TestSetConfig = dc_field(default_factory=TestSetConfig)
    train_maker: TrainMemberMaker = dc_field(default_factory=TrainMemberMaker)
    explore_makers: list = dc_field(default_factory=lambda: [ShearExploreMaker()])
    select_maker: SelectMaker = dc_field(default_factory=SelectMaker)
    label_maker: Maker = dc_field(default_factory=AseLabelMaker)
    allow_mixed_settings: bool = False
    categories: dict = dc_field(default_factory=dict)
    autotest: object = None
    elements: list = dc_field(default_factory=list)

    @classmethod
    def from_config(cls, config: CampaignConfig, base_dir: str | Path = ".") -> ActiveLearningMaker:
        """All Makers of a campaign from its validated configuration."""
        explorers = [_explore_maker(e) for e in config.explorers]
        lab = config.labeller
        settings_id = label_settings_id(lab)
        q = config.queues
        labeller_runs_here = lab.kind == "ase"  # VASP runs in its own static jobs; dispatch/collect are bookkeeping
        categories = {
            "train": q.train,
            "explore": q.explore,
            "evaluate": q.evaluate,
            "label": q.label if labeller_runs_here else q.default,
            "label_test": q.label if labeller_runs_here else q.default,
            "test_set": q.label if config.test_set.kind in ("mixed", "labeller_shear") else q.default,
            "default": q.default,
        }
        if lab.kind == "vasp":
            label_maker = VaspLabelMaker(
                static_maker=static_maker(lab),
                labeller_name=f"vasp:{lab.preset}",
                label_settings=settings_id,
                max_force=lab.max_force,
                min_success_fraction=lab.min_success_fraction,
                static_metadata={"fingerprint": config.fingerprint()},
                static_category=q.label,
                collect_category=q.default,
            )
        else:
            label_maker = AseLabelMaker(
                calculator=lab.calculator,
                calculator_kwargs=dict(lab.kwargs),
                max_force=lab.max_force,
                min_success_fraction=lab.min_success_fraction,
                label_settings=settings_id,
            )
        return cls(
            campaign=config.name,
            fingerprint=config.fingerprint(),
            seed=config.seed,
            ensemble_size=config.ensemble_size,
            max_rounds=config.max_rounds,
            initial=config.initial,
            base_dir=str(base_dir),
            test_set=config.test_set,
            train_maker=TrainMemberMaker(model=config.model, training=config.training, elements=list(config.elements)),
            explore_makers=explorers,
            select_maker=SelectMaker(
                settings=config.selection,
                target_accurate_ratio=config.convergence.accurate_ratio,
                max_rounds=config.max_rounds,
            ),
            label_maker=label_maker,
            allow_mixed_settings=getattr(lab, "allow_mixed_settings", False),
            categories=categories,
            autotest=_autotest_settings(config),
            elements=list(config.elements),
        )

    def tag(self, j: Job, round_: int, stage: str, key: str | None = None) -> Job:
        """Set the campaign/round/stage metadata, the FireWorks category of the stage and the
        job's fixed uuid (``key`` tells apart jobs of one stage; default: the job's name).
        Tag a job before anything refers to its output. Jobs made by Makers keep the Maker's
        name (renaming such a job renames its Maker)."""
        category = self.categories.get(stage, self.categories.get("default", "cpu"))
        return _tag(j, self.campaign, self.fingerprint, round_, stage, category, key)

    def make(self) -> Flow:
        """The whole campaign from nothing but the configuration."""
        return Flow(self.initial_jobs(), name=f"{self.campaign} campaign")

    def initial_jobs(self) -> list[Job]:
        """The jobs before round 0 (structures, test set, initial labels) and round 0's job."""
        if self.initial is None:
            raise ValueError("ActiveLearningMaker.initial: give the initial data settings (initial.structures)")
        elements = list(self.train_maker.elements)
        structures = self.tag(
            starting_structures(self.initial, self.base_dir, self.campaign, elements, self.seed), -1, "structures"
        )
        structures.name = "starting_structures"
        test_jobs = self.test_set_jobs(structures)
        test = test_jobs[-1]
        ini = self.initial
        copies = self.tag(
            perturbed_structures(
                structures.output,
                ini.n_rattled,
                ini.rattle_sigma,
                ini.strain_max,
                derived_seed(self.seed, 998),
                "initial",
                ini.label_structures,
            ),
            -1,
            "perturb",
        )
        copies.name = "perturb initial"
        labels = self.tag(self.label_maker.make(copies.output, self.campaign, -1), -1, "label")
        merged = self.tag(merge_labels(None, labels.output, self.campaign, -1, self.allow_mixed_settings), -1, "merge")
        merged.name = "merge initial"
        first = self.round_job(0, merged.output.n_frames, False, merged.uuid, structures.uuid, test.uuid)
        return [structures, *test_jobs, copies, labels, merged, first]

    def test_set_jobs(self, structures: Job) -> list[Job]:
        """Jobs making the fixed test set; the last one outputs the TestSetDocument."""
        ts = self.test_set
        if ts.kind in ("mixed", "labeller_shear"):
            test = labeller_test_set(
                structures.output, ts, self.label_maker, self.campaign, derived_seed(self.seed, 999)
            )
            test.name = "test_set"
            return [self.tag(test, -1, "test_set")]
        copies = self.tag(
            perturbed_structures(
                structures.output,
                ts.n_per_structure,
                ts.rattle_sigma,
                ts.strain_max,
                derived_seed(self.seed, 997),
                "test",
            ),
            -1,
            "perturb_test",
        )
        copies.name = "perturb test"
        labels = self.tag(self.label_maker.make(copies.output, self.campaign, -1), -1, "label_test")
        test = self.tag(test_set_from_labels(labels.output, self.campaign), -1, "test_set")
        test.name = "test_set"
        return [copies, labels, test]

    def continue_from(self, summary: dict) -> Flow:
        """Flow that resumes after a stored round summary (a later run on the same store).

        Whether the campaign stops is decided again from the summary with the current
        convergence target and round limit, so raising ``max_rounds`` (or the target)
        extends a campaign that had stopped."""
        k = summary["round"] + 1
        decision = stop_decision(
            summary["accurate_ratio"],
            summary["n_explored"],
            summary["round"],
            self.select_maker.target_accurate_ratio,
            self.max_rounds,
        )
        return Flow(
            [
                self.round_job(
                    k,
                    summary["n_labels_total"] + summary["n_labelled"],
                    decision.converged,
                    summary["dataset_uuid"],
                    summary["structures_uuid"],
                    summary["test_uuid"],
                    summary.get("calibration_uuid") or "",
                )
            ],
            name=f"{self.campaign} campaign (continued at round {k})",
        )

    def round_job(
        self, k, n_labels, converged, dataset_uuid, structures_uuid, test_uuid, calibration_uuid: str = ""
    ) -> Job:
        """The job that plans round ``k`` (``converged``: whether round k-1 converged)."""
        j = self.tag(
            self.round(k, n_labels, converged, dataset_uuid, structures_uuid, test_uuid, calibration_uuid),
            k,
            "round",
            "round",
        )
        j.config.expose_store = True  # to find the jobs of round k that finished in an interrupted run
        return j

    def autotest_flow(self, final_round: int) -> Flow:
        """The autotest of the final round's ensemble (one job)."""
        test = self.tag(
            autotest_job(self.campaign, final_round, self.autotest, list(self.elements)),
            final_round,
            "autotest",
            "autotest",
        )
        test.name = "autotest"
        test.config.expose_store = True
        return Flow([test], name="autotest")

    @al_job(output_schema=CampaignResult)
    def round(
        self,
        k: int,
        n_labels: int,
        converged: bool,
        dataset_uuid: str,
        structures_uuid: str,
        test_uuid: str,
        calibration_uuid: str = "",
    ):
        """Replace itself with round ``k`` (and, through it, the rounds after), or finish
        when round k-1 converged or ``max_rounds`` rounds have trained.

        Inputs of the new jobs are references by uuid, so no job input holds a blob.
        ``calibration_uuid``: the previous round's trust-level calibration, if any."""
        if converged or k >= self.max_rounds:
            reason = "converged" if converged else "round limit"
            progress.report("finished", k - 1, labels=n_labels, reason=reason)
            result = CampaignResult(
                campaign=self.campaign,
                fingerprint=self.fingerprint,
                converged=bool(converged),
                n_rounds=k,
                final_round=k - 1,
                n_labels_total=n_labels,
                stop_reason=reason,
            )
            if self.autotest is None:
                return result
            return Response(output=result, addition=self.autotest_flow(k - 1))
        dataset, structures, test = (OutputReference(u) for u in (dataset_uuid, structures_uuid, test_uuid))
        trains = []
        for m in range(self.ensemble_size):
            t = self.tag(
                self.train_maker.make(dataset, self.campaign, k, m, derived_seed(self.seed, k, m)),
                k,
                "train",
                f"member {m}",
            )
            trains.append(t)
        models = [t.output for t in trains]
        ev = self.tag(evaluate(models, test, self.campaign, k), k, "evaluate")
        ev.name = f"evaluate r{k}"
        explores = []
        for e_idx, maker in enumerate(self.explore_makers):
            x = self.tag(
                maker.make(structures, models, self.campaign, k, derived_seed(self.seed, k, 1000 + e_idx)),
                k,
                "explore",
                f"{e_idx} {maker.name}",
            )
            explores.append(x)
        previous = OutputReference(calibration_uuid) if calibration_uuid else None
        sel = self.tag(
            self.select_maker.make(
                [x.output for x in explores],
                dataset.frame_ids,
                self.campaign,
                k,
                derived_seed(self.seed, k, 2000),
                previous,
            ),
            k,
            "select",
        )
        lab = self.tag(self.label_maker.make(sel.output, self.campaign, k, skip=sel.output.stop), k, "label")
        merged = self.tag(merge_labels(dataset, lab.output, self.campaign, k, self.allow_mixed_settings), k, "merge")
        merged.name = f"merge r{k}"
        cal_jobs, cal_uuid = [], ""
        cal_settings = self.select_maker.settings.calibrate
        if cal_settings is not None:
            cal = self.tag(
                calibrate_levels(models, lab.output, sel.output, self.campaign, k, cal_settings), k, "calibrate"
            )
            cal.name = f"calibrate r{k}"
            cal_jobs, cal_uuid = [cal], cal.uuid
        summ = self.tag(
            round_summary(
                self.campaign,
                self.fingerprint,
                k,
                [t.output.model_id for t in trains],
                n_labels,
                ev.output,
                sel.output,
                lab.output,
                merged.uuid,
                structures_uuid,
                test_uuid,
                cal_uuid,
            ),
            k,
            "summary",
        )
        summ.name = f"round_summary r{k}"
        nxt = self.round_job(
            k + 1, merged.output.n_frames, sel.output.converged, merged.uuid, structures_uuid, test_uuid, cal_uuid
        )
        jobs = [*trains, ev, *explores, sel, lab, *cal_jobs, merged, summ, nxt]
        todo, done = drop_completed(jobs, CURRENT_JOB.store)
        if done:
            progress.report("round resumed", k, done=len(done), of=len(jobs), reused=", ".join(j.name for j in done))
        else:
            progress.report("round start", k, labels=n_labels, jobs=len(jobs))
        return Response(replace=Flow(todo, name=f"round {k}"))
