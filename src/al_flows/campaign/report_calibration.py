"""The report's calibration figure (docs/methods.md, "Calibrated error bounds"): how each round's
ensemble deviation tracked the true error, and how well the calibrated bound covered the test frames.

Left: the ensemble deviation eps against the true error (largest atomic force deviation and error of
the ensemble mean, eV/Angstrom, log-log) of each round's labelled frames (its selection and its
uniformly drawn calibration sample, marked differently) and of the test frames, measured by the
round's ensemble before it trained on them; the bound q * eps in force during the round (fitted on
the residuals of the rounds before) and the one fitted on every residual so far (the next round's);
with ``selection.calibrate`` the fitted relation, the next round's trust_lo and the target error.
Right: the coverage curve of each round, the observed share of test frames whose error is at most
the bound fitted on the rounds before, against its nominal coverage, with the diagonal of a
calibrated bound.

The records are CalibrationDocument outputs with the round's test residuals
(:func:`al_flows.campaign.report_data.calibration_records`); a record from before these fields
(no ``measures``, ``bound_before`` or ``bound``; points without ``sample``) draws what it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from al_flows.campaign.report_plots import round_colours
from al_flows.plotting import pyplot, save_figure

__all__ = ["SAMPLE_MARKERS", "positive_pairs", "coverage_curve_of", "calibration_figure", "plot_calibration"]

#: how the left panel marks each kind of frame: (scatter keywords, legend words)
SAMPLE_MARKERS: dict[str, tuple[dict[str, Any], str]] = {
    "selected": ({"marker": "o", "s": 16}, "selected (labelled)"),
    "random": ({"marker": "s", "s": 22, "facecolors": "none"}, "random sample (labelled)"),
    "test": ({"marker": "x", "s": 12, "alpha": 0.5}, "test frames"),
}


def positive_pairs(points: list[dict]) -> np.ndarray:
    """(deviation, error) of the residual ``points`` where both are finite and positive (log axes),
    as an [n, 2] array."""
    pairs = [(float(p["deviation"]), float(p["error"])) for p in points]
    out = np.array([xy for xy in pairs if np.all(np.isfinite(xy)) and min(xy) > 0], dtype=float)
    return out.reshape(-1, 2)


def coverage_curve_of(record: dict) -> list[dict]:
    """A record's coverage curve on the test frames ([] where it has none)."""
    return list(((record.get("measures") or {}).get("test") or {}).get("curve") or [])


def _finite_scale(bound: dict | None) -> float | None:
    scale = (bound or {}).get("scale")
    return float(scale) if scale is not None and np.isfinite(scale) else None


def _frames_by_kind(record: dict) -> dict[str, np.ndarray]:
    """The record's residuals by kind: its labelled frames split by sample (a point without one, from
    before calibration samples, was selected), and its test frames."""
    labelled = record.get("points") or []
    return {
        "selected": positive_pairs([p for p in labelled if p.get("sample", "selected") != "random"]),
        "random": positive_pairs([p for p in labelled if p.get("sample") == "random"]),
        "test": positive_pairs(record.get("test_points") or []),
    }


def _fit_and_level(ax, record: dict, colour, x: np.ndarray) -> None:
    """With ``selection.calibrate``: the record's fitted relation over its labelled deviations ``x``
    and, where the fit was applied, the next round's trust_lo (dotted)."""
    fit = record.get("fit")
    if fit is not None and len(x) and np.isfinite(fit.get("a", np.nan)):
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, fit["a"] * xs ** fit.get("b", 1.0), color=colour, lw=1)
    if record.get("applied") and record.get("trust_lo_next") is not None:
        ax.axvline(record["trust_lo_next"], color=colour, ls=":", lw=0.8)


def _bound_lines(ax, records: list[dict], colours: dict, xs: np.ndarray) -> bool:
    """Each round's bound in force (dashed, its colour) and the bound fitted on every residual so far
    (dash-dot, black, in the legend) over the deviations ``xs``; whether a bound in force was drawn."""
    in_force = False
    for rec in records:
        q = _finite_scale(rec.get("bound_before"))
        if q is not None:
            ax.plot(xs, q * xs, color=colours[rec["round"]], ls="--", lw=1)
            in_force = True
    last = records[-1].get("bound") if records else None
    q = _finite_scale(last)
    if last is not None and q is not None:
        words = f"bound fitted on all {last['n']} residuals: q = {q:.3g} ({last['coverage']:.0%} nominal)"
        ax.plot(xs, q * xs, color="k", ls="-.", lw=1.2, label=words)
    return in_force


def _log_axes(ax) -> None:
    """Log scales on both axes, ticks at 1, 2 and 5 per decade written as plain numbers."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())


def _labelled_panel(ax, records: list[dict], colours: dict) -> None:
    """The left panel (module doc)."""
    drawn: list[np.ndarray] = []
    kinds_seen: set[str] = set()
    for rec in records:
        colour = colours[rec["round"]]
        frames = _frames_by_kind(rec)
        for kind, xy in frames.items():
            if not len(xy):
                continue
            style = dict(SAMPLE_MARKERS[kind][0])
            style["edgecolors" if style.get("facecolors") == "none" else "color"] = colour
            ax.scatter(xy[:, 0], xy[:, 1], **style)
            drawn.append(xy)
            kinds_seen.add(kind)
        _fit_and_level(ax, rec, colour, np.concatenate([frames["selected"], frames["random"]])[:, 0])
    in_force = False
    if drawn:
        xy = np.concatenate(drawn)
        in_force = _bound_lines(ax, records, colours, np.geomspace(xy[:, 0].min(), xy[:, 0].max(), 50))
    else:
        ax.text(0.5, 0.5, "no residuals recorded", ha="center", va="center", transform=ax.transAxes)
    if records and records[-1].get("target_error_lo") is not None:
        ax.axhline(records[-1]["target_error_lo"], color="k", ls=":", lw=0.8, label="target error lo")
    _log_axes(ax)
    ax.set_xlabel("ensemble deviation ε, largest atomic force (eV/Å)")
    ax.set_ylabel("largest atomic force error of the ensemble mean (eV/Å)")
    ax.set_title("Deviation against true error, before training on the frames", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    _labelled_legend(ax, records, colours, kinds_seen, in_force)


def _labelled_legend(ax, records: list[dict], colours: dict, kinds: set[str], bound_in_force: bool) -> None:
    """The left panel's legend, below it: the rounds by colour, the kinds of frame by marker, and the lines."""
    from matplotlib.lines import Line2D

    handles = []
    for rec in records:
        unused = rec.get("fit") is not None and not rec.get("applied")
        words = f"round {rec['round']}" + (" (fit not used)" if unused else "")
        handles.append(Line2D([], [], ls="", marker="o", color=colours[rec["round"]], label=words))
    for kind in SAMPLE_MARKERS:
        if kind in kinds:
            style, words = SAMPLE_MARKERS[kind]
            face = "none" if style.get("facecolors") == "none" else "0.4"
            handles.append(
                Line2D([], [], ls="", marker=style["marker"], color="0.4", markerfacecolor=face, label=words)
            )
    if bound_in_force:
        handles.append(Line2D([], [], ls="--", color="0.4", label="bound q·ε in force during the round"))
    if any(rec.get("fit") is not None for rec in records):
        handles.append(Line2D([], [], color="0.4", label="fitted relation (selection.calibrate)"))
        handles.append(Line2D([], [], ls=":", color="0.4", label="next round's trust_lo"))
    own, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + own, fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))


def _coverage_panel(ax, records: list[dict], colours: dict) -> None:
    """The right panel (module doc): one line per round with a coverage curve, and the diagonal."""
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated (observed = nominal)")
    curves = unbounded = False
    for rec in records:
        curve = coverage_curve_of(rec)
        colour = colours[rec["round"]]
        finite = [(r["nominal"], r["observed"]) for r in curve if r.get("finite", True)]
        if finite:
            area = ((rec.get("measures") or {}).get("test") or {}).get("miscalibration_area")
            words = f"round {rec['round']}" + (f" (area {area:.2f})" if area is not None else "")
            x, y = np.array(finite).T
            ax.plot(x, y, "o-", color=colour, ms=3, lw=1, label=words)
            curves = True
        rest = [(r["nominal"], r["observed"]) for r in curve if not r.get("finite", True)]
        if rest:
            x, y = np.array(rest).T
            ax.scatter(x, y, s=16, facecolors="none", edgecolors=colour)
            unbounded = True
    if not curves:
        words = "no coverage curve recorded\n(the first round has no earlier residuals;\nolder records have none)"
        ax.text(0.65, 0.2, words, ha="center", va="center", fontsize=8, transform=ax.transAxes)
    if unbounded:
        ax.scatter([], [], s=16, facecolors="none", edgecolors="0.4", label="no finite bound (too few residuals)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal coverage of the bound fitted on the rounds before")
    ax.set_ylabel("observed coverage on the test frames")
    ax.set_title("Coverage of the bound on the test frames", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))


def calibration_figure(records: list[dict]):
    """The two-panel figure of the module doc for ``records`` (one per round, in round order)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5))
    colours = round_colours([rec["round"] for rec in records])
    _labelled_panel(left, records, colours)
    _coverage_panel(right, records, colours)
    fig.tight_layout()
    return fig


def plot_calibration(records: list[dict], path: Path) -> str:
    """:func:`calibration_figure` saved as ``path``; the file name."""
    return save_figure(calibration_figure(records), path)
