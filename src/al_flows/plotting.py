"""matplotlib for the reports: the non-interactive Agg backend and one way of saving a figure
(used by :mod:`al_flows.campaign.report` and :mod:`al_flows.pool_study.report`)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> str:
    """Save ``fig`` as ``path`` (110 dpi, tight box), close it, return the file name."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path.name
