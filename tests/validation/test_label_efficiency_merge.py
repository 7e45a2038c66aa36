"""benchmarks/label_efficiency.py --merge: parts of one configuration run side by side (other seeds)
join into the results.json one run would have written; parts that overlap or differ are refused."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "docs" / "results" / "label_efficiency_quick" / "results.json"


def benchmark():
    spec = importlib.util.spec_from_file_location("label_efficiency", ROOT / "benchmarks" / "label_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def part(results: dict, seeds: list[str]) -> dict:
    """``results`` cut to ``seeds``, as a run with ``--seeds`` would have written it."""
    out = copy.deepcopy(results)
    out["runs"] = {
        s: {m: {k: v for k, v in runs.items() if k in seeds} for m, runs in modes.items()}
        for s, modes in results["runs"].items()
    }
    out["meta"]["settings"]["seeds"] = [int(x) for x in seeds]
    out["timings_s"] = {k: v for k, v in results["timings_s"].items() if k.rsplit("/", 1)[1] in seeds}
    out["wall_s"] = sum(out["timings_s"].values())
    return out


def test_parts_join_into_the_whole_run_and_overlaps_are_refused():
    whole = json.loads(QUICK.read_text())
    le = benchmark()
    merged = le.merge([part(whole, ["2"]), part(whole, ["0", "1"])])
    assert merged["runs"] == whole["runs"] and merged["meta"]["settings"] == whole["meta"]["settings"]
    assert merged["timings_s"] == whole["timings_s"]
    assert merged["wall_s"] == max(
        whole["timings_s"]["cuni_shear/replay/0"] + whole["timings_s"]["cuni_shear/replay/1"],
        whole["timings_s"]["cuni_shear/replay/2"],
    )
    with pytest.raises(SystemExit, match=r"seeds \['1'\] are in more than one part"):
        le.merge([part(whole, ["0", "1"]), part(whole, ["1", "2"])])
    other = part(whole, ["2"])
    other["meta"]["settings"]["epochs"] += 1
    with pytest.raises(SystemExit, match="other settings"):
        le.merge([part(whole, ["0"]), other])
