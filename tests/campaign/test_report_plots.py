"""The report's plots as a reader sees them, checked on the matplotlib figures before saving:
deviation histogram bins with the trust levels as edges, tick labels on every panel, legends off
the lines; the parity plots' smaller subset on top."""

import numpy as np
import pytest

from al_flows.campaign.report_plots import (
    deviation_bin_edges,
    deviation_hist_figure,
    parity_figures,
    subset_draw_order,
)
from al_flows.plotting import pyplot


def _devs(values: dict[int, np.ndarray], trust: dict[int, tuple[float, float]]) -> dict[int, dict]:
    """deviations_by_round's shape: each round's deviations split by status at its trust levels."""
    out = {}
    for r, v in values.items():
        lo, hi = trust[r]
        parts = {"accurate": v[v < lo], "candidate": v[(v >= lo) & (v < hi)], "failed": v[v >= hi]}
        out[r] = {
            "deviations": {k: p.tolist() for k, p in parts.items()},
            "counts": {k: len(p) for k, p in parts.items()},
            "n_none": 0,
            "n_explored": len(v),
            "trust_lo": lo,
            "trust_hi": hi,
        }
    return out


def _four_rounds(log: bool) -> dict[int, dict]:
    rng = np.random.default_rng(3)
    if log:  # 0.01 .. 3 eV/A: log bins; calibrated trust levels that change from round to round
        values = {r: np.exp(rng.uniform(np.log(0.01), np.log(3.0), 200)) for r in range(4)}
        trust = {0: (0.05, 0.5), 1: (0.05, 0.5), 2: (0.07, 0.4), 3: (0.0613, 0.333)}
    else:  # 0.1 .. 0.4 eV/A: linear bins
        values = {r: rng.uniform(0.1, 0.4, 200) for r in range(4)}
        trust = {r: (0.157, 0.263) for r in range(4)}
    return _devs(values, trust)


@pytest.mark.parametrize("log", [True, False], ids=["log", "linear"])
def test_trust_levels_are_bin_edges_and_no_bar_mixes_classes(log):
    devs = _four_rounds(log)
    edges, is_log = deviation_bin_edges(devs)
    assert is_log is log
    assert np.all(np.diff(edges) > 0) and 20 <= len(edges) - 1 <= 40
    for d in devs.values():
        assert d["trust_lo"] in edges.tolist() and d["trust_hi"] in edges.tolist()
        all_values = [v for vs in d["deviations"].values() for v in vs]
        assert edges[0] <= min(all_values) and max(all_values) <= edges[-1]
        # every bin holds frames of one class only
        counts = {s: np.histogram(d["deviations"][s], bins=edges)[0] for s in d["deviations"]}
        assert np.all((np.stack(list(counts.values())) > 0).sum(axis=0) <= 1)
    if log:  # bins of comparable (log) width: no sliver next to a trust level
        ratios = edges[1:] / edges[:-1]
        assert ratios.max() / ratios.min() < 3


def test_far_trust_levels_are_not_edges():
    # a trust_hi 100 times the largest deviation is off scale (drawn in the legend only)
    devs = _devs({0: np.array([0.01, 0.02, 0.03])}, {0: (0.015, 3.0)})
    edges, _ = deviation_bin_edges(devs)
    assert 0.015 in edges.tolist() and edges[-1] < 3.0


def test_every_panel_shows_x_tick_labels_and_legends_do_not_cover_the_lines():
    fig = deviation_hist_figure(_four_rounds(True))  # 4 rounds: a 2 x 3 grid, inner panels included
    try:
        fig.canvas.draw()
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 4
        renderer = fig.canvas.get_renderer()
        for ax in panels:
            shown = [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            assert len(shown) >= 2, (ax.get_title(), shown)
            assert ax.xaxis.label.get_visible() and ax.get_xlabel()
            legend = ax.get_legend()
            box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= frame.x1  # right of the axes: never over the histogram or the trust lines
            assert not any(other.get_window_extent(renderer).overlaps(box) for other in panels if other is not ax)
    finally:
        pyplot().close(fig)


def test_parity_draws_the_smaller_subset_on_top():
    rng = np.random.default_rng(0)
    n_relaxed, n_noneq = 30, 600  # force components: few relaxed frames, many nonequilibrium ones
    subsets = np.array(["relaxed"] * n_relaxed + ["nonequilibrium"] * n_noneq)
    assert subset_draw_order(subsets) == ["nonequilibrium", "relaxed"]
    assert subset_draw_order(["b", "a", "a", "c", "c"]) == ["a", "c", "b"]
    forces = rng.normal(size=len(subsets))
    energies = rng.normal(size=6)
    parity = {
        "round": 1,
        "energy_label": energies,
        "energy_pred": energies + 0.01,
        "energy_subset": ["relaxed"] * 4 + ["nonequilibrium"] * 2,
        "energy_rmse_mev": 10.0,
        "force_label": forces,
        "force_pred": forces + 0.1,
        "force_subset": subsets.tolist(),
        "force_rmse": 0.1,
    }
    figs = parity_figures(parity)
    try:
        for name, top, bottom in (
            ("parity_forces", f"relaxed ({n_relaxed})", f"nonequilibrium ({n_noneq})"),
            ("parity_energy", "nonequilibrium (2)", "relaxed (4)"),
        ):
            (ax,) = figs[name].axes
            points = {c.get_label(): c for c in ax.collections}
            assert set(points) == {top, bottom}
            assert points[top].get_zorder() > points[bottom].get_zorder()
            assert ax.collections[-1].get_label() == top  # drawn last as well
            line = next(x for x in ax.lines if x.get_label() == "y = x")
            assert line.get_zorder() > points[top].get_zorder()  # the diagonal stays visible
            assert len(points[top].get_offsets()) == int(top.split("(")[1].rstrip(")"))
    finally:
        for fig in figs.values():
            pyplot().close(fig)
