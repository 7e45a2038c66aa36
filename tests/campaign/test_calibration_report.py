"""What a user sees of the calibration record (docs/methods.md, "Calibrated error bounds"): the
calibration line of ``al-flows status``, the calibration figures and coverage curve of report.json's
rounds, and the report's two-panel calibration figure, for records of today's shape and of the shape
before coverage curves and bounds (no ``measures``, ``bound_before`` or ``bound``)."""

import numpy as np
import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.active_learning.jobs.summary import calibration_columns
from al_flows.active_learning.schemas import CalibrationDocument, RoundSummary
from al_flows.campaign.config import validate_campaign
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.report_calibration import calibration_figure, plot_calibration
from al_flows.campaign.report_data import calibration_records
from al_flows.campaign.report_json import build_report
from al_flows.cli_text import calibration_line, print_rounds_status
from al_flows.selection.calibration_record import residual_measures
from al_flows.selection.conformal import fit_conformal
from helpers import TINY


def _residuals(rng, n: int, round_: int, sample: str, ratio: float = 3.0) -> list[dict]:
    """Residual points whose error is about ``ratio`` times their deviation (eV/Angstrom)."""
    dev = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n))
    err = dev * ratio * np.exp(rng.normal(0, 0.4, n))
    return [
        {
            "frame_id": f"{sample}-{round_}-{i}",
            "round": round_,
            "sample": sample,
            "deviation": float(d),
            "error": float(e),
            "element": "Al",
            "energy_deviation": float(d) / 100,
            "energy_error": float(e) / 100,
        }
        for i, (d, e) in enumerate(zip(dev, err, strict=True))
    ]


def _old_record() -> dict:
    """Round 0's record as calibrate_levels wrote it before calibration records: the fit of
    selection.calibrate on its labelled frames (frame_id, deviation, error) and the levels it set."""
    rng = np.random.default_rng(0)
    points = [{k: p[k] for k in ("frame_id", "deviation", "error")} for p in _residuals(rng, 12, 0, "selected")]
    return {
        "campaign": "tiny",
        "round": 0,
        "ensemble_id": "e0",
        "points": points,
        "fit_points": points,
        "fit": {"relation": "proportional", "a": 3.0, "b": 1.0, "n": 12},
        "target_error_lo": 0.1,
        "target_error_hi": 2.0,
        "trust_lo_used": 0.05,
        "trust_hi_used": 0.5,
        "trust_lo_next": 0.033,
        "trust_hi_next": 0.67,
        "applied": True,
        "reason": "",
        "note": "",
    }


def _new_record() -> tuple[dict, list[dict]]:
    """Round 1's record of today's shape, measured as the calibrate job measures it (30 residuals of
    round 0 before it; 8 selected frames, 4 random-sample frames; 20 test frames), and its test points."""
    rng = np.random.default_rng(1)
    earlier = _residuals(rng, 30, 0, "selected")
    points = _residuals(rng, 8, 1, "selected", ratio=5.0) + _residuals(rng, 4, 1, "random")
    test = _residuals(rng, 20, 1, "test")
    kinds = {"all": points, "selected": points[:8], "random": points[8:], "test": test}
    doc = CalibrationDocument(
        campaign="tiny",
        round=1,
        ensemble_id="e1",
        points=points,
        residuals=earlier + points,
        measures={k: residual_measures(pts, earlier, 0.9) for k, pts in kinds.items()},
        bound_before=fit_conformal(earlier, 0.9).as_dict(),
        bound=fit_conformal(earlier + points, 0.9).as_dict(),
        test_bound={"median_bound": 0.2, "p90_bound": 0.9, "median_error": 0.15, "p90_error": 0.6, "coverage": 0.9},
    )
    return doc.model_dump(), test


def _summary(round_: int, calibration: dict | None, calibration_uuid: str, **extra) -> dict:
    return RoundSummary(
        campaign="tiny",
        round=round_,
        ensemble_id=f"e{round_}",
        fingerprint="f",
        n_labels_total=10 + 12 * round_,
        n_explored=50,
        n_accurate=30,
        n_candidate=15,
        n_failed=5,
        n_labelled=12,
        n_label_failures=0,
        accurate_ratio=0.6,
        val_force_rmse=0.1,
        test_force_rmse=0.12,
        test_energy_rmse_per_atom=0.004,
        model_ids=[f"m{round_}"],
        converged=False,
        stop=False,
        dataset_uuid="d",
        structures_uuid="s",
        test_uuid="t",
        calibration_uuid=calibration_uuid,
        calibration=calibration,
        **extra,
    ).model_dump()


@pytest.fixture
def stored():
    """A store with two rounds: round 0 summarised before calibration records (an old-shape
    calibrate record, no calibration in its summary), round 1 with today's record, its figures in
    its summary and convergence.error_bound's share and streak; each round's evaluation with its
    test points (round 0's from before test points: none)."""
    config = validate_campaign(TINY)
    old, (new, test) = _old_record(), _new_record()
    docs = [
        (0, "summary", "s0", _summary(0, None, "c0")),
        (1, "summary", "s1", _summary(1, calibration_columns(new), "c1", bound_share=0.93, bound_streak=2)),
        (0, "calibrate", "c0", old),
        (1, "calibrate", "c1", new),
        (0, "evaluate", "v0", {"campaign": "tiny", "round": 0, "ensemble_id": "e0"}),
        (1, "evaluate", "v1", {"campaign": "tiny", "round": 1, "ensemble_id": "e1", "test_points": test}),
    ]
    store = JobStore(MemoryStore())
    store.connect()
    meta = {"campaign": config.name, "fingerprint": config.fingerprint()}
    store.docs_store.update(
        [
            {"uuid": uuid, "index": 1, "metadata": {**meta, "stage": stage, "round": r}, "output": out}
            for r, stage, uuid, out in docs
        ],
        key=["uuid", "index"],
    )
    yield config, store, new
    store.close()


def test_status_shows_each_rounds_calibration_line(stored, capsys):
    config, store, new = stored
    status = CampaignRecord(store, config.name).status()
    rows = {r["round"]: r for r in status["rounds"]}
    cal = calibration_columns(new)
    assert rows[1]["calibration"] == cal and rows[1]["bound_share"] == 0.93 and rows[1]["bound_streak"] == 2
    assert rows[0]["calibration"] is None and rows[0]["bound_share"] is None
    print_rounds_status(status)
    lines = capsys.readouterr().out.splitlines()
    (line,) = [s for s in lines if "calibration:" in s]  # round 0's summary predates calibration records
    assert lines.index(line) == next(i for i, s in enumerate(lines) if s.split()[:2] == ["1", "done"]) + 1
    assert f"spearman {cal['spearman']:.2f}, scale {cal['scale']:.3g}" in line
    assert f"test coverage {cal['coverage_test']:.2f} of nominal 0.90 (raw {cal['raw_coverage_test']:.2f})" in line
    assert f"random sample {cal['coverage_random']:.2f}, selected {cal['coverage_selected']:.2f}" in line
    assert f"bound q={cal['bound_scale']:.3g} from 42 residuals" in line
    assert lines[lines.index(line) + 1].strip() == "error bound: 0.93 of explored frames below the target, streak 2"


def test_calibration_line_reads_as_documented():
    cal = {
        "spearman": 0.45,
        "scale": 3.8,
        "coverage_selected": None,
        "coverage_random": None,
        "coverage_test": 0.88,
        "raw_coverage_test": 0.21,
        "miscalibration_area_test": 0.04,
        "nominal_coverage": 0.9,
        "bound_scale": 4.1,
        "bound_residuals": 36,
        "test_p90_bound": 0.41,
        "test_p90_error": 0.3,
    }
    assert calibration_line({"calibration": cal}).strip() == (
        "calibration: spearman 0.45, scale 3.8, test coverage 0.88 of nominal 0.90 (raw 0.21), "
        "bound q=4.1 from 36 residuals (test p90: bound 0.41, error 0.3 eV/A)"
    )
    first = {**cal, "spearman": None, "coverage_test": None, "bound_scale": None, "bound_residuals": 6}
    assert calibration_line({"calibration": first}).strip() == (
        "calibration: spearman n/a, scale 3.8, test coverage n/a before a bound (raw 0.21), no bound yet (6 residuals)"
    )
    assert calibration_line({"calibration": None}) == calibration_line({}) == ""


def test_report_json_rounds_carry_the_calibration_and_the_coverage_curve(stored):
    config, store, new = stored
    rounds = build_report(store, config)["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["calibration"] is None and rounds[0]["coverage_curve_test"] == []
    assert rounds[1]["calibration"] == calibration_columns(new)
    assert (rounds[1]["bound_share"], rounds[1]["bound_streak"]) == (0.93, 2)
    curve = rounds[1]["coverage_curve_test"]
    assert curve == new["measures"]["test"]["curve"] and [c["nominal"] for c in curve][-1] == 0.95


def test_the_report_reads_each_rounds_record_with_its_test_points(stored, tmp_path):
    from al_flows.campaign.report import write_report

    config, store, new = stored
    records = calibration_records(store, config)
    assert [r["round"] for r in records] == [0, 1]
    assert records[0]["test_points"] == [] and len(records[1]["test_points"]) == 20
    out = write_report(store, config, tmp_path)
    assert out["plots"]["calibration"] == "calibration.png"
    assert (tmp_path / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_draws_a_coverage_curve_per_round_with_measures(tmp_path):
    old, (new, test) = _old_record(), _new_record()
    records = [{**old, "test_points": []}, {**new, "test_points": test}]
    fig = calibration_figure(records)
    try:
        left, right = fig.axes
        # right: the diagonal and round 1's curve (round 0's old record has none)
        assert len(right.lines) == 2
        assert [ln.get_label() for ln in right.lines][1].startswith("round 1 (area ")
        observed = right.lines[1].get_ydata()
        finite = [c["observed"] for c in new["measures"]["test"]["curve"] if c["finite"]]
        assert np.allclose(observed, finite)
        # left: selected frames of both rounds, round 1's random sample and test frames
        assert sum(len(c.get_offsets()) for c in left.collections) == 12 + 8 + 4 + 20
        labels = left.get_legend().get_texts()
        words = {t.get_text() for t in labels}
        assert {"round 0", "round 1", "selected (labelled)", "random sample (labelled)", "test frames"} <= words
        assert any(w.startswith("bound fitted on all 42 residuals: q = ") for w in words)
        # left: round 0's fit and next trust_lo, round 1's bound in force, the bound fitted on all residuals
        assert len(left.lines) == 4
        assert left.get_xscale() == left.get_yscale() == "log"
    finally:
        fig.clf()
    name = plot_calibration(records, tmp_path / "calibration.png")
    assert name == "calibration.png" and (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_of_old_records_only_says_there_is_no_curve(tmp_path):
    fig = calibration_figure([{**_old_record(), "test_points": []}])
    try:
        left, right = fig.axes
        assert len(right.lines) == 1  # the diagonal
        assert any("no coverage curve" in t.get_text() for t in right.texts)
        # the fit, the next trust_lo and the target error as before
        assert len(left.lines) == 3
    finally:
        fig.clf()
