"""Run a campaign locally with jobflow, continue it from its store, and write report.json.

Campaign state lives in the JobStore: every round ends with a ``round_summary``
document, and the campaign with a ``CampaignResult``. Running the same campaign
on the same work directory again continues after the last stored round (or
only rewrites the report when the campaign has finished).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from jobflow import Flow, JobStore, run_locally

from al_flows.config import AnyConfig, CampaignConfig, ConfigError, PoolStudyConfig
from al_flows.makers._common import drop_completed
from al_flows.makers.active_learning import ActiveLearningMaker
from al_flows.queries import latest_outputs
from al_flows.stores import ensure_indexes, make_job_store

REPORT_KEYS = (
    "round", "n_labels_total", "n_explored", "n_accurate", "n_candidate", "n_failed", "n_labelled",
    "accurate_ratio", "val_force_rmse", "test_force_rmse", "test_energy_rmse_per_atom",
)


class CampaignError(RuntimeError):
    """A campaign that cannot start or did not finish; the message says why and what to do."""


@contextmanager
def workdir_lock(workdir: Path):
    """Hold an exclusive lock on WORKDIR so a second al-flows process cannot write the same store."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / ".al_flows.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignError(
                f"another al-flows process is using {workdir} (lock {path}); wait for it to finish or use another --workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _outputs(store: JobStore, campaign: str, stage: str) -> list[dict]:
    """Latest output of every job of ``campaign`` at ``stage`` (documents only, blobs not loaded)."""
    return latest_outputs(store, campaign, stage, properties=["output"])


def campaign_state(store: JobStore, config: CampaignConfig) -> tuple[dict | None, dict | None]:
    """(CampaignResult or None, last RoundSummary or None) stored for this campaign.

    Raises CampaignError when the store holds the same campaign name with other settings.
    """
    fp = config.fingerprint()
    other = store.query_one({"metadata.campaign": config.name, "metadata.fingerprint": {"$exists": True, "$ne": fp}}, properties=["metadata"])
    if other is not None:
        raise CampaignError(
            f"the store already holds campaign '{config.name}' run with different settings "
            f"(fingerprint {other['metadata'].get('fingerprint')} != {fp}); use a new --workdir or rename the campaign"
        )
    results = [d["output"] for d in _outputs(store, config.name, "round") if d["output"].get("n_rounds") is not None]
    summaries = sorted((d["output"] for d in _outputs(store, config.name, "summary")), key=lambda s: s["round"])
    return (results[-1] if results else None), (summaries[-1] if summaries else None)


def pool_study_final_stage(config: PoolStudyConfig) -> str:
    """The stage whose output marks a pool study as finished."""
    if config.validation is not None:
        return "validation"
    return "pathways" if config.shear_study is not None else "compare"


def build_pool_study_report(store: JobStore, config: PoolStudyConfig) -> dict:
    """report.json of a pool study: Table I rows and ratios, pathway counts, validation summary."""
    def last(stage):
        docs = _outputs(store, config.name, stage)
        return docs[-1]["output"] if docs else None

    compare, paths, val = last("compare"), last("pathways"), last("validation")
    report = {
        "campaign": config.name,
        "workflow": "pool_study",
        "finished": last(pool_study_final_stage(config)) is not None,
        "table": compare["rows"] if compare else [],
        "ratios": compare["ratios"] if compare else {},
    }
    if paths:
        report["pathways"] = {
            name: {"n_runs": s["n_runs"], "n_pathways": s["n_pathways"], "counts_by_type": s["counts_by_type"]}
            for name, s in paths["systems"].items()
        }
    if val:
        report["validation"] = {k: val[k] for k in ("n_minima", "n_spurious", "n_agree_single", "max_abs_d_single_per_atom")}
    return report


def build_report(store: JobStore, config: AnyConfig) -> dict:
    """The report.json content: one row per round (latest run of each round)."""
    if isinstance(config, PoolStudyConfig):
        return build_pool_study_report(store, config)
    by_round: dict[int, dict] = {}
    for d in sorted(_outputs(store, config.name, "summary"), key=lambda d: d["output"]["round"]):
        by_round[d["output"]["round"]] = d["output"]
    result, _ = campaign_state(store, config)
    rounds = [{k: by_round[r][k] for k in REPORT_KEYS} for r in sorted(by_round)]
    report = {
        "campaign": config.name,
        "converged": bool(result and result["converged"]),
        "finished": result is not None,
        "rounds": rounds,
    }
    autotests = _outputs(store, config.name, "autotest")
    if autotests:
        doc = autotests[-1]["output"]
        report["autotest"] = {"round": doc["round"], "reference": doc["reference"], "passed": doc["passed"],
                              "rows": [{**r, "element": el} for el, res in doc["results"].items() for r in res["rows"]]}
    return report


def plan_flow(config: AnyConfig, base_dir: Path, store: JobStore) -> tuple[Flow | None, str]:
    """The flow to run now (None when finished) and a one-line description of why."""
    if isinstance(config, PoolStudyConfig):
        from al_flows.makers.pool_study import PoolStudyMaker

        campaign_state(store, config)  # refuses a store holding the name with other settings
        if _outputs(store, config.name, pool_study_final_stage(config)):
            return None, f"pool study '{config.name}' already finished; report rewritten"
        todo, done = drop_completed(PoolStudyMaker(config=config, base_dir=str(base_dir)).jobs(), store)
        flow = Flow(todo, name=f"pool study {config.name}")
        if done:
            return flow, f"continuing pool study '{config.name}' ({len(done)} finished job(s) reused)"
        return flow, f"starting pool study '{config.name}'"
    maker = ActiveLearningMaker.from_config(config, base_dir)
    result, last = campaign_state(store, config)
    if result is not None:
        if maker.autotest is not None and not _outputs(store, config.name, "autotest"):
            return maker.autotest_flow(result["final_round"]), f"campaign '{config.name}' finished; running its autotest"
        return None, f"campaign '{config.name}' already finished after {result['n_rounds']} round(s); report rewritten"
    if last is not None:
        return maker.continue_from(last), f"continuing campaign '{config.name}' after round {last['round']}"
    # jobs that finished in an earlier, interrupted run are not run again (outputs read by uuid)
    todo, done = drop_completed(maker.initial_jobs(), store)
    flow = Flow(todo, name=f"{config.name} campaign")
    if done:
        return flow, f"continuing campaign '{config.name}' before round 0 ({len(done)} finished job(s) reused)"
    return flow, f"starting campaign '{config.name}'"


WORKDIR_CONFIG = "campaign.json"


def remember_campaign(config: CampaignConfig, workdir: Path) -> None:
    """Keep the campaign's settings in WORKDIR/campaign.json (mode 0600: it may hold store
    credentials) so that status/lineage/export/report need only --workdir."""
    path = Path(workdir) / WORKDIR_CONFIG
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    path.chmod(0o600)


def load_workdir_campaign(workdir: str | Path) -> CampaignConfig:
    """The campaign settings a work directory was run with."""
    from al_flows.config import validate_campaign

    path = Path(workdir) / WORKDIR_CONFIG
    if not path.is_file():
        raise ConfigError(f"--workdir: {workdir} holds no campaign ({WORKDIR_CONFIG} missing); run or submit a campaign there first")
    return validate_campaign(json.loads(path.read_text()), source=str(path))


def prepare_store(config: CampaignConfig, workdir: Path) -> JobStore:
    """Remember the settings in WORKDIR, connect the campaign's store and create its indexes."""
    remember_campaign(config, workdir)
    store = make_job_store(config.store, workdir)
    store.connect()
    ensure_indexes(store)
    return store


def run_campaign(config: CampaignConfig, base_dir: str | Path, workdir: str | Path, echo=print) -> dict:
    """Run (or continue) a campaign with jobflow's run_locally; return and write the report."""
    from al_flows.initial_data import check_campaign_structures

    try:  # bad starting structures: one line now, not a failed job later
        check_campaign_structures(config, Path(base_dir))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    workdir = Path(workdir).resolve()
    with workdir_lock(workdir):
        store = prepare_store(config, workdir)
        try:
            flow, why = plan_flow(config, Path(base_dir), store)
            echo(why)
            start = time.perf_counter()
            failures = _FailureCollector()
            if flow is not None:
                jobs_dir = workdir / "jobs"
                jobs_dir.mkdir(exist_ok=True)
                cwd = os.getcwd()
                jobflow_logger = logging.getLogger("jobflow.managers.local")
                jobflow_logger.addHandler(failures)
                old_level = jobflow_logger.level
                jobflow_logger.setLevel(logging.INFO)
                try:
                    run_locally(flow, store=store, root_dir=jobs_dir, create_folders=True, log=False, allow_external_references=True)
                finally:
                    jobflow_logger.removeHandler(failures)
                    jobflow_logger.setLevel(old_level)
                    os.chdir(cwd)
            report = build_report(store, config)
            report["wall_time_s"] = round(time.perf_counter() - start, 1)
            (workdir / "report.json").write_text(json.dumps(report, indent=2))
            if flow is not None and getattr(config, "autotest", None) is not None and report["finished"] and "autotest" not in report:
                raise CampaignError(f"campaign '{config.name}' finished but its autotest did not complete: {failures.summary()}")
            if flow is not None and not report["finished"]:
                raise CampaignError(
                    f"campaign '{config.name}' stopped before finishing: {failures.summary()}; "
                    f"fix the cause and run the same command again to continue"
                )
            return report
        finally:
            store.close()


class _FailureCollector(logging.Handler):
    """Remembers the jobs that run_locally reports as failed (name and last traceback line)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "failed with exception" in msg:
            name = msg.split(" failed with exception", 1)[0]
            last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1].strip()
            self.failed.append((last.startswith("al_flows."), f"job '{name}' failed ({last})"))

    def summary(self) -> str:
        """The first failure, al_flows' own errors (which say what to do) before others."""
        if not self.failed:
            return "a job did not complete"
        first = sorted(self.failed, key=lambda f: not f[0])[0][1]
        more = f" (and {len(self.failed) - 1} more failed job(s))" if len(self.failed) > 1 else ""
        return first + more


def open_store(config: CampaignConfig, workdir: str | Path) -> JobStore:
    """Connected JobStore of a campaign work directory (for queries)."""
    if not Path(workdir).exists():
        raise ConfigError(f"--workdir: {workdir} does not exist; run the campaign first")
    store = make_job_store(config.store, workdir)
    store.connect()
    return store


class ProgressPrinter(logging.Handler):
    """Prints al_flows progress lines and job failures as they happen."""

    def __init__(self, echo=print):
        super().__init__(logging.INFO)
        self.echo = echo
        self.t0 = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.name.startswith("al_flows.progress"):
            elapsed = time.perf_counter() - self.t0
            self.echo(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {msg}")
        elif "failed with exception" in msg or record.levelno >= logging.WARNING:
            self.echo(f"ERROR {msg}" if "failed with exception" in msg else msg)


@contextmanager
def live_progress(echo=print):
    """Attach a ProgressPrinter to the al_flows and jobflow loggers for the duration."""
    handler = ProgressPrinter(echo)
    loggers = [logging.getLogger("al_flows.progress"), logging.getLogger("jobflow")]
    old = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, (level, prop) in zip(loggers, old, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = prop
