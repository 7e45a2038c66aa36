"""The report of a running campaign, rewritten after every round.

``al-flows run`` attaches :class:`LiveReport` to the progress logger: when a round's summary is
stored (the next round starts, or the campaign finishes), it rewrites ``WORKDIR/report/``
(:func:`al_flows.campaign.report.write_report`: index.html and the PNGs) and ``WORKDIR/report.json``,
so a long campaign can be watched in a browser. Campaigns run by FireWorks workers have no such
process: ``al-flows report WORKDIR --watch SECONDS`` polls the store and rewrites the report when a
new round is stored, until the campaign has finished.

A report that cannot be written (a plot failing on odd data, a full disk) never stops the
campaign: the problem is logged as one warning line and the next round tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ROUND_STORED", "LiveReport", "rewriting_report", "watch_report"]

logger = logging.getLogger("al_flows.live_report")

ROUND_STORED = ("round start", "round resumed", "finished")
"""Progress stages emitted once the summary of the round before is in the store."""


class LiveReport(logging.Handler):
    """A logging handler that calls ``write(round)`` when a progress record says a round's summary
    is stored (its ``al_stage`` in :data:`ROUND_STORED`; ``round`` = the last stored round), once per
    round; failures of ``write`` become one warning line."""

    def __init__(self, write: Callable[[int], object]):
        super().__init__(logging.INFO)
        self.write = write
        self.written: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Rewrite the report when ``record`` follows a stored round summary."""
        stage, round_ = getattr(record, "al_stage", None), getattr(record, "al_round", None)
        if stage not in ROUND_STORED or round_ is None:
            return
        last = round_ if stage == "finished" else round_ - 1
        if last < 0 or last in self.written:
            return
        self.written.append(last)
        try:
            self.write(last)
        except Exception as exc:  # the report is a view; the campaign goes on
            text = " ".join(str(exc).split())[:200]
            logger.warning(
                f"report after round {last} not written ({type(exc).__name__}: {text}); the campaign goes on"
            )


@contextmanager
def rewriting_report(write: Callable[[int], object]) -> Iterator[LiveReport]:
    """While a campaign runs in this process, call ``write(round)`` after every stored round
    (a :class:`LiveReport` on the progress logger, which is made to pass INFO records for the duration)."""
    handler = LiveReport(write)
    progress_logger = logging.getLogger("al_flows.progress")
    old_level = progress_logger.level
    progress_logger.addHandler(handler)
    if progress_logger.getEffectiveLevel() > logging.INFO:
        progress_logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        progress_logger.removeHandler(handler)
        progress_logger.setLevel(old_level)


def watch_report(
    write: Callable[[], object], finished: Callable[[], tuple[bool, int]], every_s: float, sleep=time.sleep
) -> int:
    """Poll ``finished()`` -> (finished, rounds stored) every ``every_s`` seconds and call ``write()``
    whenever the number of stored rounds grows, and once more when the campaign has finished.
    Returns the number of reports written."""
    seen, n = -1, 0
    while True:
        done, rounds = finished()
        if rounds != seen or done:
            write()
            n += 1
            seen = rounds
        if done:
            return n
        sleep(every_s)
