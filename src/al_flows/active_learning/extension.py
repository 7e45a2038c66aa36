"""Extending a finished campaign: the round that stopped it selected frames but labelled none (its
labels could never have been trained on). When a later run goes on after that round (a larger
``max_rounds`` or budget, another target), these jobs label its selection before the next round
trains, so N more rounds bring N rounds of new labels:

    extension r{k} (the selection, cut to the labelling budget given now) -> label -> merge
    -> round_summary r{k} on extension (the round's summary counting those labels) -> round k+1

All are tagged with round k (the round that selected the frames) and have fixed uuids, so a run
stopped in the middle finds the finished ones in the store and never labels a frame twice; once the
amended summary is stored, a later run continues from it without labelling again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobflow import Job, OutputReference

from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.jobs.summary import extended_summary
from al_flows.active_learning.schemas import RoundSummary
from al_flows.workflow.jobs import stable_uuid

__all__ = ["needs_extension", "extension_jobs"]


def needs_extension(summary: dict, stops_now: bool) -> bool:
    """Whether a run continuing after the round of ``summary`` (a stored RoundSummary) labels that
    round's selection first: the round stopped the campaign (so it labelled nothing), the campaign
    goes on now (``stops_now`` False) and no earlier extension labelled it."""
    return bool(summary.get("stop")) and not stops_now and not summary.get("labelled_on_extension")


def extension_jobs(maker: Any, summary: dict) -> list[Job]:
    """The jobs that label the selection of round ``summary['round']`` for ``maker`` (an
    ActiveLearningMaker): the selection cut to the labelling budget (stage ``extension``), its labels
    (stage ``label``, the campaign's labeller, ASE or VASP), the dataset with them (stage ``merge``)
    and the round's summary counting them (stage ``summary``, ``labelled_on_extension``); the merge
    is the last but one job, the summary the last."""
    k = summary["round"]
    select = maker.select_maker
    selection = OutputReference(stable_uuid(maker.campaign, maker.fingerprint, k, "select", select.name))
    budgeted = maker.stop_policy.budget is not None
    spent = {"spent": summary.get("spent_after"), "policy": maker.stop_policy} if budgeted else {}
    # a copy named for the job: renaming a Maker's job renames its Maker (the select jobs' names give their uuids)
    named = replace(select, name=f"extension r{k}")
    ext = maker.tag(named.extension(selection, maker.campaign, k, **spent), k, "extension")
    lab = maker.tag(maker.label_maker.make(ext.output, maker.campaign, k), k, "label", "label on extension")
    dataset = OutputReference(summary["dataset_uuid"])
    merge = merge_labels(dataset, lab.output, maker.campaign, k, maker.allow_mixed_settings)
    merged = maker.tag(merge, k, "merge", "merge on extension")
    merged.name = f"merge r{k} on extension"
    stored = {key: v for key, v in summary.items() if key in RoundSummary.model_fields}  # no '@class' keys
    amend = extended_summary(stored, ext.output, lab.output, merged.uuid, budgeted)
    amended = maker.tag(amend, k, "summary", "summary on extension")
    amended.name = f"round_summary r{k} on extension"
    return [ext, lab, merged, amended]
