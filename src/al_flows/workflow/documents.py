"""The fields every output document of the active-learning loop shares: the campaign it belongs to,
its round, the ensemble that made it and the time the job took. Fields ending in ``_blob`` are
routed to the JobStore's data store by :func:`al_flows.workflow.jobs.al_job`."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["CampaignDocument", "RoundDocument", "EnsembleDocument", "blob_fields"]


class CampaignDocument(BaseModel):
    """Base of the loop's output documents."""

    campaign: str
    wall_time: float = Field(0.0, description="s spent in the job (0: not measured)")


class RoundDocument(CampaignDocument):
    """A document of one round (round -1: before the first round)."""

    round: int


class EnsembleDocument(RoundDocument):
    """A document made with a round's ensemble."""

    ensemble_id: str = Field(description="hash of the members' model ids, in member order")
    device: str | None = Field(
        None, description="torch device the job ran the ensemble on, resolved on the worker (None: no model ran)"
    )


def blob_fields(schema: type[BaseModel] | None) -> list[str]:
    """The ``*_blob`` fields of an output schema (large text: frames, datasets, weights)."""
    return [] if schema is None else [name for name in schema.model_fields if name.endswith("_blob")]
