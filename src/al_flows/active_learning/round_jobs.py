"""The jobs of one round of the active-learning loop: train the members, evaluate, compute the
convergence properties, explore, select, label, calibrate, merge, summarise, and the job that
plans the next round (docs/loop.md). :class:`RoundJobs` is a part of
:class:`~al_flows.active_learning.flows.ActiveLearningMaker`, which holds the Makers and settings
these methods read and plans the campaign around them."""

from __future__ import annotations

from typing import Any

from jobflow import Job, OutputReference

from al_flows.active_learning.jobs.calibration import calibrate
from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.jobs.properties import member_properties, property_reference
from al_flows.active_learning.jobs.summary import evaluate, round_summary
from al_flows.active_learning.member_start import scratch_round
from al_flows.active_learning.schemas import RoundState
from al_flows.exploration.md import stage_count

__all__ = ["RoundJobs"]


class RoundJobs:
    """Builds the jobs of one round for the ActiveLearningMaker it is part of (its ``tag``, Makers,
    seeds and settings)."""

    campaign: str
    fingerprint: str
    ensemble_size: int
    allow_mixed_settings: bool
    train_maker: Any
    explore_makers: list
    select_maker: Any
    stop_policy: Any
    label_maker: Any
    property_reference_maker: Any
    seeds: Any
    tag: Any
    round_job: Any

    def property_jobs(self, models: list, round_: int) -> list[Job]:
        """The jobs of round ``round_``'s convergence properties: the labeller's reference (a fixed uuid
        per set of listed properties and settings, so it is computed once and dropped from later rounds
        as completed) and the members' values; [] when no properties are listed."""
        conv = self.stop_policy.properties
        if conv is None:
            return []
        lab = self.label_maker
        if self.property_reference_maker is not None:  # VASP: atomate2's EOS and elastic flows
            ref = self.property_reference_maker.make(conv, self.campaign)
        else:
            ref = property_reference(lab.calculator, dict(lab.calculator_kwargs), conv, self.campaign)
        ref = self.tag(ref, -1, "property_reference", conv.reference_key())
        ref.name = "property_reference"
        props = self.tag(member_properties(models, ref.output, conv, self.campaign, round_), round_, "properties")
        props.name = f"properties r{round_}"
        return [ref, props]

    def calibration_job(self, models: list, lab: Job, sel: Job, ev: Job, previous, round_: int) -> Job:
        """Round ``round_``'s calibration record (on its labels ``lab``, selection ``sel`` and test-set
        evaluation ``ev``; ``previous``: the round before's record, or None), which with
        ``selection.calibrate`` also fits the next round's trust levels."""
        settings = self.select_maker.settings
        prior = {"previous": previous} if previous is not None else {}
        cal = calibrate(models, lab.output, sel.output, ev.output, self.campaign, round_, settings, **prior)
        cal = self.tag(cal, round_, "calibrate")
        cal.name = f"calibrate r{round_}"
        return cal

    def train_job(self, state: RoundState, dataset: OutputReference, member: int) -> Job:
        """The train job of member ``member`` in round ``state.round``; with ``training.warm_start``, in a
        round that may start warm, it reads the same member's TrainingDocument of the round before (its
        train job: ``state.train_uuids``), and its weights from the data store."""
        k = state.round
        prior: dict = {}
        if not scratch_round(self.train_maker.training, k) and member < len(state.train_uuids):
            uuid = state.train_uuids[member]
            prior = {"previous": OutputReference(uuid), "previous_uuid": uuid}
        job = self.train_maker.make(dataset, self.campaign, k, member, self.seeds.train(k, member), **prior)
        return self.tag(job, k, "train", f"member {member}")

    def select_job(self, explores: list, dataset, models: list, props: list, previous, k: int, extra: dict) -> Job:
        """Round ``k``'s select job over the explorations ``explores`` (``previous``: the round before's
        calibration; ``extra``: stage and budget keywords). Inputs only the campaign uses are passed:
        the convergence properties (``props``), and the models for pick diverse (it reads the
        ensemble's features), so other campaigns' select jobs keep their inputs."""
        measured = {"properties": props[-1].output} if props else {}
        diverse = {"models": models} if self.select_maker.settings.needs_features else {}
        select = self.select_maker.make(
            [x.output for x in explores],
            dataset.frame_ids,
            self.campaign,
            k,
            self.seeds.select(k),
            previous,
            **extra,
            **measured,
            **diverse,
            policy=self.stop_policy,
        )
        return self.tag(select, k, "select")

    def round_jobs(
        self, state: RoundState, n_labels: int, stage: int = 0, spent: dict | None = None, levels: list | None = None
    ) -> list[Job]:
        """Every job of round ``state.round`` (exploring stage ``stage``; ``spent``: the labelling
        budget the rounds before spent; ``levels``: their adaptive trust levels), ending with the
        job that plans the next round."""
        k = state.round
        dataset, structures, test = (
            OutputReference(u) for u in (state.dataset_uuid, state.structures_uuid, state.test_uuid)
        )
        trains = [self.train_job(state, dataset, m) for m in range(self.ensemble_size)]
        models = [t.output for t in trains]
        ev = self.tag(evaluate(models, test, self.campaign, k), k, "evaluate")
        ev.name = f"evaluate r{k}"
        staged = {"stage": stage} if self.stop_policy.n_stages > 1 else {}  # stage-free campaigns: as before
        explores = [
            self.tag(
                maker.make(
                    structures,
                    models,
                    self.campaign,
                    k,
                    self.seeds.explore(k, i),
                    **(staged if stage_count(maker.settings) > 1 else {}),
                ),
                k,
                "explore",
                f"{i} {maker.name}",
            )
            for i, maker in enumerate(self.explore_makers)
        ]
        previous = OutputReference(state.calibration_uuid) if state.calibration_uuid else None
        props = self.property_jobs(models, k)
        budgeted = {"spent": spent} if self.stop_policy.budget is not None else {}
        adaptive = {"levels": levels or []} if self.select_maker.settings.is_adaptive else {}
        sel = self.select_job(explores, dataset, models, props, previous, k, {**staged, **budgeted, **adaptive})
        lab = self.tag(self.label_maker.make(sel.output, self.campaign, k, skip=sel.output.stop), k, "label")
        merged = self.tag(merge_labels(dataset, lab.output, self.campaign, k, self.allow_mixed_settings), k, "merge")
        merged.name = f"merge r{k}"
        cal = self.calibration_job(models, lab, sel, ev, previous, k)
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
            cal.uuid,
            cal.output,
        )
        summ = self.tag(summary, k, "summary")
        summ.name = f"round_summary r{k}"
        following = state.model_copy(
            update={
                "round": k + 1,
                "dataset_uuid": merged.uuid,
                "calibration_uuid": cal.uuid,
                "train_uuids": [t.uuid for t in trains],
            }
        )
        decision = {"stop": sel.output.stop, "converged": sel.output.converged, "stop_reason": sel.output.stop_reason}
        nxt = self.round_job(
            following,
            merged.output.n_frames,
            decision,
            sel.output.next_stage if staged else 0,
            summ.output.spent_after if budgeted else None,
            sel.output.trust_lo_levels,
        )
        return [*trains, ev, *props, *explores, sel, lab, cal, merged, summ, nxt]
