"""The report's figure of where each round's time went: one stacked bar per round, the wall time of
each stage's jobs and the overhead between them (:mod:`al_flows.workflow.timing`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from al_flows.plotting import pyplot, save_figure

__all__ = ["STAGE_ORDER", "plot_stage_times"]

# the stages in the order a round runs them; others (and the initial labels' stages) follow
STAGE_ORDER = (
    "train",
    "evaluate",
    "properties",
    "explore",
    "select",
    "label",
    "calibrate",
    "merge",
    "summary",
    "round",
)


def plot_stage_times(times: dict[int, dict], path: Path) -> str:
    """Stacked wall time (s) per stage of each round in ``times`` (round -> stage_times), with the
    overhead between jobs on top; the CPU time of each round as a marker (s, all threads)."""
    plt = pyplot()
    rounds = sorted(times)
    stages = [s for s in STAGE_ORDER if any(s in times[r]["stages"] for r in rounds)]
    stages += sorted({s for r in rounds for s in times[r]["stages"]} - set(stages))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(rounds) + 3), 4.2))
    x = np.arange(len(rounds))
    bottom = np.zeros(len(rounds))
    for i, stage in enumerate([*stages, "overhead"]):
        if stage == "overhead":
            h = np.array([times[r].get("overhead_s", 0.0) for r in rounds])
            colour = "0.8"
        else:
            h = np.array([times[r]["stages"].get(stage, {}).get("wall_s", 0.0) for r in rounds])
            colour = f"C{i % 10}"
        ax.bar(x, h, bottom=bottom, color=colour, label=stage, width=0.7)
        bottom += h
    ax.plot(x, [times[r].get("total_cpu_s", 0.0) for r in rounds], "k_", ms=18, mew=2, label="CPU (all threads)")
    ax.set_xticks(x, ["initial" if r < 0 else str(r) for r in rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("wall time (s)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
