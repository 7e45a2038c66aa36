"""The plots of the campaign report (PNG, matplotlib's Agg backend): errors per round, deviation
histograms, parity, energy vs shear strain, training curves, autotest and the convergence properties
per round (the calibration figure: :mod:`al_flows.campaign.report_calibration`).

Energies eV (errors meV/atom where marked), forces and deviations eV/Angstrom.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from al_flows.campaign.report_data import STATUSES
from al_flows.plotting import pyplot, save_figure

__all__ = [
    "round_colours",
    "plot_errors",
    "deviation_bin_edges",
    "deviation_hist_figure",
    "plot_deviation_hists",
    "subset_draw_order",
    "parity_figures",
    "plot_parity",
    "energy_vs_gamma_figure",
    "plot_energy_vs_gamma",
    "plot_training_curves",
    "plot_autotest",
    "plot_stages",
    "property_series",
    "plot_properties",
]

STATUS_COLOURS = {"accurate": "tab:green", "candidate": "tab:orange", "failed": "tab:red"}
SUBSET_COLOURS = {"relaxed": "tab:blue", "nonequilibrium": "tab:orange"}


def round_colours(rounds: list[int]) -> dict[int, tuple]:
    """A colour per round (viridis, in round order), shared by the figures that colour by round."""
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
    _twin_legend(ax, ax2)
    ax.set_title("Errors per round")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _twin_legend(ax, ax2) -> None:
    """One legend on ``ax`` for the lines of ``ax`` and of its twin ``ax2``."""
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="best", fontsize=8)


def plot_stages(summaries: list[dict], labels: list[str], path: Path) -> str:
    """The exploration stage (level) of every round, labelled with its conditions, and the round's
    accurate and failed ratios (right axis)."""
    plt = pyplot()
    rounds = [s["round"] for s in summaries]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.step(rounds, [s.get("stage") or 0 for s in summaries], "o-", where="post", color="tab:purple", label="stage")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(-0.5, len(labels) - 0.5)
    ax.set_xlabel("round")
    ax.set_xticks(rounds)
    ax2 = ax.twinx()
    explored = [max(s["n_explored"], 1) for s in summaries]
    ax2.plot(rounds, [s["accurate_ratio"] for s in summaries], "s--", color="tab:green", label="accurate ratio")
    ax2.plot(
        rounds,
        [s["n_failed"] / n for s, n in zip(summaries, explored, strict=True)],
        "^:",
        color="tab:red",
        label="failed ratio",
    )
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("fraction of explored frames")
    _twin_legend(ax, ax2)
    ax.set_title("Exploration stage per round")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def deviation_bin_edges(devs: dict[int, dict], n_bins: int = 30) -> tuple[np.ndarray, bool]:
    """Shared histogram bin edges (eV/Å) over the deviations and the trust levels near them
    (within a factor 10), and whether they are logarithmic (all values positive and spanning more
    than a decade). Every trust level inside the range is an edge, exactly: a bar never holds
    frames of two selection classes. About ``n_bins`` bins, spread over the pieces between trust
    levels in proportion to their (log) width, at least one each."""
    values = [v for d in devs.values() for vs in d["deviations"].values() for v in vs]
    if not values:
        values = [d[k] for d in devs.values() for k in ("trust_lo", "trust_hi")]
    lo, hi = min(values), max(values)
    trust = [d[k] for d in devs.values() for k in ("trust_lo", "trust_hi")]
    values += [t for t in trust if (lo > 0 and lo / 10 <= t < lo) or (hi < t <= 10 * hi)]
    lo, hi = min(values), max(values)
    log = bool(lo > 0 and hi / lo > 10)
    first, last = (lo / 1.2, hi * 1.2) if log else (0.0, hi * 1.05 or 1.0)
    knots = [first, *sorted({float(t) for t in trust if first < t < last}), last]
    scale = np.log(knots) if log else np.asarray(knots)
    widths = np.diff(scale) / (scale[-1] - scale[0])
    edges: list[float] = []
    for a, b, w in zip(knots[:-1], knots[1:], widths, strict=True):
        n = max(1, round(n_bins * w))
        piece = np.geomspace(a, b, n + 1) if log else np.linspace(a, b, n + 1)
        edges += [a, *piece[1:-1].tolist()]  # the knots themselves, not a rounded copy
    return np.array([*edges, last]), log


def deviation_hist_figure(devs: dict[int, dict]):
    """The figure of :func:`plot_deviation_hists`: one panel per round, each with its own x tick
    labels (same bins and limits on every panel) and its legend outside the axes, right of them."""
    plt = pyplot()
    rounds = sorted(devs)
    ncol = min(len(rounds), 3)
    nrow = math.ceil(len(rounds) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.4 * ncol, 3.4 * nrow), squeeze=False)
    bins, log = deviation_bin_edges(devs)
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
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle("Model deviation of explored frames")
    fig.tight_layout()
    return fig


def plot_deviation_hists(devs: dict[int, dict], path: Path) -> str:
    """One panel per round: stacked histogram of explored-frame deviations (eV/Å) by status,
    trust levels as vertical lines (bin edges, :func:`deviation_bin_edges`), status counts in the
    legend."""
    return save_figure(deviation_hist_figure(devs), path)


def _parity(ax, label, pred, unit: str, rmse_text: str, title: str, subsets=None) -> None:
    lo, hi = float(min(label.min(), pred.min())), float(max(label.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    few = len(label) < 500
    subsets = np.full(len(label), "relaxed") if subsets is None else np.asarray(subsets)
    for i, name in enumerate(subset_draw_order(subsets)):  # one colour per test subset
        mask = subsets == name
        ax.scatter(
            label[mask],
            pred[mask],
            s=20 if few else 3,
            alpha=0.8 if few else 0.35,
            color=SUBSET_COLOURS.get(name, "tab:green"),
            edgecolors="none",
            label=f"{name} ({int(mask.sum())})",
            zorder=1.0 + 0.1 * i,  # later (smaller) subsets on top; all under the y = x line (zorder 2)
        )
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"labelled ({unit})")
    ax.set_ylabel(f"predicted, ensemble mean ({unit})")
    ax.set_title(f"{title}\nRMSE {rmse_text}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def subset_draw_order(subsets) -> list[str]:
    """The test subsets in the order they are drawn: the largest first, so that the smaller ones
    (a few relaxed frames among many nonequilibrium ones) lie on top; ties by name."""
    names, counts = np.unique(np.asarray(subsets), return_counts=True)
    return [str(n) for _, n in sorted(zip(-counts, names.tolist(), strict=True))]


def parity_figures(parity: dict) -> dict:
    """The figures of :func:`plot_parity`, by plot name ('parity_energy', 'parity_forces')."""
    plt = pyplot()
    n = len(parity["energy_label"])
    energy, ax = plt.subplots(figsize=(4.8, 4.8))
    _parity(
        ax,
        parity["energy_label"],
        parity["energy_pred"],
        "eV/atom",
        f"{parity['energy_rmse_mev']:.2f} meV/atom",
        f"Test energy per atom, round {parity['round']} ({n} frames)",
        parity.get("energy_subset"),
    )
    forces, ax = plt.subplots(figsize=(4.8, 4.8))
    _parity(
        ax,
        parity["force_label"],
        parity["force_pred"],
        "eV/Å",
        f"{parity['force_rmse']:.4f} eV/Å",
        f"Test force components, round {parity['round']} ({len(parity['force_label'])} values)",
        parity.get("force_subset"),
    )
    return {"parity_energy": energy, "parity_forces": forces}


def plot_parity(parity: dict, outdir: Path) -> dict[str, str]:
    """Parity plots of the final ensemble on the test set: energy per atom (eV/atom) and force
    components (eV/Å), each subset in its colour, the smaller subsets drawn over the larger."""
    return {name: save_figure(fig, outdir / f"{name}.png") for name, fig in parity_figures(parity).items()}


def plot_energy_vs_gamma(data: list[dict], path: Path) -> str:
    """Energy per atom relative to the relaxed unsheared starting structure (eV/atom) vs shear strain
    gamma (:func:`energy_vs_gamma_data`): one line per explored (round, parent, run), coloured by round,
    and the labeller's own paths of the test set as black dashed reference lines."""
    return save_figure(energy_vs_gamma_figure(data), path)


def energy_vs_gamma_figure(data: list[dict]):
    """The figure of :func:`plot_energy_vs_gamma`; its title counts paths and their frames (the
    first point of a path is its unsheared reference, not a frame of the path)."""
    plt = pyplot()
    explored = [d for d in data if d["source"] != "labeller"]
    labeller = [d for d in data if d["source"] == "labeller"]
    colours = round_colours(sorted({d["round"] for d in explored}))
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
    ax.set_title(
        f"Shear paths: energy per atom vs γ\n{_paths_and_frames(explored)} explored, "
        f"{_paths_and_frames(labeller)} of the labeller",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _paths_and_frames(paths: list[dict]) -> str:
    """'N path(s), M frames' of energy-vs-gamma paths (each one's first point is its reference)."""
    return f"{len(paths)} path(s), {sum(len(d['gamma']) - 1 for d in paths)} frames"


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


def property_series(summaries: list[dict]) -> dict[str, dict]:
    """Per convergence property (``'<element> <name>'``), its rows across the rounds: ``round``,
    ``mean``, ``spread``, ``members``, ``reference``, ``tolerance``, ``within`` lists and the ``unit``."""
    out: dict[str, dict] = {}
    for s in summaries:
        for p in s.get("properties") or []:
            series = out.setdefault(p["property"], {"unit": p["unit"], "round": []})
            series["round"].append(s["round"])
            for key in ("mean", "spread", "members", "reference", "tolerance", "within"):
                series.setdefault(key, []).append(p[key])
    return out


def plot_properties(summaries: list[dict], path: Path) -> str:
    """One panel per convergence property: each round's ensemble mean with its spread over the members
    (error bar; members as dots; filled marker: within tolerance), the reference (dashed) and the
    band reference +- tolerance (shaded)."""
    plt = pyplot()
    series = property_series(summaries)
    names = list(series)
    ncol = min(len(names), 3)
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names, strict=False):  # the grid may have spare axes
        d = series[name]
        rounds, ref, tol = np.array(d["round"]), np.array(d["reference"]), np.array(d["tolerance"])
        edges = np.ravel([[r - 0.4, r + 0.4] for r in rounds])  # the band of each round's tolerance
        lo, hi = np.repeat(ref - tol, 2), np.repeat(ref + tol, 2)
        ax.fill_between(edges, lo, hi, color="tab:green", alpha=0.2, lw=0, label="reference ± tolerance")
        ax.plot(edges, np.repeat(ref, 2), "k--", lw=1, label="reference")
        for r, members in zip(rounds, d["members"], strict=True):
            ax.plot([r] * len(members), members, ".", color="0.5", ms=4)
        ax.errorbar(rounds, d["mean"], yerr=d["spread"], fmt="-", color="tab:blue", capsize=3, label="mean ± spread")
        inside, mean = np.array(d["within"], dtype=bool), np.array(d["mean"])
        for mask, face, label in ((inside, "tab:blue", "within"), (~inside, "white", "not within")):
            if mask.any():
                ax.plot(rounds[mask], mean[mask], "o", mfc=face, color="tab:blue", label=label)
        ax.set_xticks(rounds)
        ax.set_xlabel("round")
        ax.set_ylabel(d["unit"])
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Convergence properties per round")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_autotest(doc: dict, path: Path) -> str:
    """Per element: EOS and GSFE curves of the reference and the model, and the point-defect (eV) and
    surface (J/m^2) energies of both as bars."""
    plt = pyplot()
    elements = sorted(doc["results"])
    fig, axes = plt.subplots(len(elements), 3, figsize=(15, 3.6 * len(elements)), squeeze=False)
    for (ax_eos, ax_sf, ax_def), el in zip(axes, elements, strict=True):
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
        _defect_bars(ax_def, el, res["rows"])
    return save_figure(fig, path)


def _defect_bars(ax, element: str, rows: list[dict]) -> None:
    """Reference and model values of the vacancy, interstitial (eV) and surface (J/m^2) rows as bars."""
    picked = [r for r in rows if r["property"].split("[")[0] in ("E_vac", "E_int", "E_surf")]
    x = np.arange(len(picked))
    for shift, who, colour in ((-0.2, "reference", "k"), (0.2, "model", "C1")):
        ax.bar(x + shift, [r[who] for r in picked], width=0.4, color=colour, label=who)
    ax.set_xticks(x, [r["property"] for r in picked], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("eV (E_vac, E_int) / J/m² (E_surf)")
    ax.set_title(f"{element}: point defects and surfaces", fontsize=9)
    if picked:
        ax.legend(fontsize=8)
