"""The campaign report: plots that are real images of the right data, and an index page."""

import re
from pathlib import Path

import numpy as np
import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign import open_store, run_campaign
from al_flows.config import validate_campaign
from al_flows.report import (
    deviations_by_round,
    parity_data,
    round_summaries,
    shear_paths,
    training_curves,
    write_report,
)
from tests.conftest import TINY

EXPECTED_PLOTS = {"errors_per_round", "deviation_hist", "parity_energy", "parity_forces", "energy_vs_gamma", "training_curves"}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(config, connected store, report dict, report dir) of the tiny campaign, run once."""
    workdir = tmp_path_factory.mktemp("tiny")
    config = validate_campaign(TINY)
    run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = open_store(config, workdir)
    outdir = workdir / "report"
    result = write_report(store, config, outdir)
    yield config, store, result, outdir
    store.close()


def test_every_plot_is_a_non_trivial_png(campaign):
    import matplotlib.image as mpimg

    _, _, result, outdir = campaign
    assert set(result["plots"]) == EXPECTED_PLOTS
    for name, filename in result["plots"].items():
        path = outdir / filename
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and img.shape[2] in (3, 4), name
        rgb = img[..., :3].reshape(-1, 3)
        assert len(np.unique(rgb, axis=0)) > 10, f"{name} is (nearly) a single colour"


def test_html_references_every_image_and_one_row_per_round(campaign):
    config, store, result, _ = campaign
    page = Path(result["html"]).read_text(encoding="utf-8")
    assert config.name in page
    figures = re.findall(r'<img src="([^"]+)" alt="([^"]+)"><figcaption>([^<]+)</figcaption>', page)
    assert {src for src, _, _ in figures} == set(result["plots"].values())
    assert all(len(caption) > 40 and caption != name for _, name, caption in figures)
    assert "finished after 2 round(s)" in page
    rounds = [s["round"] for s in round_summaries(store, config)]
    assert rounds == list(range(TINY["max_rounds"]))
    rows = re.findall(r"<tr><td>(\d+)</td>", page)
    assert [int(r) for r in rows] == rounds


def test_deviation_counts_match_summaries(campaign):
    config, store, _, _ = campaign
    summaries = round_summaries(store, config)
    devs = deviations_by_round(store, config)
    assert sorted(devs) == [s["round"] for s in summaries]
    for s in summaries:
        d = devs[s["round"]]
        assert d["n_explored"] == s["n_explored"] > 0
        assert [d["counts"][k] for k in ("accurate", "candidate", "failed")] == [s["n_accurate"], s["n_candidate"], s["n_failed"]]
        assert sum(len(v) for v in d["deviations"].values()) + d["n_none"] == s["n_explored"]
        assert (d["trust_lo"], d["trust_hi"]) == (TINY["selection"]["trust_lo"], TINY["selection"]["trust_hi"])


def test_parity_rmse_equals_the_evaluation_of_the_final_round(campaign):
    config, store, _, _ = campaign
    final = round_summaries(store, config)[-1]
    parity = parity_data(store, config, final)
    assert parity["round"] == final["round"]
    assert parity["force_rmse"] == pytest.approx(final["test_force_rmse"], abs=1e-6)
    assert parity["energy_rmse_mev"] / 1000 == pytest.approx(final["test_energy_rmse_per_atom"], abs=1e-6)
    evaluation = next(d["output"] for d in store.query({"metadata.campaign": config.name, "metadata.stage": "evaluate", "metadata.round": final["round"]}))
    n_atoms = np.asarray(evaluation["test_energies"]) / parity["energy_label"]
    assert np.allclose(parity["energy_pred"] * n_atoms, evaluation["predicted_energies"], atol=1e-6)
    assert len(parity["force_label"]) == len(parity["force_pred"]) == 3 * round(n_atoms.sum())


def test_shear_paths_and_training_curves(campaign):
    config, store, _, _ = campaign
    summaries = round_summaries(store, config)
    paths = shear_paths(store, config)
    for s in summaries:
        mine = [p for p in paths if p["round"] == s["round"]]
        assert sum(len(p["gamma"]) for p in mine) == s["n_explored"]  # the only explorer is a shear explorer
    for p in paths:
        assert p["delta_energy"][0] == 0.0 and np.all(np.diff(p["gamma"]) > 0)
    curves = training_curves(store, config)
    assert sorted(curves) == [s["round"] for s in summaries]
    for members in curves.values():
        assert [m["member"] for m in members] == list(range(TINY["ensemble_size"]))
        assert all(len(m["epoch"]) == len(m["val_force_rmse"]) > 0 for m in members)


def test_campaign_without_rounds_gets_a_page_with_a_note(tmp_path):
    config = validate_campaign(TINY)
    store = open_store(config, tmp_path)
    try:
        result = write_report(store, config, tmp_path / "report")
    finally:
        store.close()
    assert result["plots"] == {}
    assert "No completed rounds" in Path(result["html"]).read_text(encoding="utf-8")


def test_explorer_without_gamma_and_missing_deviations(tmp_path):
    """A round in progress (no summary) whose explorer has no gamma and a frame without a deviation."""
    import matplotlib.image as mpimg

    config = validate_campaign(TINY)
    store = JobStore(MemoryStore())
    store.connect()
    meta = {"campaign": config.name, "fingerprint": config.fingerprint(), "round": 0}
    frames = [{"frame_id": f"f{i}", "explorer": "md", "parent_id": "p", "run": 0, "step": i, "gamma": None,
               "energy": -1.0 * i, "deviation": dev, "n_atoms": 4} for i, dev in enumerate([0.01, 0.2, None])]
    records = [{"frame_id": f["frame_id"], "explorer": "md", "parent_id": "p", "deviation": f["deviation"], "status": st,
                "selected": st == "candidate"} for f, st in zip(frames, ["accurate", "candidate", "failed"])]
    store.docs_store.update([
        {"uuid": "x", "index": 1, "metadata": {**meta, "stage": "explore"},
         "output": {"round": 0, "explorer": "md", "ensemble_id": "e", "frames": frames}},
        {"uuid": "s", "index": 1, "metadata": {**meta, "stage": "select"},
         "output": {"round": 0, "ensemble_id": "e", "trust_lo": 0.05, "trust_hi": 0.5, "records": records}},
        {"uuid": "s", "index": 2, "metadata": {**meta, "stage": "select"}, "output": None},  # replaced job: skipped
    ], key=["uuid", "index"])
    devs = deviations_by_round(store, config)
    assert devs[0]["counts"] == {"accurate": 1, "candidate": 1, "failed": 1} and devs[0]["n_none"] == 1
    assert shear_paths(store, config) == []
    result = write_report(store, config, tmp_path / "report")
    assert set(result["plots"]) == {"deviation_hist"}
    assert mpimg.imread(tmp_path / "report" / "deviation_hist.png").shape[0] > 200
    page = Path(result["html"]).read_text(encoding="utf-8")
    assert "energy-vs-γ plot skipped" in page and "No completed rounds" in page
