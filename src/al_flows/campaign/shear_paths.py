"""Shear paths of a campaign for the report's energy-vs-gamma plot: the explored paths, the labeller's
own paths of the test set, and each path's starting structure relaxed unsheared as its reference.

Energies eV (differences eV/atom), shear strain gamma dimensionless.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from al_flows.campaign.report_data import latest_docs, per_round, round_summaries

__all__ = ["shear_paths", "labeller_shear_paths", "reference_key", "unsheared_references", "energy_vs_gamma_data"]


def shear_paths(store, config, summaries: list[dict] | None = None) -> list[dict]:
    """One path per (round, explorer, parent_id, run) of explored frames that have a gamma:
    ``gamma`` (shear strain) and ``energy`` (eV) in step order, ``delta_energy`` (eV,
    relative to the path's first frame)."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    paths: dict[tuple, list[dict]] = defaultdict(list)
    for r, exps in per_round(latest_docs(store, config.name, "explore"), summaries).items():
        for exp in exps:
            for f in exp.get("frames", []):
                if f.get("gamma") is None or f.get("energy") is None:
                    continue
                paths[(r, exp["explorer"], f.get("parent_id", ""), f.get("run"))].append(f)
    out = []
    for (r, explorer, parent, run), frames in sorted(paths.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        frames.sort(key=lambda f: (f.get("step") or 0, f["gamma"]))
        energy = np.array([f["energy"] for f in frames])
        out.append(
            {
                "round": r,
                "explorer": explorer,
                "parent_id": parent,
                "run": run,
                "source": "ensemble",
                "n_atoms": frames[0].get("n_atoms"),
                "gamma": [f["gamma"] for f in frames],
                "energy": energy.tolist(),
                "delta_energy": (energy - energy[0]).tolist(),
            }
        )
    return out


def labeller_shear_paths(store, config) -> list[dict]:
    """The labeller's own shear paths in the fixed test set (``test_set`` kind mixed or labeller_shear): one
    per (parent_id, run) with ``gamma``, ``energy`` (eV, the labeller's) and ``n_atoms`` in step
    order, ``source`` "labeller", ``round`` -1; [] for other test sets. Steps the test set left out
    (``max_frames``) are missing from their path."""
    from al_flows.frames.extxyz import frames_from_bytes

    docs = latest_docs(store, config.name, "test_set", load=True)
    if not docs or not docs[-1]["output"].get("frames_blob"):
        return []
    paths: dict[tuple, list] = defaultdict(list)
    for atoms in frames_from_bytes(docs[-1]["output"]["frames_blob"]):
        info = atoms.info
        if info.get("gamma") is None or not math.isfinite(float(info["gamma"])) or atoms.calc is None:
            continue
        if info.get("test_kind", "shear_relaxed") != "shear_relaxed":  # sheared copies are not on a path
            continue
        paths[(str(info.get("explorer", "test")), str(info.get("parent_id", "")), info.get("run"))].append(atoms)
    out = []
    for (explorer, parent, run), frames in sorted(paths.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        frames.sort(key=lambda a: (a.info.get("step") or 0, a.info["gamma"]))
        out.append(
            {
                "round": -1,
                "explorer": explorer,
                "parent_id": parent,
                "run": run,
                "source": "labeller",
                "n_atoms": len(frames[0]),
                "gamma": [float(a.info["gamma"]) for a in frames],
                "energy": [float(a.get_potential_energy()) for a in frames],
            }
        )
    return out


def reference_key(path: dict) -> tuple:
    """Key of a path's unsheared reference: (source, round, explorer, parent_id)."""
    return (path["source"], path["round"], path["explorer"], path["parent_id"])


def unsheared_references(
    store, config, paths: list[dict], summaries: list[dict] | None = None, cache: dict | None = None
) -> dict[tuple, dict]:
    """Each path's starting structure relaxed at its own cell (unsheared: gamma of the starting
    structure, 0 for the multilayers), with the path's calculator: the round's ensemble (its
    summary's members; fmax, optimizer and max_opt_steps of the explorer) for explored paths,
    the labeller (test_set fmax, BFGS, at most 500 steps) for its own. By :func:`reference_key`:
    ``{"gamma", "energy" (eV), "n_atoms"}``; paths whose models, structure or labeller are not
    available, or whose relaxation is not finite, get none. ``cache`` (a JSON-able dict, filled in
    here) holds earlier results by path key, ensemble id and relaxation settings, so a report
    rewritten after each round relaxes only the new round's structures."""
    from al_flows.exploration.shear_geometry import shear_strain
    from al_flows.frames.extxyz import frames_from_bytes

    docs = latest_docs(store, config.name, "structures", load=True)
    if not docs:
        return {}
    starts = {
        str(a.info.get("structure_id") or a.info.get("frame_id")): a
        for a in frames_from_bytes(docs[-1]["output"]["structures_blob"])
    }
    summaries = round_summaries(store, config) if summaries is None else summaries
    by_round = {s["round"]: s for s in summaries}
    cache = {} if cache is None else cache
    refs: dict[tuple, dict] = {}
    for (source, r, explorer), parents in sorted(_wanted(paths, starts).items(), key=lambda kv: tuple(map(str, kv[0]))):
        relaxation = _relaxation(config, source, explorer, by_round.get(r))
        if relaxation is None:
            continue
        cache_keys = {
            pid: json.dumps([source, r, explorer, pid, relaxation.ident], sort_keys=True, default=str)
            for pid in parents
        }
        for pid in [pid for pid in parents if cache_keys[pid] in cache]:
            refs[(source, r, explorer, pid)] = dict(cache[cache_keys[pid]])
        parents = [pid for pid in parents if cache_keys[pid] not in cache]
        if not parents:
            continue
        structures = [starts[pid] for pid in parents]
        energies = relaxation.energies(store, config, r, structures)
        if energies is None:
            continue
        for pid, atoms, energy in zip(parents, structures, energies, strict=True):
            if math.isfinite(energy):
                refs[(source, r, explorer, pid)] = {
                    "gamma": shear_strain(atoms.cell[:]),
                    "energy": energy,
                    "n_atoms": len(atoms),
                }
                cache[cache_keys[pid]] = dict(refs[(source, r, explorer, pid)])
    return refs


def _wanted(paths: list[dict], starts: dict) -> dict[tuple, list[str]]:
    """The parent ids (in first-seen order) of the paths with a stored starting structure, by
    (source, round, explorer)."""
    wanted: dict[tuple, list[str]] = defaultdict(list)
    for p in paths:
        key = reference_key(p)
        if p["parent_id"] in starts and key[3] not in wanted[key[:3]]:
            wanted[key[:3]].append(key[3])
    return wanted


@dataclass
class _Relaxation:
    """How the unsheared references of one (source, round, explorer) are relaxed: by the labeller
    (``summary`` and ``settings`` None) or by the round's ensemble with the explorer's ``settings``;
    ``ident`` is what the cached results depend on."""

    ident: list
    summary: dict | None = None
    settings: Any = None

    def energies(self, store, config, r: int, structures: list) -> list[float] | None:
        """Relaxed energies (eV; NaN where not finite) of ``structures``, or None when the round's
        models are not all stored."""
        if self.summary is None:
            return _labeller_energies(config, structures)
        return _ensemble_energies(store, config, r, self.summary, self.settings, structures)


def _relaxation(config, source: str, explorer: str, summary: dict | None) -> _Relaxation | None:
    """The relaxation of the references of a path group, or None when its calculator is not available."""
    if source == "labeller":
        if getattr(config.labeller, "kind", None) != "ase":
            return None
        kwargs = config.labeller.kwargs if config.labeller.potential is None else config.labeller.label_file()
        return _Relaxation([config.labeller.calculator, kwargs, config.test_set.fmax])
    settings = next((e for e in config.explorers if e.name == explorer and hasattr(e, "fmax")), None)
    if settings is None or summary is None or not summary.get("model_ids"):
        return None
    ident = [
        summary.get("ensemble_id"),
        summary["model_ids"],
        settings.fmax,
        settings.optimizer,
        settings.max_opt_steps,
    ]
    return _Relaxation(ident, summary, settings)


def _labeller_energies(config, structures: list) -> list[float]:
    """Energies (eV) of ``structures`` relaxed by the labeller (BFGS to the test set's fmax, 500 steps at most)."""
    from ase.optimize import BFGS

    from al_flows.labelling.ase import calculator_factory

    energies = []
    make = calculator_factory(config.labeller.calculator, config.labeller.calculator_kwargs())
    for atoms in structures:
        work = atoms.copy()
        work.calc = make()
        BFGS(work, logfile=None).run(fmax=config.test_set.fmax, steps=500)
        energies.append(float(work.get_potential_energy()))
    return energies


def _ensemble_energies(store, config, r: int, summary: dict, settings, structures: list) -> list[float] | None:
    """Energies (eV; NaN where not finite) of ``structures`` relaxed in a batch by round ``r``'s
    ensemble with the explorer's ``settings``; None when a member is not stored."""
    from al_flows.exploration.batched_relax import relax_batched
    from al_flows.workflow.jobs import load_ensemble

    train = latest_docs(store, config.name, "train", load=True, criteria={"metadata.round": r})
    models = {d["output"]["model_id"]: d["output"] for d in sorted(train, key=lambda d: d["index"])}
    if any(m not in models for m in summary["model_ids"]):
        return None
    ensemble = load_ensemble([models[m] for m in summary["model_ids"]])
    relaxed = relax_batched(
        structures,
        ensemble,
        fmax=settings.fmax,
        max_steps=settings.max_opt_steps,
        optimizer=settings.optimizer,
        engine=settings.optimizer_engine,
    )
    return [res.energy if res.finite else math.nan for res in relaxed]


def energy_vs_gamma_data(paths: list[dict], references: dict[tuple, dict]) -> list[dict]:
    """What energy_vs_gamma.png draws: per path with a reference (:func:`reference_key`), ``gamma``
    (the reference's, then the path's) and ``de_per_atom`` = (E - E_ref) / N (eV/atom; first value
    0), with the path's round, explorer, parent_id, run and source. Paths without a reference, or
    whose atom count differs from their reference's, are left out."""
    out = []
    for p in paths:
        ref = references.get(reference_key(p))
        if ref is None or p.get("n_atoms") != ref["n_atoms"]:
            continue
        n = ref["n_atoms"]
        out.append(
            {
                **{k: p[k] for k in ("round", "explorer", "parent_id", "run", "source")},
                "gamma": np.array([ref["gamma"], *p["gamma"]], dtype=float),
                "de_per_atom": np.array([0.0, *((e - ref["energy"]) / n for e in p["energy"])], dtype=float),
            }
        )
    return out
