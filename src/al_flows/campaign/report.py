"""HTML report of a campaign: plots read from the JobStore's documents, and an index page.

Only reads documents (and, for the parity plots, the final round's models and the test
set). Energies eV (errors meV/atom where marked), forces and deviations eV/Angstrom.
A round's documents are the ones of its summary's ensemble where a summary exists, so a
re-run round shows its latest run.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from al_flows.plotting import pyplot, save_figure
from al_flows.workflow.jobs import latest_outputs

STATUSES = ("accurate", "candidate", "failed")
STATUS_COLOURS = {"accurate": "tab:green", "candidate": "tab:orange", "failed": "tab:red"}
# (header, RoundSummary field, format, scale)
TABLE_COLUMNS = (
    ("round", "round", "{}", 1),
    ("labels", "n_labels_total", "{}", 1),
    ("explored", "n_explored", "{}", 1),
    ("accurate", "n_accurate", "{}", 1),
    ("candidate", "n_candidate", "{}", 1),
    ("failed", "n_failed", "{}", 1),
    ("labelled", "n_labelled", "{}", 1),
    ("accurate ratio", "accurate_ratio", "{:.3f}", 1),
    ("val force RMSE (eV/Å)", "val_force_rmse", "{:.4f}", 1),
    ("test force RMSE (eV/Å)", "test_force_rmse", "{:.4f}", 1),
    ("test energy RMSE (meV/atom)", "test_energy_rmse_per_atom", "{:.2f}", 1000),
)


# ---------------------------------------------------------------- reading documents


def latest_docs(store, campaign: str, stage: str, load: bool = False, criteria: dict | None = None) -> list[dict]:
    """Job documents of ``campaign`` at ``stage``: the highest index per uuid, output not None."""
    return latest_outputs(store, campaign, stage, criteria, None if load else ["output"], load)


def round_summaries(store, config) -> list[dict]:
    """RoundSummary outputs, one per round (the latest run), sorted by round."""
    docs = sorted(latest_docs(store, config.name, "summary"), key=lambda d: d["index"])
    return [s for _, s in sorted({d["output"]["round"]: d["output"] for d in docs}.items())]


def _per_round(docs: list[dict], summaries: list[dict], key: str = "ensemble_id") -> dict[int, list[dict]]:
    """Outputs grouped by round; where a round has a summary, only those of its ensemble
    (``key`` 'ensemble_id') or of its members (``key`` 'model_id')."""
    wanted = {s["round"]: set(s["model_ids"]) if key == "model_id" else {s["ensemble_id"]} for s in summaries}
    out: dict[int, list[dict]] = defaultdict(list)
    for d in sorted(docs, key=lambda d: d["index"]):
        o = d["output"]
        r = o["round"]
        if r in wanted and o.get(key) not in wanted[r]:
            continue
        out[r].append(o)
    return dict(sorted(out.items()))


def deviations_by_round(store, config, summaries: list[dict] | None = None) -> dict[int, dict]:
    """Per round: ``deviations`` {status: [eV/Å]} of the explored frames (None dropped),
    ``counts`` {status: n}, ``n_none`` (frames without a deviation), ``n_explored``,
    ``trust_lo`` / ``trust_hi`` (eV/Å), from the round's SelectionDocument."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    out = {}
    for r, sels in _per_round(latest_docs(store, config.name, "select"), summaries).items():
        sel = sels[-1]
        devs: dict[str, list[float]] = {s: [] for s in STATUSES}
        counts = dict.fromkeys(STATUSES, 0)
        n_none = 0
        for rec in sel.get("records", []):
            status = rec.get("status", "failed")
            counts[status] = counts.get(status, 0) + 1
            dev = rec.get("deviation")
            if dev is None or not math.isfinite(dev):
                n_none += 1
            else:
                devs.setdefault(status, []).append(float(dev))
        out[r] = {
            "deviations": devs,
            "counts": counts,
            "n_none": n_none,
            "n_explored": sum(counts.values()),
            "trust_lo": sel["trust_lo"],
            "trust_hi": sel["trust_hi"],
        }
    return out


def shear_paths(store, config, summaries: list[dict] | None = None) -> list[dict]:
    """One path per (round, explorer, parent_id, run) of explored frames that have a gamma:
    ``gamma`` (shear strain) and ``energy`` (eV) in step order, ``delta_energy`` (eV,
    relative to the path's first frame)."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    paths: dict[tuple, list[dict]] = defaultdict(list)
    for r, exps in _per_round(latest_docs(store, config.name, "explore"), summaries).items():
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
    from al_flows.frames.dataset import frames_from_bytes

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
    from ase.optimize import BFGS

    from al_flows.exploration.batched_relax import relax_batched
    from al_flows.exploration.shear import shear_strain
    from al_flows.frames.dataset import frames_from_bytes
    from al_flows.workflow.jobs import load_ensemble

    docs = latest_docs(store, config.name, "structures", load=True)
    if not docs:
        return {}
    starts = {
        str(a.info.get("structure_id") or a.info.get("frame_id")): a
        for a in frames_from_bytes(docs[-1]["output"]["structures_blob"])
    }
    summaries = round_summaries(store, config) if summaries is None else summaries
    by_round = {s["round"]: s for s in summaries}
    wanted: dict[tuple, list[str]] = defaultdict(list)
    for p in paths:
        key = reference_key(p)
        if p["parent_id"] in starts and key[3] not in wanted[key[:3]]:
            wanted[key[:3]].append(key[3])
    cache = {} if cache is None else cache
    refs: dict[tuple, dict] = {}
    for (source, r, explorer), parents in sorted(wanted.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if source == "labeller":
            if getattr(config.labeller, "kind", None) != "ase":
                continue
            ident = [config.labeller.calculator, config.labeller.kwargs, config.test_set.fmax]
        else:
            settings = next((e for e in config.explorers if e.name == explorer and hasattr(e, "fmax")), None)
            summary = by_round.get(r)
            if settings is None or summary is None or not summary.get("model_ids"):
                continue
            ident = [
                summary.get("ensemble_id"),
                summary["model_ids"],
                settings.fmax,
                settings.optimizer,
                settings.max_opt_steps,
            ]
        cache_keys = {
            pid: json.dumps([source, r, explorer, pid, ident], sort_keys=True, default=str) for pid in parents
        }
        for pid in [pid for pid in parents if cache_keys[pid] in cache]:
            refs[(source, r, explorer, pid)] = dict(cache[cache_keys[pid]])
        parents = [pid for pid in parents if cache_keys[pid] not in cache]
        if not parents:
            continue
        structures = [starts[pid] for pid in parents]
        if source == "labeller":
            from al_flows.labelling.ase import calculator_factory

            energies = []
            for atoms in structures:
                work = atoms.copy()
                work.calc = calculator_factory(config.labeller.calculator, config.labeller.kwargs)()
                BFGS(work, logfile=None).run(fmax=config.test_set.fmax, steps=500)
                energies.append(float(work.get_potential_energy()))
        else:
            train = latest_docs(store, config.name, "train", load=True, criteria={"metadata.round": r})
            models = {d["output"]["model_id"]: d["output"] for d in sorted(train, key=lambda d: d["index"])}
            if any(m not in models for m in summary["model_ids"]):
                continue
            ensemble = load_ensemble([models[m] for m in summary["model_ids"]])
            relaxed = relax_batched(
                structures, ensemble, fmax=settings.fmax, max_steps=settings.max_opt_steps, optimizer=settings.optimizer
            )
            energies = [res.energy if res.finite else math.nan for res in relaxed]
        for pid, atoms, energy in zip(parents, structures, energies, strict=True):
            if math.isfinite(energy):
                refs[(source, r, explorer, pid)] = {
                    "gamma": shear_strain(atoms.cell[:]),
                    "energy": energy,
                    "n_atoms": len(atoms),
                }
                cache[cache_keys[pid]] = dict(refs[(source, r, explorer, pid)])
    return refs


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


def training_curves(store, config, summaries: list[dict] | None = None) -> dict[int, list[dict]]:
    """Per round, one entry per member: ``member``, ``epoch`` and ``val_force_rmse`` (eV/Å) lists."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    out = {}
    for r, members in _per_round(latest_docs(store, config.name, "train"), summaries, key="model_id").items():
        out[r] = [
            {
                "member": m["member"],
                "epoch": [c["epoch"] for c in m.get("curve", []) if c.get("val_force_rmse") is not None],
                "val_force_rmse": [
                    c["val_force_rmse"] for c in m.get("curve", []) if c.get("val_force_rmse") is not None
                ],
            }
            for m in sorted(members, key=lambda m: m["member"])
        ]
    return out


def parity_data(store, config, summary: dict) -> dict | None:
    """The ensemble of ``summary``'s round on the fixed test set: labelled and predicted energy
    per atom (eV/atom) and force components (eV/Å), with their RMSEs (energy meV/atom,
    force eV/Å); None where the models or the test set are not stored."""
    from al_flows.frames.dataset import frames_from_bytes
    from al_flows.workflow.jobs import load_ensemble

    train = latest_docs(store, config.name, "train", load=True, criteria={"metadata.round": summary["round"]})
    by_id = {d["output"]["model_id"]: d["output"] for d in sorted(train, key=lambda d: d["index"])}
    if not summary["model_ids"] or any(m not in by_id for m in summary["model_ids"]):
        return None
    test = store.query_one({"uuid": summary["test_uuid"]}, load=True, sort={"index": -1})
    if test is None or test.get("output") is None:
        return None
    frames = frames_from_bytes(test["output"]["frames_blob"])
    if not frames:
        return None
    pred = load_ensemble([by_id[m] for m in summary["model_ids"]]).predict(frames)
    n_atoms = np.array([len(a) for a in frames])
    e_ref = np.array([a.get_potential_energy() for a in frames]) / n_atoms
    e_pred = pred.mean_energies / n_atoms
    f_ref = np.concatenate([a.get_forces() for a in frames]).ravel()
    f_pred = np.concatenate(pred.mean_forces).ravel()
    from al_flows.validation.heldout import subset_of

    subsets = np.array([subset_of(a) for a in frames])
    return {
        "round": summary["round"],
        "energy_subset": subsets,
        "force_subset": np.repeat(subsets, 3 * n_atoms),
        "energy_label": e_ref,
        "energy_pred": e_pred,
        "energy_rmse_mev": float(np.sqrt(np.mean((e_pred - e_ref) ** 2)) * 1000),
        "force_label": f_ref,
        "force_pred": f_pred,
        "force_rmse": float(np.sqrt(np.mean((f_pred - f_ref) ** 2))),
    }


# ---------------------------------------------------------------- plots


def _round_colours(rounds: list[int]) -> dict[int, tuple]:
    cmap = pyplot().get_cmap("viridis")
    n = max(len(rounds) - 1, 1)
    return {r: cmap(0.85 * i / n) for i, r in enumerate(sorted(rounds))}


def plot_errors(summaries: list[dict], path: Path) -> str:
    """Val/test force RMSE (eV/Å, left) and test energy RMSE (meV/atom, right) per round."""
    plt = pyplot()
    rounds = [s["round"] for s in summaries]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(
        rounds, [s["val_force_rmse"] for s in summaries], "o-", color="tab:blue", label="val force RMSE (members' mean)"
    )
    ax.plot(
        rounds,
        [s["test_force_rmse"] for s in summaries],
        "s-",
        color="tab:orange",
        label="test force RMSE (ensemble mean)",
    )
    ax.set_xlabel("round")
    ax.set_ylabel("force RMSE (eV/Å)")
    ax.set_xticks(rounds)
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(
        rounds,
        [1000 * s["test_energy_rmse_per_atom"] for s in summaries],
        "^--",
        color="tab:green",
        label="test energy RMSE",
    )
    ax2.set_ylabel("energy RMSE (meV/atom)", color="tab:green")
    ax2.tick_params(axis="y", colors="tab:green")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="best", fontsize=8)
    ax.set_title("Errors per round")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _dev_bins(devs: dict[int, dict]) -> tuple[np.ndarray, bool]:
    """Shared histogram bin edges (eV/Å) over the deviations and the trust levels near them
    (within a factor 10); logarithmic when all are positive and span more than a decade."""
    values = [v for d in devs.values() for vs in d["deviations"].values() for v in vs]
    if not values:
        values = [d[k] for d in devs.values() for k in ("trust_lo", "trust_hi")]
    lo, hi = min(values), max(values)
    trust = [d[k] for d in devs.values() for k in ("trust_lo", "trust_hi")]
    values += [t for t in trust if (lo > 0 and lo / 10 <= t < lo) or (hi < t <= 10 * hi)]
    lo, hi = min(values), max(values)
    if lo > 0 and hi / lo > 10:
        return np.geomspace(lo / 1.2, hi * 1.2, 31), True
    return np.linspace(0.0, hi * 1.05 or 1.0, 31), False


def plot_deviation_hists(devs: dict[int, dict], path: Path) -> str:
    """One panel per round: stacked histogram of explored-frame deviations (eV/Å) by status,
    trust levels as vertical lines, status counts in the legend."""
    plt = pyplot()
    rounds = sorted(devs)
    ncol = min(len(rounds), 3)
    nrow = math.ceil(len(rounds) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False, sharex=True)
    bins, log = _dev_bins(devs)
    for ax in axes.ravel()[len(rounds) :]:
        ax.set_visible(False)
    for ax, r in zip(axes.ravel(), rounds, strict=False):  # the grid may have spare axes
        d = devs[r]
        labels = []
        for s in STATUSES:
            extra = f", {d['n_none']} w/o deviation" if s == "failed" and d["n_none"] else ""
            labels.append(f"{s}: {d['counts'].get(s, 0)}{extra}")
        ax.hist(
            [d["deviations"][s] for s in STATUSES],
            bins=bins,
            stacked=True,
            color=[STATUS_COLOURS[s] for s in STATUSES],
            label=labels,
        )
        for key, ls in (("trust_lo", "--"), ("trust_hi", ":")):
            t = d[key]
            if bins[0] <= t <= bins[-1]:
                ax.axvline(t, color="k", ls=ls, lw=1, label=f"{key} = {t:g} eV/Å")
            else:
                ax.plot([], [], color="k", ls=ls, lw=1, label=f"{key} = {t:g} eV/Å (off scale)")
        if log:
            ax.set_xscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.set_title(f"round {r}: {d['n_explored']} explored frames", fontsize=10)
        ax.set_xlabel("max force deviation (eV/Å)")
        ax.set_ylabel("frames")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Model deviation of explored frames")
    fig.tight_layout()
    return save_figure(fig, path)


SUBSET_COLOURS = {"relaxed": "tab:blue", "nonequilibrium": "tab:orange"}


def _parity(ax, label, pred, unit: str, rmse_text: str, title: str, subsets=None) -> None:
    lo, hi = float(min(label.min(), pred.min())), float(max(label.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    few = len(label) < 500
    subsets = np.full(len(label), "relaxed") if subsets is None else np.asarray(subsets)
    for name in sorted(set(subsets.tolist())):  # one colour per test subset
        mask = subsets == name
        ax.scatter(
            label[mask],
            pred[mask],
            s=20 if few else 3,
            alpha=0.8 if few else 0.35,
            color=SUBSET_COLOURS.get(name, "tab:green"),
            edgecolors="none",
            label=f"{name} ({int(mask.sum())})",
        )
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"labelled ({unit})")
    ax.set_ylabel(f"predicted, ensemble mean ({unit})")
    ax.set_title(f"{title}\nRMSE {rmse_text}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def plot_parity(parity: dict, outdir: Path) -> dict[str, str]:
    """Parity plots of the final ensemble on the test set: energy per atom (eV/atom) and force components (eV/Å)."""
    plt = pyplot()
    n = len(parity["energy_label"])
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    _parity(
        ax,
        parity["energy_label"],
        parity["energy_pred"],
        "eV/atom",
        f"{parity['energy_rmse_mev']:.2f} meV/atom",
        f"Test energy per atom, round {parity['round']} ({n} frames)",
        parity.get("energy_subset"),
    )
    energy = save_figure(fig, outdir / "parity_energy.png")
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    _parity(
        ax,
        parity["force_label"],
        parity["force_pred"],
        "eV/Å",
        f"{parity['force_rmse']:.4f} eV/Å",
        f"Test force components, round {parity['round']} ({len(parity['force_label'])} values)",
        parity.get("force_subset"),
    )
    forces = save_figure(fig, outdir / "parity_forces.png")
    return {"parity_energy": energy, "parity_forces": forces}


def plot_energy_vs_gamma(data: list[dict], path: Path) -> str:
    """Energy per atom relative to the relaxed unsheared starting structure (eV/atom) vs shear strain
    gamma (:func:`energy_vs_gamma_data`): one line per explored (round, parent, run), coloured by round,
    and the labeller's own paths of the test set as black dashed reference lines."""
    plt = pyplot()
    explored = [d for d in data if d["source"] != "labeller"]
    labeller = [d for d in data if d["source"] == "labeller"]
    colours = _round_colours(sorted({d["round"] for d in explored}))
    parents = list(dict.fromkeys(d["parent_id"] for d in data))
    styles = ["-", "--", ":", "-."]
    markers = ["s", "^", "v", "D"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for d in explored:
        ax.plot(
            d["gamma"],
            d["de_per_atom"],
            marker="o",
            ms=3,
            lw=1,
            alpha=0.75,
            color=colours[d["round"]],
            ls=styles[parents.index(d["parent_id"]) % len(styles)],
        )
    for d in labeller:
        ax.plot(
            d["gamma"],
            d["de_per_atom"],
            color="black",
            ls="--",
            lw=1.2,
            ms=4,
            mfc="none",
            marker=markers[parents.index(d["parent_id"]) % len(markers)],
        )
    for r, c in colours.items():
        ax.plot([], [], "o-", ms=3, color=c, label=f"round {r} (ensemble)")
    if labeller:
        ax.plot([], [], "ks--", ms=4, mfc="none", label="labeller (test set)")
    if 1 < len(parents) <= len(styles):
        for i, parent in enumerate(parents):
            ax.plot(
                [],
                [],
                color="grey",
                ls=styles[i],
                marker=markers[i] if labeller else None,
                mfc="none",
                label=parent if len(parent) <= 32 else f"structure {i + 1} ({parent[:12]}…)",
            )
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("shear strain γ")
    ax.set_ylabel("(E − E(γ = 0, relaxed)) / N (eV/atom)")
    ax.set_title(f"Shear paths: energy per atom vs γ ({len(explored)} explored, {len(labeller)} labeller)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_training_curves(curves: dict[int, list[dict]], path: Path) -> str:
    """Validation force RMSE (eV/Å) per epoch of every member, one panel per round (shared log y axis)."""
    plt = pyplot()
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    rounds = sorted(curves)
    ncol = min(len(rounds), 3)
    nrow = math.ceil(len(rounds) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(rounds) :]:
        ax.set_visible(False)
    for ax, r in zip(axes.ravel(), rounds, strict=False):  # the grid may have spare axes
        for m in curves[r]:
            if m["epoch"]:
                ax.plot(m["epoch"], m["val_force_rmse"], lw=1.2, label=f"member {m['member']}")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"round {r}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val force RMSE (eV/Å)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Training curves")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------- page


def plot_calibration(cals: list[dict], path: Path) -> str:
    """Deviation vs true error of each round's labels, the fitted relation and the levels it set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colours = _round_colours([c["round"] for c in cals])
    for c in cals:
        pts = [(p["deviation"], p["error"]) for p in c["points"] if p["deviation"] > 0 and p["error"] > 0]
        if not pts:
            continue
        x, y = np.array(pts).T
        col = colours[c["round"]]
        ax.scatter(x, y, s=14, color=col, label=f"round {c['round']}" + ("" if c["applied"] else " (fit not used)"))
        if np.isfinite(c["fit"].get("a", np.nan)):
            xs = np.geomspace(x.min(), x.max(), 50)
            ax.plot(xs, c["fit"]["a"] * xs ** c["fit"]["b"], color=col, lw=1)
        if c["applied"]:
            ax.axvline(c["trust_lo_next"], color=col, ls=":", lw=0.8)
    if cals:
        ax.axhline(cals[-1]["target_error_lo"], color="k", ls="--", lw=0.8, label="target error lo")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model deviation at selection (eV/Å)")
    ax.set_ylabel("max atomic force error of the ensemble mean (eV/Å)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_autotest(doc: dict, path: Path) -> str:
    """Per element: EOS and GSFE curves of the reference and the model."""
    plt = pyplot()
    elements = sorted(doc["results"])
    fig, axes = plt.subplots(len(elements), 2, figsize=(10, 3.6 * len(elements)), squeeze=False)
    for (ax_eos, ax_sf), el in zip(axes, elements, strict=True):
        res = doc["results"][el]
        for who, style in (("reference", "k-"), ("model", "C1o--")):
            eos = res[who]["eos"]
            ax_eos.plot(eos["volumes"], eos["energies"], style, label=who, ms=4)
            sf = res[who].get("stacking_fault")
            if sf:
                ax_sf.plot(sf["fractions"], sf["gamma"], style, label=who, ms=4)
        ax_eos.set_xlabel("volume (Å³/atom)")
        ax_eos.set_ylabel("energy (eV/atom)")
        ax_eos.set_title(f"{el}: equation of state ({res['reference']['eos']['lattice']})", fontsize=9)
        ax_sf.set_xlabel("displacement / b_p along <112>")
        ax_sf.set_ylabel("GSFE (mJ/m²)")
        ax_sf.set_title(f"{el}: (111) generalised stacking fault", fontsize=9)
        ax_eos.legend(fontsize=8)
    return save_figure(fig, path)


CAPTIONS = {
    "calibration": "Trust-level calibration: each round's labelled frames (model deviation at selection vs the true largest force error), the fitted relation, and the next round's trust_lo (dotted).",
    "autotest": "Autotest of the final potential against the reference: equation of state and generalised stacking-fault path per element.",
    "errors_per_round": "Force RMSE on the members' validation splits (mean over members) and of the ensemble mean on "
    "the fixed test set (eV/Å, left axis); test energy RMSE (meV/atom, right axis).",
    "deviation_hist": "Max force deviation (eV/Å) of every explored frame per round, stacked by selection status; "
    "dashed/dotted lines: trust_lo/trust_hi. Frames without a deviation count as failed but are not drawn.",
    "parity_energy": "Final round's ensemble-mean energy per atom vs the labeller's on the fixed test set, coloured by subset (relaxed, nonequilibrium).",
    "parity_forces": "Final round's ensemble-mean force components vs the labeller's on the fixed test set, coloured by subset (relaxed, nonequilibrium).",
    "energy_vs_gamma": "Shear paths: energy per atom of each relaxed frame relative to its starting structure relaxed "
    "unsheared (γ = 0) by the same calculator (eV/atom) vs shear strain γ; coloured: the ensemble's "
    "exploration, one line per round, starting structure and run; black dashed: the labeller's own "
    "paths in the test set.",
    "training_curves": "Validation force RMSE (eV/Å) per epoch of every ensemble member.",
}


def _fmt(value, fmt: str, scale: float) -> str:
    if value is None:
        return ""
    try:
        return fmt.format(value * scale if scale != 1 else value)
    except (TypeError, ValueError):
        return str(value)


def campaign_status(store, config) -> str:
    """One line: finished (converged or not) after how many rounds, or still running."""
    results = [d["output"] for d in latest_docs(store, config.name, "round") if d["output"].get("n_rounds") is not None]
    if not results:
        return "not finished (or still running)"
    res = results[-1]
    return f"finished after {res['n_rounds']} round(s), {'converged' if res['converged'] else 'not converged'}"


def render_html(config, summaries: list[dict], plots: dict[str, str], notes: list[str], status: str = "") -> str:
    """The index page: title, a table of rounds, notes, and every plot with its caption."""
    e = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{e(_fmt(s.get(key), fmt, scale))}</td>" for _, key, fmt, scale in TABLE_COLUMNS)
        + "</tr>"
        for s in summaries
    )
    head = "".join(f"<th>{e(h)}</th>" for h, *_ in TABLE_COLUMNS)
    table = f"<table>\n<tr>{head}</tr>\n{rows}\n</table>" if summaries else ""
    figures = "\n".join(
        f'<figure><img src="{e(fn)}" alt="{e(name)}"><figcaption>{e(CAPTIONS.get(name, name))}</figcaption></figure>'
        for name, fn in plots.items()
    )
    notes_html = "\n".join(f'<p class="note">{e(n)}</p>' for n in notes)
    title = f"Active-learning campaign {config.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; max-width: 100%; }}
figure img {{ max-width: 100%; }}
figcaption {{ font-size: 0.9em; max-width: 40em; }}
.note {{ color: #a33; }}
</style></head>
<body>
<h1>{e(title)}</h1>
<p>{len(summaries)} round(s) stored{"; campaign " + e(status) if status else ""}. Energies eV, forces and deviations eV/Å.</p>
{notes_html}
{table}
{figures}
</body></html>
"""


def write_report(store, config, outdir: Path) -> dict:
    """Write the plots (PNG) and ``index.html`` of a campaign into ``outdir`` (created);
    return ``{"plots": {name: filename}, "html": path of index.html}``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summaries = round_summaries(store, config)
    plots: dict[str, str] = {}
    notes: list[str] = []
    if not summaries:
        notes.append(
            "No completed rounds stored yet: run the campaign (or wait for its first round) and write the report again."
        )
    else:
        plots["errors_per_round"] = plot_errors(summaries, outdir / "errors_per_round.png")
    devs = deviations_by_round(store, config, summaries)
    if devs:
        plots["deviation_hist"] = plot_deviation_hists(devs, outdir / "deviation_hist.png")
    if summaries:
        parity = parity_data(store, config, summaries[-1])
        if parity is None:
            notes.append("Parity plots skipped: the final round's models or the test set are not stored.")
        else:
            plots.update(plot_parity(parity, outdir))
    paths = shear_paths(store, config, summaries)
    if paths:
        paths += labeller_shear_paths(store, config)
        cache_file = outdir / "unsheared_references.json"
        try:
            cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
        except ValueError:  # a damaged cache is rebuilt
            cache = {}
        data = energy_vs_gamma_data(paths, unsheared_references(store, config, paths, summaries, cache))
        cache_file.write_text(json.dumps(cache, indent=1) + "\n")
        n_explored = sum(1 for d in data if d["source"] == "ensemble")
        if n_explored:
            plots["energy_vs_gamma"] = plot_energy_vs_gamma(data, outdir / "energy_vs_gamma.png")
        if n_explored < sum(1 for p in paths if p["source"] == "ensemble"):
            notes.append(
                "Some shear paths are not in the energy-vs-γ plot: their round's models or starting structure "
                "are not stored, or relaxing the unsheared structure failed."
            )
    elif devs:
        notes.append("No explored frames with a shear strain: energy-vs-γ plot skipped.")
    curves = training_curves(store, config, summaries)
    if any(m["epoch"] for ms in curves.values() for m in ms):
        plots["training_curves"] = plot_training_curves(curves, outdir / "training_curves.png")
    cals = [d["output"] for d in latest_docs(store, config.name, "calibrate")]
    if cals:
        plots["calibration"] = plot_calibration(sorted(cals, key=lambda c: c["round"]), outdir / "calibration.png")
    autotests = latest_docs(store, config.name, "autotest")
    if autotests:
        doc = autotests[-1]["output"]
        plots["autotest"] = plot_autotest(doc, outdir / "autotest.png")
        (outdir / "autotest.md").write_text(doc["table"] + "\n")
        notes.append(
            f"Autotest against {doc['reference']}: {'all rows within tolerance' if doc['passed'] else 'some rows outside tolerance'} (autotest.md)."
        )
    page = outdir / "index.html"
    page.write_text(render_html(config, summaries, plots, notes, campaign_status(store, config)), encoding="utf-8")
    return {"plots": plots, "html": str(page)}
