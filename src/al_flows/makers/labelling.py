"""Label frames with an ASE calculator, and merge labels into the dataset."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from jobflow import Maker, job

from al_flows import progress
from al_flows.dataset import Dataset, frames_from_bytes
from al_flows.documents import frames_text, DatasetDocument, LabelDocument
from al_flows.labelling import calculator_factory, label_frames
from al_flows.makers._common import field


@dataclass
class AseLabelMaker(Maker):
    """Label every frame of ``frames_blob``/``selected_blob`` with an ASE calculator
    ('emt' by default); failures are recorded per frame, never fatal to the others."""

    name: str = "label"
    calculator: str = "emt"
    calculator_kwargs: dict = dc_field(default_factory=dict)
    max_force: float = 50.0

    @property
    def labeller_name(self) -> str:
        return f"ase:{self.calculator}"

    @job(data=["labelled_blob"], output_schema=LabelDocument)
    def make(self, frames, campaign: str, round: int, skip: bool = False) -> LabelDocument:
        todo = [] if skip else frames_from_bytes(field(frames, "selected_blob"))
        progress.report("label", round, frames=len(todo))
        result = label_frames(todo, calculator_factory(self.calculator, self.calculator_kwargs), self.labeller_name, self.max_force)
        if result.failed:
            progress.report("label failures", round, failed=len(result.failed))
        return LabelDocument(
            campaign=campaign,
            round=round,
            labeller=self.labeller_name,
            n_requested=len(todo),
            n_labelled=len(result.labelled),
            n_failed=len(result.failed),
            failures=result.failed,
            labelled_blob=frames_text(result.labelled),
        )


@job(data=["dataset_blob"], output_schema=DatasetDocument)
def merge_labels(dataset, labels, campaign: str, round: int) -> DatasetDocument:
    """Dataset of the previous round (None for the initial data) plus this round's labels."""
    data = Dataset.from_bytes(field(dataset, "dataset_blob")) if dataset is not None else Dataset()
    added = data.add(frames_from_bytes(field(labels, "labelled_blob")))
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
