"""The active-learning loop as a dynamic jobflow Flow.

``ActiveLearningMaker.make(structures)`` returns
``[starting_structures, test_set, initial label, initial merge, round 0]``;
the job ``round k`` replaces itself (``Response(replace=...)``) with

    train x ensemble_size -> evaluate [-> properties] -> explore (each explorer) -> select
    -> label -> merge -> round_summary -> round k+1

until a round meets the convergence targets (the accurate ratio; with
``convergence.properties`` also the listed properties, whose labeller reference is
computed once), a round finds its labelling budget spent or ``max_rounds`` rounds have
trained; a round that stops labels nothing (a later run that extends the campaign labels its
selection first: :mod:`al_flows.active_learning.extension`). Every job carries
``metadata = {"campaign", "fingerprint", "round", "stage"}`` for queries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from jobflow import CURRENT_JOB, Flow, Job, Maker, Response

from al_flows.active_learning import builders
from al_flows.active_learning.config import (
    DEFAULT_ENSEMBLE_SIZE,
    CampaignConfig,
    InitialCopies,
    InitialData,
    TestSetConfig,
)
from al_flows.active_learning.extension import extension_jobs, needs_extension
from al_flows.active_learning.jobs.autotest import autotest_job
from al_flows.active_learning.jobs.exploration import ShearExploreMaker
from al_flows.active_learning.jobs.labelling import AseLabelMaker
from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.jobs.selection import SelectMaker
from al_flows.active_learning.jobs.start import (
    labeller_test_set,
    perturbed_structures,
    starting_structures,
    test_set_from_labels,
)
from al_flows.active_learning.jobs.training import TrainMemberMaker
from al_flows.active_learning.jobs.vasp_labelling import VaspLabelMaker
from al_flows.active_learning.jobs.vasp_properties import VaspPropertyReferenceMaker
from al_flows.active_learning.labeller_slot import label_maker_for
from al_flows.active_learning.round_jobs import RoundJobs
from al_flows.active_learning.schemas import CampaignResult, RoundState
from al_flows.active_learning.seeds import CampaignSeeds
from al_flows.active_learning.stop_policy import StopPolicy
from al_flows.exploration.md import stage_count
from al_flows.frames.extxyz import frames_text
from al_flows.structures.initial_data import GivenSource, given_structures
from al_flows.validation.autotest import AutotestSettings
from al_flows.validation.properties import check_vasp_properties
from al_flows.workflow import progress
from al_flows.workflow.config import fingerprint_of
from al_flows.workflow.jobs import al_job, drop_completed, route, stable_uuid

__all__ = ["ActiveLearningMaker"]


def _tag(
    j: Job, campaign: str, fingerprint: str, round_: int, stage: str, category: str, key: str | None = None
) -> Job:
    """Metadata, FireWorks category and a uuid fixed by (campaign, fingerprint, round, stage, key)."""
    j.set_uuid(stable_uuid(campaign, fingerprint, round_, stage, key if key is not None else j.name))
    j.update_metadata(
        {"campaign": campaign, "fingerprint": fingerprint, "round": round_, "stage": stage}, dynamic=False
    )
    return route(j, category)


@dataclass
class ActiveLearningMaker(RoundJobs, Maker):
    """Train -> explore -> select -> label, round after round (docs/methods.md).

    Build it from Makers and settings (docs/python_api.md) or from a campaign file
    (:meth:`from_config`); ``make(structures)`` returns the campaign's Flow. ``label_maker`` takes
    anything :func:`~al_flows.active_learning.labeller_slot.label_maker_for` accepts: an ASE
    calculator or its name, an atomate2 VASP Maker (``StaticMaker``), or a label Maker.
    ``stop_policy`` holds every when-to-stop setting (round limit, convergence targets, labelling
    budget; :class:`~al_flows.active_learning.stop_policy.StopPolicy`); ``fingerprint`` names the
    jobs (default: the hash of the settings and structures a campaign file with the same settings
    gets, :meth:`fingerprint_settings`).
    """

    name: str = "active learning"
    campaign: str = "campaign"
    fingerprint: str = ""
    seed: int = 0
    ensemble_size: int = DEFAULT_ENSEMBLE_SIZE
    stop_policy: StopPolicy = dc_field(default_factory=StopPolicy)
    initial: InitialCopies = dc_field(default_factory=InitialCopies)
    base_dir: str = "."
    test_set: TestSetConfig = dc_field(default_factory=TestSetConfig)
    train_maker: TrainMemberMaker = dc_field(default_factory=TrainMemberMaker)
    explore_makers: list = dc_field(default_factory=lambda: [ShearExploreMaker()])
    select_maker: SelectMaker = dc_field(default_factory=SelectMaker)
    label_maker: Any = dc_field(default_factory=AseLabelMaker)
    allow_mixed_settings: bool = False
    categories: dict = dc_field(default_factory=dict)
    autotest: AutotestSettings | None = None
    elements: list = dc_field(default_factory=list)
    property_reference_maker: Any = None

    def __post_init__(self):
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size: {self.ensemble_size} members cannot disagree; use 2 or more")
        self.label_maker = label_maker_for(self.label_maker)
        staged = [m.settings for m in self.explore_makers if stage_count(m.settings) > 1]
        if len(staged) > 1:
            raise ValueError(
                "explore_makers: more than one has stages or a schedule; the campaign moves through one list of stages"
            )
        schedule = getattr(staged[0], "schedule", None) if staged else None
        self.stop_policy = self.stop_policy.with_stages(
            stage_count(staged[0]) if staged else 1, schedule.step_back_failed_ratio if schedule is not None else None
        )
        self._check_property_reference()
        if not self.fingerprint and isinstance(self.initial, InitialData):
            self.fingerprint = fingerprint_of(self.fingerprint_settings())
        budget = self.stop_policy.budget
        if budget is not None and budget.limits_core_hours and not isinstance(self.label_maker, VaspLabelMaker):
            raise ValueError(
                "stop_policy.budget: core-hour limits are counted from VASP runs' timings; this labeller is not "
                "VASP: use labels_per_round / labels_total"
            )

    def _check_property_reference(self):
        """The labeller computes the reference of the convergence properties: an ASE calculator in one
        job, VASP through atomate2's EOS and elastic flows (``property_reference_maker``, default: one
        with the labeller's settings)."""
        conv, lab = self.stop_policy.properties, self.label_maker
        if conv is None or isinstance(lab, AseLabelMaker):
            return
        if not isinstance(lab, VaspLabelMaker):
            raise ValueError(
                "stop_policy.properties: the reference values come from the labeller, and this labeller computes "
                "none; drop the properties or label with an ASE calculator or VASP"
            )
        check_vasp_properties([t.name for t in conv.targets], conv.settings.lattice, "stop_policy.properties")
        if self.property_reference_maker is None:
            self.property_reference_maker = VaspPropertyReferenceMaker(
                static_maker=lab.static_maker,
                reference=lab.labeller_name,
                vasp_category=lab.static_category,
                collect_category=lab.collect_category,
                metadata=dict(lab.static_metadata),
            )

    def fingerprint_settings(self) -> dict:
        """The campaign's settings in a campaign file's shape (JSON data): what a campaign file with
        these Makers and settings holds, so that :func:`~al_flows.workflow.config.fingerprint_of`
        gives both the same fingerprint (the when-to-stop, storage and queue keys are not fingerprinted,
        so they are not listed)."""
        return {
            "name": self.campaign,
            "seed": self.seed,
            "elements": list(self.elements or self.train_maker.elements),
            "initial": self.initial.model_dump(mode="json"),
            "model": self.train_maker.model.model_dump(mode="json"),
            "training": self.train_maker.training.model_dump(mode="json"),
            "ensemble_size": self.ensemble_size,
            "explorers": [builders.explorer_section(m) for m in self.explore_makers],
            "selection": self.select_maker.settings.model_dump(mode="json"),
            "labeller": self.label_maker.settings_section(),
            "test_set": self.test_set.model_dump(mode="json"),
            "autotest": None if self.autotest is None else self.autotest.model_dump(mode="json"),
        }

    @property
    def seeds(self) -> CampaignSeeds:
        """The campaign's seed stream."""
        return CampaignSeeds(self.seed)

    @classmethod
    def from_config(cls, config: CampaignConfig, base_dir: str | Path = ".") -> ActiveLearningMaker:
        """All Makers of a campaign from its validated configuration (its structures are built by
        the flow's first job from ``config.initial.structures``)."""
        return cls(
            campaign=config.name,
            seed=config.seed,
            ensemble_size=config.ensemble_size,
            stop_policy=config.stop_policy(),
            initial=config.initial,
            base_dir=str(base_dir),
            test_set=config.test_set,
            train_maker=TrainMemberMaker(model=config.model, training=config.training, elements=list(config.elements)),
            explore_makers=[builders.explore_maker(e) for e in config.explorers],
            select_maker=SelectMaker(settings=config.selection),
            label_maker=builders.label_maker(config),
            allow_mixed_settings=getattr(config.labeller, "allow_mixed_settings", False),
            categories=builders.categories(config),
            autotest=config.autotest,
            elements=list(config.elements),
            property_reference_maker=builders.property_reference_maker(config),
        )

    def tag(self, j: Job, round_: int, stage: str, key: str | None = None) -> Job:
        """Set the campaign/round/stage metadata, the FireWorks category of the stage and the
        job's fixed uuid (``key`` tells apart jobs of one stage; default: the job's name).
        Tag a job before anything refers to its output. Jobs made by Makers keep the Maker's
        name (renaming such a job renames its Maker)."""
        category = self.categories.get(stage, self.categories.get("default", "cpu"))
        return _tag(j, self.campaign, self.fingerprint, round_, stage, category, key)

    def make(self, structures=None) -> Flow:
        """The whole campaign as a Flow, from ``structures`` (ASE ``Atoms`` or pymatgen
        ``Structure``, one or a list) or, without them, from ``initial.structures``."""
        maker = self.with_structures(structures) if structures is not None else self
        return Flow(list(maker.initial_jobs()), name=f"{maker.campaign} campaign")

    def with_structures(self, structures) -> ActiveLearningMaker:
        """A copy that starts from ``structures`` (checked now; they become a ``kind: given``
        source of ``initial.structures``; elements filled in when not set, and the fingerprint
        when not set: :meth:`fingerprint_settings`)."""
        elements = list(self.elements or self.train_maker.elements)
        atoms = given_structures(structures, elements or None, where="make(structures)")
        if not elements:
            elements = sorted({s for a in atoms for s in a.get_chemical_symbols()})
        copies = self.initial.model_dump(exclude={"structures"})
        return replace(
            self,
            elements=elements,
            train_maker=replace(self.train_maker, elements=elements),
            initial=InitialData(**copies, structures=[GivenSource(frames=frames_text(atoms))]),
        )

    def initial_jobs(self) -> list[Job]:
        """The jobs before round 0 (structures, test set, initial labels) and round 0's job."""
        if not getattr(self.initial, "structures", None):
            raise ValueError(
                "ActiveLearningMaker.make: no starting structures; pass them to make(structures) "
                "or give initial=InitialData(structures=[...])"
            )
        elements = list(self.train_maker.elements)
        first = starting_structures(self.initial, self.base_dir, self.campaign, elements, self.seed)
        structures = self.tag(first, -1, "structures")
        structures.name = "starting_structures"
        test_jobs = self.test_set_jobs(structures)
        ini = self.initial
        copies = perturbed_structures(
            structures.output,
            ini.n_rattled,
            ini.rattle_sigma,
            ini.strain_max,
            self.seeds.initial_copies(),
            "initial",
            ini.label_structures,
        )
        copies = self.tag(copies, -1, "perturb")
        copies.name = "perturb initial"
        labels = self.tag(self.label_maker.make(copies.output, self.campaign, -1), -1, "label")
        merged = self.tag(merge_labels(None, labels.output, self.campaign, -1, self.allow_mixed_settings), -1, "merge")
        merged.name = "merge initial"
        state = RoundState(
            round=0, dataset_uuid=merged.uuid, structures_uuid=structures.uuid, test_uuid=test_jobs[-1].uuid
        )
        # the budget's cost estimate starts from the initial labels' timings (they are not spent of it)
        spent = {"timed_runs": labels.output.n_timed, "timed_core_hours": labels.output.core_hours}
        first_round = self.round_job(state, merged.output.n_frames, spent=spent)
        return [structures, *test_jobs, copies, labels, merged, first_round]

    def test_set_jobs(self, structures: Job) -> list[Job]:
        """Jobs making the fixed test set; the last one outputs the TestSetDocument."""
        ts = self.test_set
        if ts.kind in ("mixed", "labeller_shear"):
            test = labeller_test_set(
                structures.output, ts, self.label_maker, self.campaign, self.seeds.labeller_test_set()
            )
            test.name = "test_set"
            return [self.tag(test, -1, "test_set")]
        copies = perturbed_structures(
            structures.output, ts.n_per_structure, ts.rattle_sigma, ts.strain_max, self.seeds.test_copies(), "test"
        )
        copies = self.tag(copies, -1, "perturb_test")
        copies.name = "perturb test"
        labels = self.tag(self.label_maker.make(copies.output, self.campaign, -1), -1, "label_test")
        test = self.tag(test_set_from_labels(labels.output, self.campaign), -1, "test_set")
        test.name = "test_set"
        return [copies, labels, test]

    def continue_from(self, summary: dict, store=None) -> Flow:
        """Flow that resumes after a stored round summary (a later run on the same store).

        Whether the campaign stops is decided again from the summary by the current stop policy
        (:meth:`StopPolicy.decide_from_summary`), so raising ``max_rounds``, changing a target or
        raising the budget extends a campaign that had stopped; the selection of the round that had
        stopped it is then labelled first (:mod:`al_flows.active_learning.extension`; ``store``:
        where its finished jobs are found). The budget spent is the summary's ``spent_after``
        (:meth:`al_flows.campaign.record.CampaignRecord.with_budget_spent` fills it in for rounds run
        without a budget)."""
        k = summary["round"] + 1
        decision = self.stop_policy.decide_from_summary(summary)
        uuids = {key: summary[key] for key in ("dataset_uuid", "structures_uuid", "test_uuid")}
        # the stored round's train jobs (their uuids are fixed by campaign, fingerprint, round and member)
        trains = [
            stable_uuid(
                self.campaign, summary.get("fingerprint") or self.fingerprint, summary["round"], "train", f"member {m}"
            )
            for m in range(len(summary.get("model_ids") or []))
        ]
        state = RoundState(round=k, **uuids, calibration_uuid=summary.get("calibration_uuid") or "", train_uuids=trains)
        n_labels, spent, jobs = summary["n_labels_total"] + summary["n_labelled"], summary.get("spent_after"), []
        if needs_extension(summary, decision.stop):  # label the stopped round's selection, then train on it
            jobs = extension_jobs(self, summary)
            merged, amended = jobs[-2], jobs[-1]
            state, n_labels = state.model_copy(update={"dataset_uuid": merged.uuid}), merged.output.n_frames
            spent = amended.output.spent_after if self.stop_policy.budget is not None else spent
            jobs, _ = drop_completed(jobs, store)
        previous = {"stop": decision.stop, "converged": decision.converged, "stop_reason": decision.reason}
        job = self.round_job(state, n_labels, previous, decision.next_stage, spent, summary.get("trust_lo_levels"))
        return Flow([*jobs, job], name=f"{self.campaign} campaign (continued at round {k})")

    def round_job(
        self, state: RoundState, n_labels, previous: dict | None = None, stage=0, spent=None, levels=None
    ) -> Job:
        """The job that plans round ``state.round``: ``n_labels`` labels to train on, the stop policy's
        decision on the round before (``previous``: its ``stop``, ``converged`` and ``stop_reason``,
        values or references to the round before's SelectionDocument; None before round 0), the
        exploration stage of this round, (labelling budget only) what the rounds before spent (a
        BudgetSpent dict), and (``trust_lo: adaptive`` only) the adaptive levels of the rounds before."""
        staged = {"stage": stage} if stage != 0 else {}
        budgeted = {"spent": spent} if self.stop_policy.budget is not None else {}
        adaptive = {"levels": levels or []} if self.select_maker.settings.is_adaptive else {}
        j = self.plan_round(state, n_labels, **(previous or {}), **staged, **budgeted, **adaptive)
        j = self.tag(j, state.round, "round", "round")
        j.name = "round"
        j.config.expose_store = True  # to find the jobs of round k that finished in an interrupted run
        return j

    def resolved_autotest(self):
        """The autotest settings with the reference calculator filled in: the ``autotest`` section's
        own, else the labeller's (an ASE labeller; the campaign file refuses a VASP one)."""
        auto = self.autotest
        if auto is None or getattr(auto, "reference", None) is not None:
            return auto
        lab = self.label_maker
        if not isinstance(lab, AseLabelMaker):
            raise ValueError(
                "autotest.reference: the labeller is VASP, which the autotest cannot drive; name an ASE calculator"
            )
        return auto.model_copy(update={"reference": lab.calculator, "reference_kwargs": dict(lab.calculator_kwargs)})

    def autotest_flow(self, final_round: int) -> Flow:
        """The autotest of the final round's ensemble (one job)."""
        job = autotest_job(self.campaign, final_round, self.resolved_autotest(), list(self.elements))
        test = self.tag(job, final_round, "autotest", "autotest")
        test.name = "autotest"
        test.config.expose_store = True
        return Flow([test], name="autotest")

    @al_job(output_schema=CampaignResult)
    def plan_round(
        self,
        state: RoundState,
        n_labels: int,
        stop: bool = False,
        converged: bool = False,
        stop_reason: str = "",
        stage: int = 0,
        spent: dict | None = None,
        levels: list | None = None,
    ):
        """Replace itself with round ``state.round`` (in exploration stage ``stage``; and, through it,
        the rounds after), or finish when the stop policy stopped the campaign after the round before
        (``stop``; whether it ``converged`` and the ``stop_reason``). ``spent``: what the rounds
        before spent of the labelling budget; ``levels``: the adaptive lower trust levels of the
        rounds before (``trust_lo: adaptive``)."""
        if stop:
            return self.finish(state, n_labels, converged, stop_reason)
        jobs = self.round_jobs(state, n_labels, stage, spent, levels)
        todo, done = drop_completed(jobs, CURRENT_JOB.store)
        once = {j.uuid for j in done if j.metadata["stage"] == "property_reference"}  # computed in an earlier round
        done, jobs = [j for j in done if j.uuid not in once], [j for j in jobs if j.uuid not in once]
        k = state.round
        if done:
            progress.report("round resumed", k, done=len(done), of=len(jobs), reused=", ".join(j.name for j in done))
        else:
            progress.report("round start", k, labels=n_labels, jobs=len(jobs))
        return Response(replace=Flow(todo, name=f"round {k}"))

    def finish(self, state: RoundState, n_labels: int, converged: bool, reason: str):
        """The campaign's result (and its autotest, if configured) after the last round; ``reason``:
        the stop policy's (converged, budget, round limit)."""
        progress.report("finished", state.round - 1, labels=n_labels, reason=reason)
        result = CampaignResult(
            campaign=self.campaign,
            fingerprint=self.fingerprint,
            converged=bool(converged),
            n_rounds=state.round,
            final_round=state.round - 1,
            n_labels_total=n_labels,
            stop_reason=reason,
        )
        if self.autotest is None:
            return result
        return Response(output=result, addition=self.autotest_flow(state.round - 1))
