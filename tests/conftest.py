"""Shared fixtures: a tiny campaign that runs two rounds in well under a minute."""

import copy
import os
import warnings

import pytest

from helpers import TINY

warnings.filterwarnings("ignore", category=DeprecationWarning)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core (scripts/check.sh): each worker, and every process its
    # tests start (al-flows commands, SLURM jobs), computes on one thread instead of all the cores
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"


# test files that take minutes (measured on 2 cores), collected first so that pytest-xdist hands them
# out before the short ones and the workers finish together
SLOW_FILES = ("test_fireworks_slurm.py", "test_resume.py", "test_demo.py", "test_continuation.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: files stay whole


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def tiny_dict():
    """A fresh copy of the tiny campaign's settings (trust window makes every frame a candidate)."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def slurm_ready():
    """Skip (with the reason, never silently) where a private SLURM cluster cannot run."""
    from slurm_cluster import slurm_unavailable_reason

    reason = slurm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no SLURM cluster here: {reason}")
