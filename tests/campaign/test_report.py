"""The campaign report: plots that are real images of the right data, and an index page."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.report import write_report
from al_flows.campaign.report_data import deviations_by_round, parity_data, round_summaries, training_curves
from al_flows.campaign.run import open_store, run_campaign
from al_flows.campaign.shear_paths import shear_paths
from helpers import QUICK_AUTOTEST, TINY

EXPECTED_PLOTS = {
    "errors_per_round",
    "deviation_hist",
    "parity_energy",
    "parity_forces",
    "energy_vs_gamma",
    "training_curves",
    "autotest",
    "calibration",  # every round writes a calibration record
    "stage_times",  # every job records its time
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(config, connected store, report dict, report dir) of the tiny campaign with an autotest,
    run once (autotest.md is written); report.json is in the report dir's parent (the work directory)."""
    import al_flows.campaign.report_json as report_json_module

    workdir = tmp_path_factory.mktemp("tiny")
    config = validate_campaign({**TINY, "autotest": QUICK_AUTOTEST})
    live = []  # (rounds in report.json, index.html rows) each time the running campaign rewrote its report
    real = report_json_module.write_reports

    def spy(store, config, workdir):
        report = real(store, config, workdir)
        page = (workdir / "report" / "index.html").read_text(encoding="utf-8")
        live.append(([r["round"] for r in report["rounds"]], page.count("<tr>") - 1))
        return report

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_json_module, "write_reports", spy)
        run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = open_store(config, workdir)
    outdir = workdir / "report"
    result = write_report(store, config, outdir)
    yield config, store, result, outdir, live
    store.close()


def test_the_running_campaign_rewrote_its_report_after_every_round(campaign):
    config, store, _, _, live = campaign
    n = len(round_summaries(store, config))
    assert n >= 2
    # after round k the report holds rounds 0..k: in report.json and as table rows of index.html;
    # then once more when the run ends, with the autotest that ran after the last round
    assert live == [(list(range(k + 1)), k + 1) for k in range(n)] + [(list(range(n)), n)]


def test_every_plot_is_a_non_trivial_png(campaign):
    import matplotlib.image as mpimg

    _, _, result, outdir, _ = campaign
    assert set(result["plots"]) == EXPECTED_PLOTS
    for name, filename in result["plots"].items():
        path = outdir / filename
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and img.shape[2] in (3, 4), name
        rgb = img[..., :3].reshape(-1, 3)
        assert len(np.unique(rgb, axis=0)) > 10, f"{name} is (nearly) a single colour"


def test_html_references_every_image_and_one_row_per_round(campaign):
    config, store, result, _, _ = campaign
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
    config, store, _, _, _ = campaign
    summaries = round_summaries(store, config)
    devs = deviations_by_round(store, config)
    assert sorted(devs) == [s["round"] for s in summaries]
    for s in summaries:
        d = devs[s["round"]]
        assert d["n_explored"] == s["n_explored"] > 0
        assert [d["counts"][k] for k in ("accurate", "candidate", "failed")] == [
            s["n_accurate"],
            s["n_candidate"],
            s["n_failed"],
        ]
        assert sum(len(v) for v in d["deviations"].values()) + d["n_none"] == s["n_explored"]
        assert (d["trust_lo"], d["trust_hi"]) == (TINY["selection"]["trust_lo"], TINY["selection"]["trust_hi"])


def test_parity_rmse_equals_the_evaluation_of_the_final_round(campaign):
    config, store, _, _, _ = campaign
    final = round_summaries(store, config)[-1]
    parity = parity_data(store, config, final)
    assert parity["round"] == final["round"]
    # one evaluation of the same models on the same frames, perhaps batched otherwise: float32 sums
    # in another order (forces <= 5e-7 eV/A apart, energies <= 5.5e-7 eV: test_model_ensemble's
    # batched-vs-single test). |RMSE(a) - RMSE(b)| <= max |a - b|: the force RMSEs agree to a few
    # float32 ulps of forces <= 2.5 eV/A (ulp 2.4e-7), 2e-6 eV/A; energies per atom to 1e-6 eV/atom
    # (and totals to 1e-5 eV)
    assert parity["force_rmse"] == pytest.approx(final["test_force_rmse"], abs=2e-6)
    assert parity["energy_rmse_mev"] / 1000 == pytest.approx(final["test_energy_rmse_per_atom"], abs=1e-6)
    evaluation = next(
        d["output"]
        for d in store.query(
            {"metadata.campaign": config.name, "metadata.stage": "evaluate", "metadata.round": final["round"]}
        )
    )
    n_atoms = np.asarray(evaluation["test_energies"]) / parity["energy_label"]
    np.testing.assert_allclose(parity["energy_pred"] * n_atoms, evaluation["predicted_energies"], rtol=0, atol=1e-5)
    assert len(parity["force_label"]) == len(parity["force_pred"]) == 3 * round(n_atoms.sum())


def test_shear_paths_and_training_curves(campaign):
    config, store, _, _, _ = campaign
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
    frames = [
        {
            "frame_id": f"f{i}",
            "explorer": "md",
            "parent_id": "p",
            "run": 0,
            "step": i,
            "gamma": None,
            "energy": -1.0 * i,
            "deviation": dev,
            "n_atoms": 4,
        }
        for i, dev in enumerate([0.01, 0.2, None])
    ]
    records = [
        {
            "frame_id": f["frame_id"],
            "explorer": "md",
            "parent_id": "p",
            "deviation": f["deviation"],
            "status": st,
            "selected": st == "candidate",
        }
        for f, st in zip(frames, ["accurate", "candidate", "failed"])
    ]
    store.docs_store.update(
        [
            {
                "uuid": "x",
                "index": 1,
                "metadata": {**meta, "stage": "explore"},
                "output": {"round": 0, "explorer": "md", "ensemble_id": "e", "frames": frames},
            },
            {
                "uuid": "s",
                "index": 1,
                "metadata": {**meta, "stage": "select"},
                "output": {"round": 0, "ensemble_id": "e", "trust_lo": 0.05, "trust_hi": 0.5, "records": records},
            },
            {"uuid": "s", "index": 2, "metadata": {**meta, "stage": "select"}, "output": None},  # replaced job: skipped
        ],
        key=["uuid", "index"],
    )
    devs = deviations_by_round(store, config)
    assert devs[0]["counts"] == {"accurate": 1, "candidate": 1, "failed": 1} and devs[0]["n_none"] == 1
    assert shear_paths(store, config) == []
    result = write_report(store, config, tmp_path / "report")
    assert set(result["plots"]) == {"deviation_hist"}
    assert mpimg.imread(tmp_path / "report" / "deviation_hist.png").shape[0] > 200
    page = Path(result["html"]).read_text(encoding="utf-8")
    assert "energy-vs-γ plot skipped" in page and "No completed rounds" in page


# The round table of index.html, column by column, as report.json names the values: (header,
# report.json key, scale to the shown unit). Written out here, not read from al_flows.campaign.report, so
# that a column showing the wrong value is caught.
HTML_COLUMNS = [
    ("round", "round", 1),
    ("labels", "n_labels_total", 1),
    ("explored", "n_explored", 1),
    ("accurate", "n_accurate", 1),
    ("candidate", "n_candidate", 1),
    ("failed", "n_failed", 1),
    ("labelled", "n_labelled", 1),
    ("accurate ratio", "accurate_ratio", 1),
    ("val force RMSE (eV/Å)", "val_force_rmse", 1),
    ("test force RMSE (eV/Å)", "test_force_rmse", 1),
    ("test energy RMSE (meV/atom)", "test_energy_rmse_per_atom", 1000),
    ("member disagreement (eV/Å)", "member_disagreement", 1),
]


def _html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of an HTML page as rows of cell texts (th and td), with html.parser."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.tables[-1][-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Tables()
    parser.feed(page)
    return parser.tables


def _shown_equals(text: str, value, scale: float = 1.0, sig: int | None = None) -> bool:
    """Does the shown ``text`` display ``value`` (times ``scale``)? Integers exactly; decimals to
    half a unit of the last digit shown; ``sig`` significant digits ('.4g') to half a unit of the
    4th; None as an empty cell or '-'."""
    text = text.strip()
    if value is None:
        return text in ("", "-")
    if isinstance(value, bool):
        return False
    if isinstance(value, int) and scale == 1:
        return text == str(value)
    shown, v = float(text), float(value) * scale
    if sig is not None:
        half = 0.5 * 10 ** (math.floor(math.log10(abs(v))) - sig + 1) if v != 0 else 0.0
    else:
        decimals = len(text.split(".")[1]) if "." in text else 0
        half = 0.5 * 10.0**-decimals
    return abs(shown - v) <= half * (1 + 1e-9) + 1e-15


def test_html_table_shows_report_json_cell_by_cell(campaign):
    """Every cell of the round table of index.html is the report.json value of its column."""
    import json

    _, _, result, outdir, _ = campaign
    report = json.loads((outdir.parent / "report.json").read_text())
    rounds = report["rounds"]
    assert len(rounds) == TINY["max_rounds"]
    (table,) = _html_tables(Path(result["html"]).read_text(encoding="utf-8"))
    header, *rows = table
    assert header == [h for h, _, _ in HTML_COLUMNS]
    assert len(rows) == len(rounds)
    for row, want in zip(rows, rounds, strict=True):
        assert len(row) == len(HTML_COLUMNS)
        for cell, (head, key, scale) in zip(row, HTML_COLUMNS, strict=True):
            assert _shown_equals(cell, want[key], scale), (want["round"], head, cell, want[key])
    # the two force RMSE columns are told apart at the precision shown (else a swap would pass)
    assert any(abs(r["val_force_rmse"] - r["test_force_rmse"]) > 1e-4 for r in rounds)


def test_autotest_md_shows_report_json_cell_by_cell(campaign):
    """Every row and cell of autotest.md is the report.json autotest row of that property."""
    import json

    _, _, _, outdir, _ = campaign
    report = json.loads((outdir.parent / "report.json").read_text())
    want = {f"{r['element']} {r['property']}": r for r in report["autotest"]["rows"]}
    lines = (outdir / "autotest.md").read_text().strip().splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert cells[0] == [
        "property",
        "unit",
        "reference",
        "model",
        "abs error",
        "rel error",
        "tolerance",
        "bound",
        "sign",
        "pass",
    ]
    assert set(cells[1]) == {"---"}
    body = cells[2:]
    assert [row[0] for row in body] == list(want) and len(body) >= 10
    for prop, unit, ref, model, abs_err, rel_err, tol, bound, sign, passed in body:
        r = want[prop]
        assert unit == r["unit"], prop
        assert bound == (r["tolerance_kind"] or "-"), prop
        assert sign == {True: "ok", False: "WRONG", None: "-"}[r["sign_ok"]], prop
        for text, key in (
            (ref, "reference"),
            (model, "model"),
            (abs_err, "abs_error"),
            (rel_err, "rel_error"),
            (tol, "tolerance"),
        ):
            assert _shown_equals(text, r[key], sig=4), (prop, key, text, r[key])
        assert passed == ("yes" if r["passed"] else f"NO ({', '.join(r['failed_by'])})"), prop
    assert report["autotest"]["passed"] == all(r["passed"] for r in want.values())


def test_the_report_page_and_the_run_summary_name_each_failed_autotest_row(campaign, capsys):
    """index.html's autotest note counts the rows passed and what the others failed on; the run's
    printed summary gives one line per failed row with the tolerance used, its bound and the check
    that failed, and no line for a row that passed."""
    import html
    import json

    from al_flows.campaign.report import autotest_note
    from al_flows.cli_text import print_autotest_verdict
    from al_flows.workflow.jobs import latest_outputs

    config, store, _, outdir, _ = campaign
    doc = latest_outputs(store, config.name, "autotest")[-1]["output"]
    rows = [r for res in doc["results"].values() for r in res["rows"]]
    note = autotest_note(doc)
    assert note.startswith(f"Autotest against emt: {sum(r['passed'] for r in rows)} of {len(rows)} rows passed")
    assert html.escape(note) in (outdir / "index.html").read_text(encoding="utf-8")
    report = json.loads((outdir.parent / "report.json").read_text())
    print_autotest_verdict(report["autotest"])
    lines = capsys.readouterr().out.splitlines()
    failed = [r for r in report["autotest"]["rows"] if not r["passed"]]
    assert lines[0] == f"autotest vs emt: {len(rows) - len(failed)}/{len(rows)} rows passed"
    assert len(lines) == 1 + len(failed)
    for line, r in zip(lines[1:], failed, strict=True):
        assert line.startswith(f"  failed: {r['element']} {r['property']} ") and f"({r['tolerance_kind']})" in line
        assert line.endswith(f"failed by {' and '.join(r['failed_by'])}")


def test_autotest_verdict_lines_of_a_wrong_sign_row(capsys):
    from al_flows.cli_text import print_autotest_verdict

    row = {"element": "Cu", "property": "dE[hcp-fcc]", "unit": "meV/atom", "reference": 7.8, "model": -0.94}
    ok = {**row, "property": "B", "passed": True}
    wrong = {**row, "tolerance": 1.56, "tolerance_kind": "rel", "failed_by": ["tolerance", "sign"], "passed": False}
    print_autotest_verdict({"reference": "eam", "rows": [ok, wrong]})
    assert capsys.readouterr().out.splitlines() == [
        "autotest vs eam: 1/2 rows passed",
        "  failed: Cu dE[hcp-fcc] -0.94 vs 7.8 meV/atom, tolerance 1.56 (rel), failed by tolerance and sign",
    ]


def test_report_watch_on_a_finished_campaign_writes_once_and_returns(campaign, capsys):
    from al_flows.cli import main

    _, _, _, outdir, _ = campaign
    assert main(["report", "--workdir", str(outdir.parent), "--watch", "0.01"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {outdir / 'index.html'} (2 round(s))"]
    assert main(["report", "--workdir", str(outdir.parent), "--watch", "0"]) == 2
    assert "--watch: give a positive number of seconds" in capsys.readouterr().err


def _page_paragraphs(page: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", p) for p in re.findall(r"<p[^>]*>(.*?)</p>", page, flags=re.S)]


def test_units_line_names_the_units_of_the_table_headers():
    """The line above index.html's round table names the unit every column header states (energy
    errors in meV/atom: the unit of the numbers, report.json's eV/atom × 1000), and no other
    unit for energies."""
    from al_flows.campaign.report import render_html

    config = validate_campaign(TINY)
    summary = {
        "round": 0,
        "n_labels_total": 10,
        "n_explored": 4,
        "accurate_ratio": 0.5,
        "val_force_rmse": 0.2,
        "test_force_rmse": 0.3,
        "test_energy_rmse_per_atom": 0.0123,  # eV/atom
        "median_survival_ps": 1.5,
    }
    page = render_html(config, [summary], {}, [])
    (table,) = _html_tables(page)
    header, row = table
    cells = dict(zip(header, row, strict=True))
    assert cells["test energy RMSE (meV/atom)"] == "12.30"  # 0.0123 eV/atom shown in meV/atom
    units_line = next(p for p in _page_paragraphs(page) if p.startswith("Units"))
    header_units = {re.search(r"\(([^)]+)\)$", h).group(1) for h in header if h.endswith(")")}
    assert header_units == {"eV/Å", "meV/atom", "ps"}
    assert all(u in units_line for u in header_units), (header_units, units_line)
    assert "energy errors meV/atom" in units_line
    assert not any(re.search(r"Energies eV\b", p) for p in _page_paragraphs(page))


def _finished_store(config, stop_reason: str, converged: bool, n_rounds: int) -> JobStore:
    """A store holding ``n_rounds`` round summaries and the CampaignResult that ended the campaign."""
    store = JobStore(MemoryStore())
    store.connect()
    meta = {"campaign": config.name, "fingerprint": config.fingerprint()}
    docs = [
        {
            "uuid": f"s{r}",
            "index": 1,
            "metadata": {**meta, "stage": "summary", "round": r},
            "output": {"round": r, "model_ids": [], "ensemble_id": f"e{r}"},
        }
        for r in range(n_rounds)
    ]
    docs.append(
        {
            "uuid": "result",
            "index": 1,
            "metadata": {**meta, "stage": "round", "round": n_rounds},
            "output": {
                "n_rounds": n_rounds,
                "final_round": n_rounds - 1,
                "converged": converged,
                "stop_reason": stop_reason,
                "n_labels_total": 10,
            },
        }
    )
    store.docs_store.update(docs, key=["uuid", "index"])
    return store


@pytest.mark.parametrize(
    ("stop_reason", "converged", "words"),
    [
        ("round limit", False, "not converged; stop reason: round limit reached (max_rounds: 2)"),
        ("budget", False, "not converged; stop reason: labelling budget spent (labeller.budget)"),
        ("converged", True, "converged; stop reason: converged"),
    ],
)
def test_html_shows_why_the_campaign_stopped(stop_reason, converged, words):
    """index.html names report.json's stop reason of a finished campaign, not only 'not converged'."""
    from al_flows.campaign.report import render_html
    from al_flows.campaign.report_data import campaign_status
    from al_flows.campaign.report_json import build_report

    config = validate_campaign(TINY)
    store = _finished_store(config, stop_reason, converged, TINY["max_rounds"])
    try:
        assert build_report(store, config)["stop_reason"] == stop_reason
        status = campaign_status(store, config)
    finally:
        store.close()
    assert status == f"finished after 2 round(s), {words}"
    stored = _page_paragraphs(render_html(config, [], {}, [], status))[0]
    assert stored == f"0 round(s) stored; campaign finished after 2 round(s), {words}."
