"""Pydantic output documents of a pool study (Sprueill et al.: active sampling, shear study, validation).

As in :mod:`al_flows.active_learning.schemas`, ``*_blob`` fields go to the JobStore's data store as text
(frames: extxyz; weights: base64). Energies eV, forces eV/Angstrom, losses in the training
loss's units (eV^2 and eV^2/Angstrom^2 mixed with rho, see :mod:`al_flows.potential.training`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class PoolDocument(BaseModel):
    """The labelled pool and its fixed held-out test set. ``records``: one per frame (frame_id,
    source_file, source_step, source_format, explorer, parent_id, temperature_K, step, labeller),
    keys absent from a frame's provenance are None."""

    study: str
    n_frames: int
    frame_ids: list[str]
    test_ids: list[str]
    counts_by_source: dict[str, int]
    records: list[dict] = []
    sources: list[dict] = []
    wall_time: float = 0.0
    frames_blob: str = Field(repr=False)


class SamplingDocument(BaseModel):
    """One trained model of the comparison (strategy active, uniform or active_set).

    ``row`` is its line of the comparison table; ``iterations`` (active only) logs every
    iteration's filter statistics and every inclusion (frame_id, error e in eV/A, tail
    probability p); ids name frames of the pool."""

    study: str
    strategy: str
    seed: int
    model_id: str
    n_train: int
    n_val: int
    n_steps: int
    n_epochs: int
    row: dict
    curve: list[dict]
    iterations: list[dict] = []
    train_ids: list[str]
    val_ids: list[str]
    initial_train_ids: list[str] = []
    n_reserve: int = 0
    model_settings: dict
    training_settings: dict
    settings: dict = {}
    wall_time: float = 0.0
    model_blob: str = Field(repr=False)
    final_model_blob: str = Field(repr=False)


class ComparisonDocument(BaseModel):
    """Table I of Sprueill et al. for this pool, with held-out test errors, and the headline ratios."""

    study: str
    rows: list[dict]
    table: str
    ratios: dict[str, float]


class ShearRunsDocument(BaseModel):
    """Some shear runs of one system with the study's model: one record per relaxed step
    (see :func:`al_flows.pool_study.shear_study.step_record`)."""

    study: str
    system: str
    model_id: str
    runs: list[int]
    records: list[dict]  # each with delta_energy / de_per_atom relative to ``reference``
    reference: dict = {}  # the start relaxed unsheared (al_flows.pool_study.shear_study.unsheared_reference)
    dropped: list[dict] = []  # runs that blew up (al_flows.exploration.replica_checks): replica, step, reason
    wall_time: float = 0.0
    frames_blob: str = Field(repr=False)


class ShearStudyDocument(BaseModel):
    """Merged pathways of every system, pathway counts, and the gamma_max minima (one per pathway)."""

    study: str
    model_id: str
    merge_tol: float
    systems: dict[str, dict]
    n_runs: int
    minima_blob: str = Field(repr=False)


class ValidationDocument(BaseModel):
    """The highest-energy NNP minima re-checked with the labeller (one row each; ``failures``:
    minima whose reference calculation failed, with the reason)."""

    study: str
    labeller: str
    rows: list[dict]
    failures: list[dict] = []
    n_minima: int
    n_spurious: int
    n_agree_single: int
    max_abs_d_single_per_atom: float
    agree_tol: float
    spurious_tol: float
    wall_time: float = 0.0
    relaxed_blob: str = Field(repr=False)
