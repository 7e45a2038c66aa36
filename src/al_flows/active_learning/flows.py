"""The active-learning loop as a dynamic jobflow Flow.

``ActiveLearningMaker.make(structures)`` returns
``[starting_structures, test_set, initial label, initial merge, round 0]``;
the job ``round k`` replaces itself (``Response(replace=...)``) with

    train x ensemble_size -> evaluate -> explore (each explorer) -> select
    -> label -> merge -> round_summary -> round k+1

until a round's accurate ratio reaches the target or ``max_rounds`` rounds have
trained; a round that stops labels nothing. Every job carries
``metadata = {"campaign", "fingerprint", "round", "stage"}`` for queries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from jobflow import CURRENT_JOB, Flow, Job, Maker, OutputReference, Response
from monty.json import jsanitize

from al_flows.active_learning import builders
from al_flows.active_learning.autotest_jobs import autotest_job
from al_flows.active_learning.calibration_jobs import calibrate_levels
from al_flows.active_learning.config import CampaignConfig, InitialCopies, InitialData, TestSetConfig
from al_flows.active_learning.jobs import (
    AseLabelMaker,
    ShearExploreMaker,
    TrainMemberMaker,
    merge_labels,
)
from al_flows.active_learning.labeller_slot import label_maker_for
from al_flows.active_learning.schemas import CampaignResult, RoundState
from al_flows.active_learning.seeds import CampaignSeeds
from al_flows.active_learning.select_job import SelectMaker
from al_flows.active_learning.start_jobs import (
    labeller_test_set,
    perturbed_structures,
    starting_structures,
    test_set_from_labels,
)
from al_flows.active_learning.summary_jobs import evaluate, round_summary
from al_flows.frames.dataset import frames_text
from al_flows.structures.initial_data import GivenSource, given_structures
from al_flows.validation.autotest import AutotestSettings
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, drop_completed, route, stable_uuid

__all__ = ["ActiveLearningMaker", "settings_fingerprint"]


def settings_fingerprint(maker: Maker, structures_text: str = "") -> str:
    """16 hex chars naming a campaign built in Python: a hash of the Maker's settings (as
    ``as_dict``, without its name, fingerprint and base directory) and its starting structures."""
    d = jsanitize(maker.as_dict(), strict=True, enum_values=True)
    for key in ("name", "fingerprint", "base_dir", "categories"):
        d.pop(key, None)
    text = json.dumps(d, sort_keys=True, default=str) + structures_text
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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
class ActiveLearningMaker(Maker):
    """Train -> explore -> select -> label, round after round (docs/methods.md).

    Build it from Makers and settings (docs/python_api.md) or from a campaign file
    (:meth:`from_config`); ``make(structures)`` returns the campaign's Flow. ``label_maker`` takes
    anything :func:`~al_flows.active_learning.labeller_slot.label_maker_for` accepts: an ASE
    calculator or its name, an atomate2 VASP Maker (``StaticMaker``), or a label Maker.
    ``max_rounds`` is the one round limit (the select Maker's stop decision uses it);
    ``fingerprint`` names the jobs (default: a hash of the Maker's settings and structures).
    """

    name: str = "active learning"
    campaign: str = "campaign"
    fingerprint: str = ""
    seed: int = 0
    ensemble_size: int = 4
    max_rounds: int = 5
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

    def __post_init__(self):
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size: {self.ensemble_size} members cannot disagree; use 2 or more")
        self.label_maker = label_maker_for(self.label_maker)
        staged = [len(m.settings.stages) for m in self.explore_makers if getattr(m.settings, "stages", None)]
        if len(staged) > 1:
            raise ValueError("explore_makers: more than one has stages; the campaign moves through one list of stages")
        n_stages = staged[0] if staged else 1
        if (self.select_maker.max_rounds, self.select_maker.n_stages) != (self.max_rounds, n_stages):
            self.select_maker = replace(self.select_maker, max_rounds=self.max_rounds, n_stages=n_stages)

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
            fingerprint=config.fingerprint(),
            seed=config.seed,
            ensemble_size=config.ensemble_size,
            max_rounds=config.max_rounds,
            initial=config.initial,
            base_dir=str(base_dir),
            test_set=config.test_set,
            train_maker=TrainMemberMaker(model=config.model, training=config.training, elements=list(config.elements)),
            explore_makers=[builders.explore_maker(e) for e in config.explorers],
            select_maker=SelectMaker(
                settings=config.selection,
                target_accurate_ratio=config.convergence.accurate_ratio,
                target_survival_ps=config.convergence.survival_time_ps,
                max_rounds=config.max_rounds,
            ),
            label_maker=builders.label_maker(config),
            allow_mixed_settings=getattr(config.labeller, "allow_mixed_settings", False),
            categories=builders.categories(config),
            autotest=builders.autotest_settings(config),
            elements=list(config.elements),
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
        source of ``initial.structures``; elements and fingerprint filled in when not set)."""
        elements = list(self.elements or self.train_maker.elements)
        atoms = given_structures(structures, elements or None, where="make(structures)")
        if not elements:
            elements = sorted({s for a in atoms for s in a.get_chemical_symbols()})
        given = frames_text(atoms)
        fingerprint = self.fingerprint or settings_fingerprint(self, given)
        copies = self.initial.model_dump(exclude={"structures"})
        return replace(
            self,
            fingerprint=fingerprint,
            elements=elements,
            train_maker=replace(self.train_maker, elements=elements),
            initial=InitialData(**copies, structures=[GivenSource(frames=given)]),
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
        return [structures, *test_jobs, copies, labels, merged, self.round_job(state, merged.output.n_frames)]

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

    def continue_from(self, summary: dict) -> Flow:
        """Flow that resumes after a stored round summary (a later run on the same store).

        Whether the campaign stops is decided again from the summary with the current
        convergence target and round limit, so raising ``max_rounds`` (or the target)
        extends a campaign that had stopped."""
        k = summary["round"] + 1
        decision = self.select_maker.decide(
            summary["accurate_ratio"],
            summary["n_explored"],
            summary["round"],
            summary.get("median_survival_ps"),
            summary.get("stage") or 0,
        )
        state = RoundState(
            round=k,
            dataset_uuid=summary["dataset_uuid"],
            structures_uuid=summary["structures_uuid"],
            test_uuid=summary["test_uuid"],
            calibration_uuid=summary.get("calibration_uuid") or "",
        )
        n_labels = summary["n_labels_total"] + summary["n_labelled"]
        return Flow(
            [self.round_job(state, n_labels, decision.converged, decision.next_stage)],
            name=f"{self.campaign} campaign (continued at round {k})",
        )

    def round_job(self, state: RoundState, n_labels, converged=False, stage=0) -> Job:
        """The job that plans round ``state.round``: ``n_labels`` labels to train on, whether the
        round before converged and the exploration stage of this round (each may be a reference to
        an output of the round before)."""
        args = (state, n_labels, converged) if stage == 0 else (state, n_labels, converged, stage)
        j = self.tag(self.plan_round(*args), state.round, "round", "round")
        j.name = "round"
        j.config.expose_store = True  # to find the jobs of round k that finished in an interrupted run
        return j

    def autotest_flow(self, final_round: int) -> Flow:
        """The autotest of the final round's ensemble (one job)."""
        job = autotest_job(self.campaign, final_round, self.autotest, list(self.elements))
        test = self.tag(job, final_round, "autotest", "autotest")
        test.name = "autotest"
        test.config.expose_store = True
        return Flow([test], name="autotest")

    @al_job(output_schema=CampaignResult)
    def plan_round(self, state: RoundState, n_labels: int, converged: bool = False, stage: int = 0):
        """Replace itself with round ``state.round`` (in exploration stage ``stage``; and, through it,
        the rounds after), or finish when the previous round converged or ``max_rounds`` rounds have
        trained."""
        if converged or state.round >= self.max_rounds:
            return self.finish(state, n_labels, converged)
        jobs = self.round_jobs(state, n_labels, stage)
        todo, done = drop_completed(jobs, CURRENT_JOB.store)
        k = state.round
        if done:
            progress.report("round resumed", k, done=len(done), of=len(jobs), reused=", ".join(j.name for j in done))
        else:
            progress.report("round start", k, labels=n_labels, jobs=len(jobs))
        return Response(replace=Flow(todo, name=f"round {k}"))

    def finish(self, state: RoundState, n_labels: int, converged: bool):
        """The campaign's result (and its autotest, if configured) after the last round."""
        reason = "converged" if converged else "round limit"
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

    def round_jobs(self, state: RoundState, n_labels: int, stage: int = 0) -> list[Job]:
        """Every job of round ``state.round`` (exploring stage ``stage``), ending with the job that
        plans the next round."""
        k = state.round
        dataset, structures, test = (
            OutputReference(u) for u in (state.dataset_uuid, state.structures_uuid, state.test_uuid)
        )
        trains = [
            self.tag(
                self.train_maker.make(dataset, self.campaign, k, m, self.seeds.train(k, m)), k, "train", f"member {m}"
            )
            for m in range(self.ensemble_size)
        ]
        models = [t.output for t in trains]
        ev = self.tag(evaluate(models, test, self.campaign, k), k, "evaluate")
        ev.name = f"evaluate r{k}"
        staged = {"stage": stage} if self.select_maker.n_stages > 1 else {}  # stage-free campaigns: as before
        explores = [
            self.tag(
                maker.make(
                    structures,
                    models,
                    self.campaign,
                    k,
                    self.seeds.explore(k, i),
                    **(staged if getattr(maker.settings, "stages", None) else {}),
                ),
                k,
                "explore",
                f"{i} {maker.name}",
            )
            for i, maker in enumerate(self.explore_makers)
        ]
        previous = OutputReference(state.calibration_uuid) if state.calibration_uuid else None
        # pick diverse reads the ensemble's features; other campaigns' select jobs keep their inputs
        diverse = {"models": models} if self.select_maker.settings.needs_features else {}
        select = self.select_maker.make(
            [x.output for x in explores],
            dataset.frame_ids,
            self.campaign,
            k,
            self.seeds.select(k),
            previous,
            **staged,
            **diverse,
        )
        sel = self.tag(select, k, "select")
        lab = self.tag(self.label_maker.make(sel.output, self.campaign, k, skip=sel.output.stop), k, "label")
        merged = self.tag(merge_labels(dataset, lab.output, self.campaign, k, self.allow_mixed_settings), k, "merge")
        merged.name = f"merge r{k}"
        cal_jobs, cal_uuid = [], ""
        cal_settings = self.select_maker.settings.calibrate
        if cal_settings is not None:
            window = {"previous": previous} if previous is not None and cal_settings.window_rounds > 1 else {}
            cal = calibrate_levels(models, lab.output, sel.output, self.campaign, k, cal_settings, **window)
            cal = self.tag(cal, k, "calibrate")
            cal.name = f"calibrate r{k}"
            cal_jobs, cal_uuid = [cal], cal.uuid
        summary = round_summary(
            self.campaign,
            self.fingerprint,
            k,
            [t.output.model_id for t in trains],
            n_labels,
            ev.output,
            sel.output,
            lab.output,
            merged.uuid,
            state.structures_uuid,
            state.test_uuid,
            cal_uuid,
        )
        summ = self.tag(summary, k, "summary")
        summ.name = f"round_summary r{k}"
        following = state.model_copy(update={"round": k + 1, "dataset_uuid": merged.uuid, "calibration_uuid": cal_uuid})
        nxt = self.round_job(
            following, merged.output.n_frames, sel.output.converged, sel.output.next_stage if staged else 0
        )
        return [*trains, ev, *explores, sel, lab, *cal_jobs, merged, summ, nxt]
