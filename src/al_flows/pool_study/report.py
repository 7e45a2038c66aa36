"""Report of a pool study (Sprueill et al.): their Table I, learning curves, energy-vs-gamma profiles
coloured by FCC fraction (their Fig. 5), pathway counts, and the minima validation (their Fig. 6).

Everything is read from the JobStore; files go to WORKDIR/report/ (PNG, table_I.md, index.html).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from al_flows.plotting import pyplot, save_figure
from al_flows.pool_study.shear_study import PATHWAY_TYPES
from al_flows.pool_study.strategies import STRATEGY_TITLES
from al_flows.workflow.jobs import latest_outputs

__all__ = ["pool_study_outputs", "write_pool_report", "export_pool_study", "plot_energy_vs_gamma", "tree_lines"]

CAPTIONS = {
    "learning_curves": "Validation loss per epoch of each strategy against optimiser steps (left) and training-set "
    "size per active-sampling iteration (right).",
    "energy_vs_gamma": "Energy vs shear strain of every merged pathway, per system, coloured by the FCC fraction (as "
    "in Fig. 5 of Sprueill et al.), over the pathway tree: runs share a branch until the step where their "
    "energies part; line width and label give the branch's number of runs. Energies relative to the system's "
    "starting structure relaxed unsheared with the same model (ΔE = 0 as in Sprueill et al.; older "
    "studies without it: relative to the lowest first relaxed step).",
    "pathway_counts": "Merged pathways per system and type.",
    "validation": "NNP minima re-checked with the labeller: NNP vs labeller energy per atom (single point) and the "
    "energy drop on relaxing with the labeller (spurious above the tolerance; as in Fig. 6 of Sprueill "
    "et al.).",
}


def pool_study_outputs(store, study: str) -> dict:
    """Latest outputs by stage: pool, compare, pathways, validation (dicts or None) and
    'runs' (active and baseline SamplingDocuments without blobs)."""
    out: dict[str, Any] = {}
    for stage in ("pool", "compare", "pathways", "validation"):
        docs = latest_outputs(store, study, stage, properties=["output"])
        out[stage] = docs[-1]["output"] if docs else None
    out["runs"] = [d["output"] for d in latest_outputs(store, study, "active_sampling", properties=["output"])]
    out["runs"] += [d["output"] for d in latest_outputs(store, study, "baseline", properties=["output"])]
    return out


def plot_learning_curves(runs: list[dict], path: Path) -> str:
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        curve = [r for r in run["curve"] if r.get("val_loss") is not None]
        if not curve:
            continue
        steps_per_epoch = run["n_steps"] / max(1, run["n_epochs"])
        ax.plot(
            [steps_per_epoch * r["epoch"] for r in curve],
            [r["val_loss"] for r in curve],
            label=STRATEGY_TITLES.get(run["strategy"], run["strategy"]),
        )
    ax.set_yscale("log")
    ax.set_xlabel("optimiser steps (approx.)")
    ax.set_ylabel("validation loss")
    ax.legend()
    active = [r for r in runs if r["strategy"] == "active"]
    if active and active[0]["iterations"]:
        its = active[0]["iterations"]
        ax2.plot([i["iteration"] for i in its], [i["n_train"] + len(i["included"]) for i in its], marker="o", ms=3)
        ax2.set_xlabel("active-sampling iteration")
        ax2.set_ylabel("training frames after inclusion")
    return save_figure(fig, path)


def tree_lines(tree: list[dict], e0: float = 0.0) -> list[dict]:
    """What the energy-vs-gamma plot draws of a pathway tree (:func:`al_flows.pool_study.shear_study.tree_branches`):
    per branch ``xy`` (gamma, E - ``e0`` in eV) from its parent's last point through its own steps,
    ``width`` 0.5 + 3 * n_runs / (runs of the largest root) and ``label`` its run count."""
    total = max((b["n_runs"] for b in tree if b["parent"] is None), default=1)
    by_id = {b["branch"]: b for b in tree}
    out = []
    for b in tree:
        prof = [p[:2] for p in b["profile"]]
        parent = by_id.get(b["parent"])
        if parent is not None and parent["profile"]:
            prof = [parent["profile"][-1][:2], *prof]
        xy = np.array(prof, dtype=float).reshape(-1, 2) - [0.0, e0]
        out.append(
            {"branch": b["branch"], "xy": xy, "width": 0.5 + 3.0 * b["n_runs"] / total, "label": str(b["n_runs"])}
        )
    return out


def _draw_tree(ax, tree: list[dict], e0: float) -> None:
    """The pathway tree of one system (:func:`tree_lines`), under the pathways' points."""
    for line in tree_lines(tree, e0):
        xy = line["xy"]
        if len(xy):
            ax.plot(xy[:, 0], xy[:, 1], color="0.45", lw=line["width"], zorder=1)
            ax.annotate(line["label"], (xy[-1, 0], xy[-1, 1]), fontsize=6, color="0.2", zorder=3)


def plot_energy_vs_gamma(systems: dict, path: Path) -> str:
    """Energy vs gamma per system: the representative profile of every merged pathway, points
    coloured by FCC fraction and sized by run count, over the pathway tree (when recorded)."""
    plt = pyplot()
    names = sorted(systems)
    ncol = min(4, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    cmap, sc = plt.get_cmap("viridis"), None
    for ax, name in zip(axes.flat, names, strict=False):
        paths = systems[name]["pathways"]
        ref = systems[name].get("reference") or {}
        e0 = ref.get("energy", min((p["profile"][0][1] for p in paths if p["profile"]), default=0.0))
        if systems[name].get("tree"):
            _draw_tree(ax, systems[name]["tree"], e0)
        for p in paths:
            prof = np.array(p["profile"], dtype=float)
            if not len(prof):
                continue
            if not systems[name].get("tree"):
                ax.plot(prof[:, 0], prof[:, 1] - e0, color="0.7", lw=0.6, zorder=1)
            sc = ax.scatter(
                prof[:, 0], prof[:, 1] - e0, c=prof[:, 2], cmap=cmap, vmin=0, vmax=1, s=8 + 4 * p["n_runs"], zorder=2
            )
        ax.set_title(f"{name.rsplit('-', 1)[-1]} ({len(paths)} pathways)", fontsize=9)
        ax.set_xlabel("γ")
        ax.set_ylabel("E − E(γ=0, relaxed) (eV)" if ref else "E − E₀ (eV)")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), label="FCC fraction", shrink=0.8)
    return save_figure(fig, path)


def plot_pathway_counts(systems: dict, path: Path) -> str:
    plt = pyplot()
    names = sorted(systems)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.5))
    bottom = np.zeros(len(names))
    for kind in PATHWAY_TYPES:
        vals = np.array([systems[n]["counts_by_type"].get(kind, 0) for n in names], dtype=float)
        ax.bar(names, vals, bottom=bottom, label=kind)
        bottom += vals
    ax.set_ylabel("merged pathways")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_validation(rows: list[dict], spurious_tol: float, path: Path) -> str:
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    e_ref = np.array([r["e_ref"] / r["n_atoms"] for r in rows])
    e_nnp = np.array([r["e_nnp"] / r["n_atoms"] for r in rows])
    spur = np.array([r["spurious"] for r in rows], dtype=bool)
    ax.scatter(e_ref[~spur], e_nnp[~spur], s=14, label="holds")
    ax.scatter(e_ref[spur], e_nnp[spur], s=14, color="C3", label="spurious")
    lo, hi = float(min(e_ref.min(), e_nnp.min())), float(max(e_ref.max(), e_nnp.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("labeller energy (eV/atom)")
    ax.set_ylabel("NNP energy (eV/atom)")
    ax.legend(fontsize=8)
    drops = np.array([r["relax_drop_per_atom"] for r in rows])
    ax2.bar(range(len(rows)), drops, color=["C3" if s else "C0" for s in spur])
    ax2.axhline(spurious_tol, color="k", ls="--", lw=0.8)
    ax2.set_xlabel("minimum (highest excess energy first)")
    ax2.set_ylabel("drop on labeller relaxation (eV/atom)")
    return save_figure(fig, path)


def write_pool_report(store, config, outdir: Path) -> dict:
    """Plots, table_I.md and index.html of a pool study in ``outdir``; returns {"plots", "html"}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = pool_study_outputs(store, config.name)
    plots, notes = {}, []
    if out["runs"]:
        plots["learning_curves"] = plot_learning_curves(out["runs"], outdir / "learning_curves.png")
    else:
        notes.append("No trained models stored yet: run the study and write the report again.")
    if out["pathways"]:
        plots["energy_vs_gamma"] = plot_energy_vs_gamma(out["pathways"]["systems"], outdir / "energy_vs_gamma.png")
        plots["pathway_counts"] = plot_pathway_counts(out["pathways"]["systems"], outdir / "pathway_counts.png")
    if out["validation"] and out["validation"]["rows"]:
        v = out["validation"]
        plots["validation"] = plot_validation(v["rows"], v["spurious_tol"], outdir / "validation.png")
    table = out["compare"]["table"] if out["compare"] else ""
    if table:
        (outdir / "table_I.md").write_text(table + "\n")
    e = html.escape
    body = [f"<h1>Pool study {e(config.name)}</h1>"]
    body += [f'<p class="note">{e(n)}</p>' for n in notes]
    if out["compare"]:
        head = "".join(f"<th>{e(h)}</th>" for h in table.splitlines()[0].strip("|").split("|"))
        rows = "".join(
            "<tr>" + "".join(f"<td>{e(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
            for line in table.splitlines()[2:]
        )
        ratios = ", ".join(f"{k} = {v:.3g}" for k, v in out["compare"]["ratios"].items())
        body.append(f"<table><tr>{head}</tr>{rows}</table><p>{e(ratios)}</p>")
    if out["validation"]:
        v = out["validation"]
        body.append(
            f"<p>Validation with {e(v['labeller'])}: {v['n_minima']} minima, {v['n_agree_single']} agree within "
            f"{v['agree_tol']} eV/atom, {v['n_spurious']} spurious (drop &gt; {v['spurious_tol']} eV/atom).</p>"
        )
    body += [
        f'<figure><img src="{e(fn)}" alt="{e(k)}"><figcaption>{e(CAPTIONS[k])}</figcaption></figure>'
        for k, fn in plots.items()
    ]
    page = outdir / "index.html"
    page.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
        + e(config.name)
        + "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:.2em .5em}figure{display:inline-block;margin:1em}img{max-width:100%}"
        ".note{color:#a33}</style></head><body>" + "\n".join(body) + "</body></html>",
        encoding="utf-8",
    )
    return {"plots": plots, "html": str(page)}


def export_pool_study(store, study: str, what: str, output: str, fmt: str = "extxyz") -> list[str]:
    """Export a pool study: ``dataset`` writes the active run's final training frames (extxyz,
    with provenance) to ``output``; ``model`` writes each strategy's best weights to
    ``output/<strategy>.pt`` (load with ``al_flows.potential.ensemble.Ensemble.from_bytes``)."""
    from al_flows.frames.dataset import Dataset
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.potential.weights import weights_bytes

    def latest(stage: str) -> list[dict]:
        return [d["output"] for d in latest_outputs(store, study, stage, load=True)]

    active = latest("active_sampling")
    if not active:
        raise FileNotFoundError(f"study '{study}' has no active-sampling result stored yet; run it first")
    if what == "dataset":
        if fmt != "extxyz":
            raise ValueError(f"--format: pool studies export extxyz only, not {fmt}")
        train = set(active[-1]["train_ids"])
        frames = [a for a in frames_from_bytes(latest("pool")[-1]["frames_blob"]) if a.info["frame_id"] in train]
        Dataset(frames).write_extxyz(output)
        return [output]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for run in active[-1:] + latest("baseline"):
        path = out / f"{run['strategy']}.pt"
        path.write_bytes(weights_bytes(run["model_blob"]))
        paths.append(str(path))
    return paths
