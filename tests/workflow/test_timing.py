"""Per-stage time of a round from the jobs' timing records."""

import pytest

from al_flows.workflow.timing import Stopwatch, stage_times, timing_record


def rec(stage, started, wall, cpu):
    return {"stage": stage, "started": started, "ended": started + wall, "wall_s": wall, "cpu_s": cpu}


def test_stage_times_sums_per_stage_and_measures_the_overhead_between_jobs():
    records = [rec("train", 0.0, 10.0, 18.0), rec("train", 10.5, 9.0, 17.0), rec("explore", 20.0, 5.0, 5.0)]
    t = stage_times(records)
    assert t["stages"]["train"] == {"wall_s": 19.0, "cpu_s": 35.0, "n_jobs": 2}
    assert t["stages"]["explore"] == {"wall_s": 5.0, "cpu_s": 5.0, "n_jobs": 1}
    assert t["span_s"] == 25.0 and t["total_wall_s"] == 24.0 and t["total_cpu_s"] == 40.0
    assert t["overhead_s"] == pytest.approx(1.0)  # the gaps 10.0-10.5 and 19.5-20.0
    # jobs that overlap (parallel workers): no negative overhead
    assert stage_times([rec("train", 0.0, 10.0, 10.0), rec("train", 0.0, 10.0, 10.0)])["overhead_s"] == 0.0
    assert stage_times([]) == {}


def test_a_timing_record_names_its_job_and_measures_it(monkeypatch):
    """With the clocks replaced by fixed steps (no real timing is asserted): wall, CPU, start and end."""
    import al_flows.workflow.timing as timing

    clocks = {"perf_counter": iter([10.0, 12.5]), "process_time": iter([3.0, 7.0]), "time": iter([100.0, 102.5])}
    for name, values in clocks.items():
        monkeypatch.setattr(timing.time, name, lambda values=values: next(values))
    watch = Stopwatch()
    r = timing_record({"campaign": "c", "round": 2, "stage": "select"}, "select r2", "u", 1, watch, ok=True)
    assert (r["campaign"], r["round"], r["stage"], r["job_name"], r["job_uuid"], r["ok"]) == (
        "c",
        2,
        "select",
        "select r2",
        "u",
        True,
    )
    assert (r["wall_s"], r["cpu_s"], r["started"], r["ended"]) == (2.5, 4.0, 100.0, 102.5)
