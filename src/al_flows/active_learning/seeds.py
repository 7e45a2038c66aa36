"""The seed stream of an active-learning campaign: every random seed of the loop, derived from the
campaign's one seed and a named purpose, so no two uses share a seed and none is a magic number in
the flow code. The purpose numbers are part of every campaign's results: changing one changes them."""

from __future__ import annotations

from dataclasses import dataclass

from al_flows.workflow.jobs import derived_seed

__all__ = ["CampaignSeeds"]

TEST_COPIES, INITIAL_COPIES, LABELLER_TEST_SET = 997, 998, 999  # purposes before round 0
EXPLORE_BASE, SELECT = 1000, 2000  # per round: explorer i uses EXPLORE_BASE + i; members use 0 ...


@dataclass(frozen=True)
class CampaignSeeds:
    """Seeds of one campaign (31-bit integers from :func:`al_flows.workflow.jobs.derived_seed`)."""

    seed: int = 0

    def initial_copies(self) -> int:
        """The rattled copies labelled as initial data."""
        return derived_seed(self.seed, INITIAL_COPIES)

    def test_copies(self) -> int:
        """The rattled copies of a ``perturbed`` test set."""
        return derived_seed(self.seed, TEST_COPIES)

    def labeller_test_set(self) -> int:
        """The frames of a ``mixed`` or ``labeller_shear`` test set."""
        return derived_seed(self.seed, LABELLER_TEST_SET)

    def train(self, round_: int, member: int) -> int:
        """Training of ensemble member ``member`` in round ``round_``."""
        if not 0 <= member < EXPLORE_BASE:
            raise ValueError(f"ensemble member {member}: at most {EXPLORE_BASE} members have their own seed")
        return derived_seed(self.seed, round_, member)

    def explore(self, round_: int, explorer: int) -> int:
        """Explorer number ``explorer`` (its place in the campaign's list) in round ``round_``."""
        if not 0 <= explorer < SELECT - EXPLORE_BASE:
            raise ValueError(f"explorer {explorer}: at most {SELECT - EXPLORE_BASE} explorers have their own seed")
        return derived_seed(self.seed, round_, EXPLORE_BASE + explorer)

    def select(self, round_: int) -> int:
        """The random picks of the selection in round ``round_``."""
        return derived_seed(self.seed, round_, SELECT)
