"""Progress lines (round, stage, counts) emitted by jobs; the CLI prints them live."""

from __future__ import annotations

import logging

logger = logging.getLogger("al_flows.progress")


def report(stage: str, round_: int | None = None, **counts) -> None:
    """Log one progress line, e.g. ``round 1 | explore | frames=24``; the record also carries
    ``al_stage`` and ``al_round`` for handlers that act on it (e.g. the live report)."""
    parts = [f"round {round_}" if round_ is not None and round_ >= 0 else "initial", stage]
    parts += [f"{k}={v}" for k, v in counts.items()]
    logger.info(" | ".join(parts), extra={"al_stage": stage, "al_round": round_})
