"""The merge job of a round: the previous round's dataset plus this round's labels (jobflow job over
:class:`al_flows.frames.dataset.Dataset`); it refuses to mix labels computed with other settings."""

from __future__ import annotations

from al_flows.active_learning.jobs.labelling import LabellingError
from al_flows.active_learning.schemas import DatasetDocument
from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field

__all__ = ["merge_labels"]


@al_job(output_schema=DatasetDocument)
def merge_labels(dataset, labels, campaign: str, round: int, allow_mixed_settings: bool = False) -> DatasetDocument:
    """Dataset of the previous round (None for the initial data) plus this round's labels.

    Refuses labels computed with other settings than the dataset's (``label_settings``)
    unless ``allow_mixed_settings``."""
    data = Dataset.from_bytes(field(dataset, "dataset_blob")) if dataset is not None else Dataset()
    new = frames_from_bytes(field(labels, "labelled_blob"))
    if not allow_mixed_settings:
        have = {a.info.get("label_settings", "") for a in data}
        incoming = {a.info.get("label_settings", "") for a in new}
        if len(have | incoming) > 1:
            raise LabellingError(
                f"round {round}: labels with different settings would be mixed ({sorted(have | incoming)}); "
                f"keep the labeller settings of the campaign or set labeller.allow_mixed_settings: true"
            )
    added = data.add(new)
    progress.report("dataset", round, labels=len(data), added=len(added))
    return DatasetDocument(
        campaign=campaign,
        round=round,
        n_frames=len(data),
        n_added=len(added),
        frame_ids=data.ids,
        counts_by_explorer=data.counts_by("explorer"),
        dataset_blob=frames_text(data),
    )
