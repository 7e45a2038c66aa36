"""Where a campaign's time goes: every al_flows job records its wall and CPU time in the store, and
the rounds' time per stage is summed from those records (docs/loop.md, "Where the time goes").

A timing record (``TIMING_KEY`` in the JobStore's docs store, beside the failure records) holds the
job's campaign, round, stage, name, uuid and index, ``wall_s`` (seconds, ``time.perf_counter``),
``cpu_s`` (seconds of CPU of the worker process during the job, ``time.process_time``: every
thread of it, so with torch on several threads it can exceed the wall time), ``started`` and
``ended`` (epoch seconds) and ``ok`` (False when the job raised). Jobs of one process run one at a
time (``run_locally``, one FireWorks rocket), so CPU time is the job's own.

:func:`stage_times` sums a round's records per stage; the span from its first job's start to its
last job's end, less the sum of the stages' wall times, is ``overhead_s``: the store, bookkeeping
and reporting between the jobs (0 when jobs overlap, on parallel FireWorks workers).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

__all__ = ["TIMING_KEY", "Stopwatch", "timing_record", "stage_times"]

TIMING_KEY = "timing"


class Stopwatch:
    """Wall and CPU seconds since it was made (``wall_s``, ``cpu_s``) and its start (epoch seconds)."""

    def __init__(self) -> None:
        self.started = time.time()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    @property
    def wall_s(self) -> float:
        """Wall seconds since the start."""
        return time.perf_counter() - self._wall

    @property
    def cpu_s(self) -> float:
        """CPU seconds of this process since the start."""
        return time.process_time() - self._cpu


def timing_record(metadata: dict, name: str, uuid: str, index: int, watch: Stopwatch, ok: bool) -> dict:
    """The timing record of a job (its ``metadata``: campaign, fingerprint, round, stage) timed by ``watch``."""
    return {
        "campaign": metadata.get("campaign", ""),
        "fingerprint": metadata.get("fingerprint", ""),
        "round": metadata.get("round", -1),
        "stage": metadata.get("stage", ""),
        "job_name": name,
        "job_uuid": uuid,
        "job_index": index,
        "wall_s": round(watch.wall_s, 4),
        "cpu_s": round(watch.cpu_s, 4),
        "started": watch.started,
        "ended": time.time(),
        "ok": ok,
    }


def stage_times(records: Iterable[dict]) -> dict:
    """Per stage of the ``records`` (one round's): {wall_s, cpu_s, n_jobs} summed over its jobs (a job
    run twice, e.g. after a kill, counts each time), plus ``span_s`` (first start to last end),
    ``total_wall_s`` and ``total_cpu_s`` (the stages' sums) and ``overhead_s`` (span less the stages'
    wall time, at least 0). {} without records."""
    recs = list(records)
    if not recs:
        return {}
    stages: dict[str, dict] = defaultdict(lambda: {"wall_s": 0.0, "cpu_s": 0.0, "n_jobs": 0})
    for r in recs:
        s = stages[r.get("stage") or "other"]
        s["wall_s"] += float(r["wall_s"])
        s["cpu_s"] += float(r["cpu_s"])
        s["n_jobs"] += 1
    span = max(r["ended"] for r in recs) - min(r["started"] for r in recs)
    wall = sum(s["wall_s"] for s in stages.values())
    return {
        "stages": {k: {**v, "wall_s": round(v["wall_s"], 3), "cpu_s": round(v["cpu_s"], 3)} for k, v in stages.items()},
        "span_s": round(span, 3),
        "total_wall_s": round(wall, 3),
        "total_cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 3),
        "overhead_s": round(max(span - wall, 0.0), 3),
    }
