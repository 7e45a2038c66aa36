"""Run ``al-flows`` in this process, log the work it completes, and SIGKILL it at a chosen point.

    python tests/fault_runner.py LOG [--kill POINT] -- <al-flows arguments>

POINT is ``EVENT@STAGE:ROUND#N``: the N-th EVENT inside a job of that stage and round.

- ``epochs@train:R#N``   the N-th training (``Trainer.run_epochs``): half of its epochs run, then kill;
- ``predict@explore:R#N`` before the N-th ensemble prediction of an exploration (of frames or of prebuilt inputs);
- ``calc@label:R#N``     before the N-th EMT calculation of a label job;
- ``blob@STAGE:R#N``     right after the N-th output blob of such a job is written to the data store
                         (its document is not yet written: a kill inside a store write);
- ``doc@STAGE:R#N``      right after the N-th output document of such a job is written.

Every finished unit of work is appended to LOG as one line (``train R``, ``explore R``,
``emt STAGE R``), so a test can check that a resumed run repeats none of it. The kill is a
real ``SIGKILL`` of this process: no cleanup, no atexit, no flush of anything.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter


def _current() -> tuple[str, int] | None:
    from jobflow import CURRENT_JOB

    job = CURRENT_JOB.job
    if job is None:
        return None
    meta = job.metadata or {}
    return meta.get("stage"), meta.get("round")


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts, cli_args = argv[:split], argv[split + 1 :]
    log_path = opts[0]
    kill = opts[opts.index("--kill") + 1] if "--kill" in opts else None
    event = stage = None
    rnd = nth = -1
    if kill:
        event, rest = kill.split("@")
        where, nth = rest.split("#")
        stage, rnd = where.split(":")
        rnd, nth = int(rnd), int(nth)
    counts: Counter = Counter()

    def log(line: str) -> None:
        with open(log_path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def at(name: str) -> bool:
        """Count EVENT ``name`` in the current job; True when it is the one to kill at."""
        cur = _current()
        if kill is None or name != event or cur != (stage, rnd):
            return False
        counts[name] += 1
        return counts[name] == nth

    def die() -> None:
        log(f"killed {kill}")
        os.kill(os.getpid(), signal.SIGKILL)

    import ase.calculators.emt as emt_mod
    import jobflow
    from maggma.stores import MontyStore

    import al_flows.active_learning.jobs.exploration as exploration_mod
    import al_flows.active_learning.jobs.training as training_makers
    import al_flows.potential.ensemble as ensemble_mod
    import al_flows.potential.training as training_mod

    run_epochs = training_mod.Trainer.run_epochs

    def patched_run_epochs(self, train_idx, val_idx, n_epochs):
        if at("epochs"):
            run_epochs(self, train_idx, val_idx, max(1, n_epochs // 2))
            die()
        return run_epochs(self, train_idx, val_idx, n_epochs)

    training_mod.Trainer.run_epochs = patched_run_epochs

    train_member = training_makers.train_member

    def patched_train_member(*a, **k):
        out = train_member(*a, **k)
        log(f"train {_current()[1]}")
        return out

    training_makers.train_member = patched_train_member

    predict = ensemble_mod.Ensemble.predict

    def patched_predict(self, *a, **k):
        if at("predict"):
            die()
        return predict(self, *a, **k)

    ensemble_mod.Ensemble.predict = patched_predict
    predict_inputs = ensemble_mod.Ensemble.predict_inputs

    def patched_predict_inputs(self, *a, **k):  # the batched optimiser's predictions (prebuilt inputs)
        if at("predict"):
            die()
        return predict_inputs(self, *a, **k)

    ensemble_mod.Ensemble.predict_inputs = patched_predict_inputs

    for name in ("explore_shear", "explore_shear_batched"):
        original = getattr(exploration_mod, name)

        def patched_explore(*a, _original=original, **k):
            out = _original(*a, **k)
            log(f"explore {_current()[1]}")
            return out

        setattr(exploration_mod, name, patched_explore)

    calculate = emt_mod.EMT.calculate

    def patched_calculate(self, *a, **k):
        if at("calc"):
            die()
        out = calculate(self, *a, **k)
        cur = _current() or ("none", -9)
        log(f"emt {cur[0]} {cur[1]}")
        return out

    emt_mod.EMT.calculate = patched_calculate

    update = MontyStore.update

    def patched_update(self, docs, key=None, *a, **k):
        out = update(self, docs, key, *a, **k)
        first = docs[0] if isinstance(docs, list) and docs else docs
        if isinstance(first, dict) and "job_index" in first and "blob_uuid" in first and at("blob"):
            die()
        return out

    MontyStore.update = patched_update

    store_update = jobflow.JobStore.update

    def patched_store_update(self, docs, *a, **k):
        out = store_update(self, docs, *a, **k)
        if at("doc"):
            die()
        return out

    jobflow.JobStore.update = patched_store_update

    from al_flows.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
