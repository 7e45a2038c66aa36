"""Write a campaign's dataset or a round's models to files, read from its
:class:`~al_flows.campaign.record.CampaignRecord` (``al-flows export``; docs/provenance.md, docs/models.md)."""

from __future__ import annotations

from pathlib import Path

from al_flows.campaign.record import CampaignRecord

__all__ = ["ExportError", "export_dataset", "export_model"]


class ExportError(ValueError):
    """An export that would mix with files already there; the message names them and what to do."""


def export_dataset(record: CampaignRecord, path: str | Path, fmt: str, round_: int | None = None) -> Path:
    """Write the final dataset (``round_``: the labels that round's models trained on,
    :meth:`CampaignRecord.round_dataset`) as extxyz (provenance as plain per-frame keys, see
    :func:`al_flows.frames.extxyz_export.export_info`), an ASE database, or a schnetpack ASEAtomsData db;
    the file's folders are created."""
    path = Path(path)
    data = record.final_dataset() if round_ is None else record.round_dataset(round_)
    path.parent.mkdir(parents=True, exist_ok=True)  # after the data is read: a bad --round creates nothing
    if fmt == "extxyz":
        data.export_extxyz(path)
    elif fmt == "ase-db":
        data.to_ase_db(path)
    elif fmt == "schnetpack":
        data.to_ase_atoms_data(path, overwrite=True)
    else:
        raise ValueError(f"--format: {fmt!r} is not one of extxyz, ase-db, schnetpack")
    return path


def export_model(record: CampaignRecord, outdir: str | Path, round_: int | None = None) -> list[Path]:
    """Write a round's ensemble members as ``OUTDIR/round{k}_member{i}.pt`` (k: the round, default
    the last trained one; i: the member): a state dict plus settings, read with
    ``torch.load(weights_only=True)``. Load them with ``al_flows.potential.ensemble.Ensemble.from_files(OUTDIR)``
    for predictions and an ASE calculator (docs/models.md). Returns the paths written. An OUTDIR that
    holds other ``.pt`` files (another round's export) is refused (ExportError) before anything is written:
    ``from_files`` would mix them in."""
    k, blobs = record.ensemble_blobs(round_)  # before creating anything: a bad --round writes nothing
    outdir = Path(outdir)
    paths = [outdir / f"round{k}_member{i}.pt" for i in range(len(blobs))]
    if outdir.exists() and not outdir.is_dir():
        raise ExportError(f"--output: {outdir} is a file; give the path of a directory to write the models into")
    others = sorted(p.name for p in outdir.glob("*.pt") if p not in paths) if outdir.is_dir() else []
    if others:
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        raise ExportError(
            f"--output: {outdir} already holds other model files ({shown}), which would be mixed with round {k}'s; "
            "give another --output or empty it"
        )
    outdir.mkdir(parents=True, exist_ok=True)
    for p, blob in zip(paths, blobs, strict=True):
        p.write_bytes(blob)
    return paths
