"""HTML report of a campaign: plots read from the JobStore's documents, and an index page.

What is read is :mod:`al_flows.campaign.report_data` and :mod:`al_flows.campaign.shear_paths`, the
plots are :mod:`al_flows.campaign.report_plots`; here: the page and writing it all.

Only reads documents (and, for the parity plots, the final round's models and the test
set). Energies eV (errors meV/atom where marked), forces and deviations eV/Angstrom.
A round's documents are the ones of its summary's ensemble where a summary exists, so a
re-run round shows its latest run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.report_calibration import plot_calibration
from al_flows.campaign.report_data import (
    calibration_records,
    campaign_status,
    deviations_by_round,
    latest_docs,
    parity_data,
    round_summaries,
    training_curves,
)
from al_flows.campaign.report_plots import (
    plot_autotest,
    plot_deviation_hists,
    plot_energy_vs_gamma,
    plot_errors,
    plot_parity,
    plot_properties,
    plot_stages,
    plot_training_curves,
)
from al_flows.campaign.report_timing import plot_stage_times
from al_flows.campaign.shear_paths import energy_vs_gamma_data, labeller_shear_paths, shear_paths, unsheared_references
from al_flows.exploration.stages import stage_labels

__all__ = ["TABLE_COLUMNS", "UNITS", "CAPTIONS", "render_html", "write_report", "autotest_note"]

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
    ("median survival (ps)", "median_survival_ps", "{:.2f}", 1),
    ("stage", "stage", "{}", 1),
    ("val force RMSE (eV/Å)", "val_force_rmse", "{:.4f}", 1),
    ("test force RMSE (eV/Å)", "test_force_rmse", "{:.4f}", 1),
    ("test energy RMSE (meV/atom)", "test_energy_rmse_per_atom", "{:.2f}", 1000),
    ("member disagreement (eV/Å)", "member_disagreement", "{:.4f}", 1),
    ("properties within", "properties_met", "{}", 1),
)


#: the units line above the table: what the table's columns and the plots' captions use
UNITS = (
    "Units as in each column header and caption: forces, force errors and deviations eV/Å; "
    "energy errors meV/atom; energies per atom eV/atom; times ps."
)


CAPTIONS = {
    "stage_times": "Where each round's time went: wall time (s) of each stage's jobs stacked, the overhead between "
    "jobs (store, bookkeeping, reports) on top, and the worker's CPU time over all threads (bar marker).",
    "calibration": "Calibration of the ensemble deviation (methods.md, \"Calibrated error bounds\"). Left: deviation "
    "ε against the true largest atomic force error of the ensemble mean (eV/Å, log-log), both measured by the round's "
    "ensemble before it trained on the frames: each round's labelled frames (filled circles: selected; open squares: "
    "the uniformly drawn random sample) and test frames (crosses), coloured by round; dashed: the bound q·ε in force "
    "during the round (fitted on the residuals of the rounds before); dash-dot: the bound fitted on every residual so "
    "far, which the next round reads; with selection.calibrate also the fitted relation (solid), the next round's "
    "trust_lo (dotted, vertical) and the target error (dotted, horizontal). Right: per round, the share of test frames "
    "whose error is at most the bound (observed coverage) against the bound's nominal coverage; on the diagonal the "
    "bound is calibrated, below it the bound is too low (area: the miscalibration area); open markers: too few "
    "residuals for a finite bound at that coverage.",
    "autotest": "Autotest of the final potential against the reference: equation of state, generalised "
    "stacking-fault path, and vacancy, interstitial (eV) and surface (J/m²) energies per element.",
    "errors_per_round": "Force RMSE on the members' validation splits (mean over members) and of the ensemble mean on "
    "the fixed test set (eV/Å, left axis); test energy RMSE (meV/atom, right axis).",
    "deviation_hist": "Max force deviation (eV/Å) of every explored frame per round, stacked by selection status; "
    "dashed/dotted lines: trust_lo/trust_hi, which are bin edges (no bar mixes two classes). Frames without a "
    "deviation count as failed but are not drawn.",
    "parity_energy": "Final round's ensemble-mean energy per atom vs the labeller's on the fixed test set, coloured "
    "by subset (relaxed, nonequilibrium; the smaller subset drawn on top).",
    "parity_forces": "Final round's ensemble-mean force components vs the labeller's on the fixed test set, coloured "
    "by subset (relaxed, nonequilibrium; the smaller subset drawn on top).",
    "energy_vs_gamma": "Shear paths: energy per atom of each relaxed frame relative to its starting structure relaxed "
    "unsheared (γ = 0) by the same calculator (eV/atom) vs shear strain γ; coloured: the ensemble's "
    "exploration, one line per round, starting structure and run; black dashed: the labeller's own "
    "paths in the test set.",
    "training_curves": "Validation force RMSE (eV/Å) per epoch of every ensemble member.",
    "stages": "Exploration stage of every round (hand-written stages, or the level an auto schedule chose), labelled "
    "with what it explores; the round's accurate and failed ratios (right axis) decide the next stage.",
    "properties": "Convergence properties per round: the ensemble mean with its spread over the members (error "
    "bar; grey dots: the members; filled: within tolerance), the labeller's reference (dashed) and reference ± "
    "tolerance (shaded). A property is within when both |mean − reference| and the spread are at most the tolerance.",
}


def _fmt(value, fmt: str, scale: float) -> str:
    if value is None:
        return ""
    try:
        return fmt.format(value * scale if scale != 1 else value)
    except (TypeError, ValueError):
        return str(value)


def render_html(config, summaries: list[dict], plots: dict[str, str], notes: list[str], status: str = "") -> str:
    """The index page: title, a table of rounds, notes, and every plot with its caption."""
    e = html.escape
    # no empty column; the stage only for staged campaigns (a later stage than 0 somewhere)
    columns = [
        c for c in TABLE_COLUMNS if any(s.get(c[1]) not in (None, 0 if c[1] == "stage" else None) for s in summaries)
    ]
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{e(_fmt(s.get(key), fmt, scale))}</td>" for _, key, fmt, scale in columns) + "</tr>"
        for s in summaries
    )
    head = "".join(f"<th>{e(h)}</th>" for h, *_ in columns)
    table = f"<table>\n<tr>{head}</tr>\n{rows}\n</table>" if summaries else ""
    figures = "\n".join(
        f'<figure><img src="{e(fn)}" alt="{e(name)}"><figcaption>{e(CAPTIONS.get(name, name))}</figcaption></figure>'
        for name, fn in plots.items()
    )
    notes_html = "\n".join(f'<p class="note">{e(n)}</p>' for n in notes)
    title = f"Active-learning campaign {config.name}"
    stored = f"{len(summaries)} round(s) stored{'; campaign ' + e(status) if status else ''}"
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
<p>{stored}.</p>
<p>{e(UNITS)}</p>
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
    if any(s.get("properties") for s in summaries):
        plots["properties"] = plot_properties(summaries, outdir / "properties_per_round.png")
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
        _energy_vs_gamma(store, config, summaries, paths, outdir, plots, notes)
    elif devs:
        notes.append("No explored frames with a shear strain: energy-vs-γ plot skipped.")
    labels = [lab for e in config.explorers for lab in stage_labels(e)]
    if summaries and labels:
        plots["stages"] = plot_stages(summaries, labels, outdir / "stages.png")
    curves = training_curves(store, config, summaries)
    if any(m["epoch"] for ms in curves.values() for m in ms):
        plots["training_curves"] = plot_training_curves(curves, outdir / "training_curves.png")
    timed = CampaignRecord(store, config.name).stage_times()
    if timed:
        plots["stage_times"] = plot_stage_times(timed, outdir / "stage_times.png")
    cals = calibration_records(store, config, summaries)
    if cals:
        plots["calibration"] = plot_calibration(cals, outdir / "calibration.png")
    autotests = latest_docs(store, config.name, "autotest")
    if autotests:
        doc = autotests[-1]["output"]
        plots["autotest"] = plot_autotest(doc, outdir / "autotest.png")
        (outdir / "autotest.md").write_text(doc["table"] + "\n")
        notes.append(autotest_note(doc))
    page = outdir / "index.html"
    page.write_text(render_html(config, summaries, plots, notes, campaign_status(store, config)), encoding="utf-8")
    return {"plots": plots, "html": str(page)}


def autotest_note(doc: dict) -> str:
    """The report's line on an autotest document: rows passed, and how many failed on the tolerance
    and on the sign."""
    rows = [r for res in doc["results"].values() for r in res["rows"]]
    failed = [r for r in rows if not r["passed"]]
    by = {k: sum(k in (r.get("failed_by") or ["tolerance"]) for r in failed) for k in ("tolerance", "sign")}
    verdict = f"{len(rows) - len(failed)} of {len(rows)} rows passed"
    if failed:
        verdict += f"; failed on the tolerance: {by['tolerance']}, on the sign: {by['sign']}"
    return f"Autotest against {doc['reference']}: {verdict} (autotest.md: each row's tolerance, its bound, the sign)."


def _energy_vs_gamma(
    store, config, summaries: list[dict], paths: list[dict], outdir: Path, plots: dict[str, str], notes: list[str]
) -> None:
    """The energy-vs-gamma plot of the explored shear ``paths`` and the labeller's (added to ``plots``),
    with the unsheared references cached in ``outdir/unsheared_references.json``; a note when some
    explored paths have no reference."""
    paths = paths + labeller_shear_paths(store, config)
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
