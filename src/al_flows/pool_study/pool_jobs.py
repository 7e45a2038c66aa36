"""The pool job of a pool study (Sprueill et al.): the labelled pool from its sources (imported files,
labeller shear, labeller MD) with its test frames held out, and reading the pool back from its document.

Every job carries ``metadata = {"campaign": study name, "fingerprint", "round": -1, "stage"}``
(:mod:`al_flows.pool_study.flows`); stage: pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
from jobflow import Maker

from al_flows.exploration.labeller_md import nvt_pool
from al_flows.exploration.shear import ShearSettings
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.labelling.ase import calculator_factory
from al_flows.pool_study.config import ImportSource, PoolConfig
from al_flows.pool_study.schemas import PoolDocument
from al_flows.pool_study.shear_pool import labeller_shear_pool
from al_flows.pool_study.strategies import split_test
from al_flows.structures.initial_data import build_structures
from al_flows.workflow import progress
from al_flows.workflow.config import AseLabeller
from al_flows.workflow.jobs import al_job, field

__all__ = ["PoolMaker", "pool_document_frames", "frame_ids_at"]


# ``dc_field(default_factory=<pydantic settings class>)  # type: ignore[arg-type]``: mypy (without the pydantic
# plugin) does not see defaults given as ``Field(value, ...)``, so it takes these classes for ones that need arguments.


def pool_document_frames(pool) -> tuple[list, np.ndarray]:
    """Frames of a PoolDocument and the positions of its test frames."""
    frames = frames_from_bytes(field(pool, "frames_blob"))
    test = set(field(pool, "test_ids"))
    return frames, np.array([k for k, a in enumerate(frames) if a.info["frame_id"] in test], dtype=int)


def frame_ids_at(frames, idx) -> list[str]:
    """The frame_ids of ``frames`` at positions ``idx``."""
    return [frames[int(k)].info["frame_id"] for k in idx]


@dataclass
class PoolMaker(Maker):
    """Build the labelled pool from its sources (imported files, labeller MD) and hold out the
    test frames. Frames seen twice (same frame_id) are kept once."""

    name: str = "pool"
    pool: PoolConfig | None = None
    labeller: AseLabeller = dc_field(default_factory=AseLabeller)  # type: ignore[arg-type]
    base_dir: str = "."

    @al_job(output_schema=PoolDocument)
    def make(self, study: str, seed: int) -> PoolDocument:
        """The labelled pool frames of the configured source, with their test split."""
        start = time.perf_counter()
        if self.pool is None:
            raise ValueError("PoolMaker.pool: no pool configuration given")
        frames, sources = [], []
        for i, src in enumerate(self.pool.sources):
            got = self._source_frames(i, src, seed)
            sources.append({"index": i, "kind": src.kind, "n_frames": len(got)})
            frames.extend(got)
        seen, unique = set(), []
        for atoms in frames:
            if atoms.info["frame_id"] not in seen:
                seen.add(atoms.info["frame_id"])
                unique.append(atoms)
        if len(unique) < 3:
            raise ValueError(
                f"pool.sources: only {len(unique)} distinct labelled frames; active sampling needs many more"
            )
        _, test_idx = split_test(len(unique), self.pool.test_fraction, seed)
        progress.report("pool", -1, frames=len(unique), test=len(test_idx))
        return PoolDocument(
            study=study,
            n_frames=len(unique),
            frame_ids=[a.info["frame_id"] for a in unique],
            test_ids=frame_ids_at(unique, test_idx),
            counts_by_source=_counts_by_source(unique),
            records=[_pool_record(a) for a in unique],
            sources=sources,
            wall_time=time.perf_counter() - start,
            frames_blob=frames_text(unique),
        )

    def _source_frames(self, i: int, src, seed: int) -> list:
        """The labelled frames of ``pool.sources[i]``: imported files, labeller shear or labeller MD."""
        from al_flows.pool_study.pool_import import import_frames, import_tree

        if isinstance(src, ImportSource):
            path = Path(self.base_dir) / src.path
            try:
                return (import_tree if path.is_dir() else import_frames)(path, stride=src.stride)
            except (ValueError, FileNotFoundError) as exc:
                raise ValueError(f"pool.sources[{i}].path: {exc}") from None
        structures = build_structures(src.structures, self.base_dir, where=f"pool.sources[{i}].structures")
        make_calc = calculator_factory(self.labeller.calculator, self.labeller.calculator_kwargs())
        if src.kind == "labeller_shear":
            shear = ShearSettings(**src.model_dump(include=set(ShearSettings.model_fields)))
            return labeller_shear_pool(
                structures,
                make_calc,
                shear,
                seed + i,
                self.labeller.labeller_name(),
                src.md_temperatures_K,
                src.md_steps,
                src.md_timestep_fs,
                src.md_interval,
            )
        return nvt_pool(
            structures,
            make_calc,
            src.temperatures_K,
            src.n_steps,
            src.timestep_fs,
            src.interval,
            seed=seed + i,
            labeller=self.labeller.labeller_name(),
        )


_RECORD_KEYS = (
    "source_file",
    "source_step",
    "source_format",
    "explorer",
    "parent_id",
    "temperature_K",
    "step",
    "opt_step",
    "gamma",
    "labeller",
)


def _pool_record(atoms) -> dict:
    """The provenance record of a pool frame (its frame_id and the ``_RECORD_KEYS`` of its info)."""
    return {"frame_id": atoms.info["frame_id"], **{k: atoms.info.get(k) for k in _RECORD_KEYS}}


def _counts_by_source(frames) -> dict[str, int]:
    """Frames per source format (imported) or explorer (labeller sources)."""
    counts: dict[str, int] = {}
    for atoms in frames:
        key = str(atoms.info.get("source_format") or atoms.info.get("explorer") or "unknown")
        counts[key] = counts.get(key, 0) + 1
    return counts
