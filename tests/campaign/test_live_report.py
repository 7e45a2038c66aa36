"""The live report: rewritten once per stored round while a campaign runs, never stopping it."""

import logging

import pytest

from al_flows.campaign.live_report import LiveReport, watch_report
from al_flows.workflow import progress


@pytest.fixture
def attached():
    """A LiveReport on the progress logger (at INFO) whose writes are recorded; (handler, written rounds)."""
    written: list[int] = []
    handler = LiveReport(written.append)
    lg = logging.getLogger("al_flows.progress")
    old = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    yield handler, written
    lg.removeHandler(handler)
    lg.setLevel(old)


def test_one_write_per_stored_round(attached):
    handler, written = attached
    progress.report("round start", 0, labels=6)  # nothing stored yet
    progress.report("train", 0, member=0)
    progress.report("round start", 1, labels=12)  # round 0's summary is stored
    progress.report("select", 1, explored=24)
    progress.report("round resumed", 2, done=3)  # a continued run: round 1 is stored
    progress.report("round resumed", 2, done=3)  # (said twice: written once)
    progress.report("finished", 2, labels=30, reason="converged")  # the last round, 2
    progress.report("finished", 2, labels=30, reason="converged")
    assert written == [0, 1, 2] == handler.written


def test_a_failing_report_is_one_warning_and_the_campaign_goes_on(attached, caplog):
    handler, _ = attached

    def broken(round_):
        raise OSError("No space left on device\nsecond line")

    handler.write = broken
    with caplog.at_level(logging.WARNING, logger="al_flows.live_report"):
        progress.report("round start", 1, labels=12)  # must not raise
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "al_flows.live_report"]
    assert msg == (
        "report after round 0 not written (OSError: No space left on device second line); the campaign goes on"
    )


def test_watch_writes_when_a_round_appears_and_once_more_at_the_end():
    looks = iter([(False, 0), (False, 0), (False, 1), (False, 1), (False, 3), (True, 3)])
    writes, sleeps = [], []
    n = watch_report(lambda: writes.append(len(sleeps)), lambda: next(looks), 30.0, sleep=sleeps.append)
    # written at the first look (0 rounds), when 1 and 3 rounds appear, and when finished
    assert writes == [0, 2, 4, 5] and n == 4 and sleeps == [30.0] * 5
