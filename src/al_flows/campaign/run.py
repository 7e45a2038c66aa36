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

from al_flows import __version__, ignore_jobflow_cd_warning
from al_flows.campaign.config import AnyConfig, ConfigError
from al_flows.campaign.live_report import watch_report
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.stores import ensure_indexes, make_job_store
from al_flows.campaign.workflows import workflow_of
from al_flows.workflow.config import settings_diff
from al_flows.workflow.store_queries import discard_attempt, has_output_beyond, other_fingerprint


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
                f"another al-flows process is using {workdir} (lock {path}); wait for it to finish or use another "
                "--workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# Stages of the cheap, deterministic setup jobs before any label or model exists: an earlier
# attempt that got no further than these used nothing of the settings a user may correct.
SETUP_STAGES = ("structures", "perturb", "perturb_test")


def check_settings(store: JobStore, config: AnyConfig, workdir: Path | None = None) -> str:
    """Refuse a store that holds this campaign run with other settings (CampaignError naming the
    keys that differ, old -> new). An earlier attempt that stopped before any job beyond the
    setup jobs finished is discarded instead. Returns a note for the user ('' when nothing to say)."""
    fp = config.fingerprint()
    old_fp = other_fingerprint(store, config.name, fp)
    if old_fp is None:
        return ""
    if not has_output_beyond(store, config.name, old_fp, SETUP_STAGES):
        n = discard_attempt(store, config.name, old_fp)
        return (
            f"an earlier attempt with other settings stopped before any result ({n} setup job(s) discarded); "
            "starting with the settings given"
        )
    diff = []
    if workdir is not None and (Path(workdir) / WORKDIR_CONFIG).is_file():
        try:
            previous = load_workdir_campaign(workdir)
        except ConfigError:
            previous = None
        if previous is not None and previous.fingerprint() == old_fp:
            diff = settings_diff(previous.fingerprint_settings(), config.fingerprint_settings())
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise CampaignError(
            f"the store already holds campaign '{config.name}' with other settings ({shown}); "
            "restore them to continue, or use a new --workdir"
        )
    raise CampaignError(
        f"the store already holds campaign '{config.name}' with other settings (fingerprint {old_fp} != {fp}; "
        "the work directory may come from an earlier al_flows version); use a new --workdir"
    )


def plan_flow(config: AnyConfig, base_dir: Path, store: JobStore) -> tuple[Flow | None, str]:
    """The flow to run now (None when finished) and a one-line description of why (the workflow's plan)."""
    return workflow_of(config).plan(config, store, base_dir)


WORKDIR_CONFIG = "campaign.json"
WORKDIR_VERSION = "al_flows_version"  # the al_flows version that wrote the work directory (from 0.2 on)


def check_workdir_version(workdir: str | Path) -> None:
    """Refuse, in one line, a work directory written by al_flows 0.1: its stored documents name
    classes by their 0.1 module paths, which this version cannot read. One without a campaign
    yet (no campaign.json) passes."""
    path = Path(workdir)
    if (path / WORKDIR_CONFIG).is_file() and not (path / WORKDIR_VERSION).is_file():
        raise ConfigError(
            f"--workdir: {workdir} was written by al_flows 0.1, whose stored documents this version cannot "
            "read; use a new --workdir (or al_flows 0.1 to finish that campaign)"
        )


def check_workdir_campaign(config: AnyConfig, workdir: str | Path) -> None:
    """Refuse, in one line and before anything is written, a work directory that holds another
    campaign (its campaign.json names another): a work directory holds one campaign, and a second
    name would replace campaign.json, hiding the first from status, lineage, export and report.
    Also :func:`check_workdir_version`."""
    check_workdir_version(workdir)
    try:
        held = json.loads((Path(workdir) / WORKDIR_CONFIG).read_text()).get("name")
    except (OSError, ValueError, AttributeError):  # no campaign yet (or no readable one): nothing to hide
        return
    if held and held != config.name:
        raise ConfigError(
            f"--workdir: {workdir} already holds campaign '{held}', not '{config.name}' (a work directory holds one "
            f"campaign); give campaign '{config.name}' another --workdir"
        )


def remember_campaign(config: AnyConfig, workdir: Path) -> None:
    """Keep the campaign's settings in WORKDIR/campaign.json (mode 0600: it may hold store
    credentials) so that status/lineage/export/report need only --workdir."""
    path = Path(workdir) / WORKDIR_CONFIG
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    path.chmod(0o600)
    (Path(workdir) / WORKDIR_VERSION).write_text(__version__ + "\n")


def load_workdir_campaign(workdir: str | Path) -> AnyConfig:
    """The campaign settings a work directory was run with."""
    from al_flows.campaign.config import validate_campaign

    path = Path(workdir) / WORKDIR_CONFIG
    if not Path(workdir).is_dir():
        raise ConfigError(
            f"--workdir: {workdir} does not exist; give the work directory a campaign was run or submitted with"
        )
    if not path.is_file():
        raise ConfigError(
            f"--workdir: {workdir} holds no campaign ({WORKDIR_CONFIG} missing); run or submit a campaign there first"
        )
    return validate_campaign(json.loads(path.read_text()), source=str(path), imports=False)


def prepare_store(config: AnyConfig, workdir: Path, echo=None) -> JobStore:
    """Connect the campaign's store, check that it holds no other settings of this campaign
    (:func:`check_settings`), then remember the settings in WORKDIR and create the indexes.
    Nothing is written when the check refuses."""
    check_workdir_campaign(config, workdir)
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        note = check_settings(store, config, workdir)
        if note and echo is not None:
            echo(note)
        remember_campaign(config, workdir)
        ensure_indexes(store)
    except BaseException:
        store.close()
        raise
    return store


LOG_FILE = "al_flows.log"


@contextmanager
def job_log(workdir: Path):
    """Write jobflow's log (full tracebacks of failed jobs) to WORKDIR/al_flows.log."""
    handler = logging.FileHandler(workdir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("jobflow")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield workdir / LOG_FILE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def failure_summary(record: CampaignRecord, since: float, log_path: Path) -> str:
    """The first job failure recorded since ``since`` (al_flows' own errors, which say what to
    do, before others), with a pointer to the tracebacks."""
    failed = [f for f in record.failures() if f["time"] >= since]
    if not failed:
        return f"a job did not complete (see {log_path})"
    first = sorted(failed, key=lambda f: not f["reason"].startswith("al_flows."))[0]
    more = f" (and {len(failed) - 1} more failed job(s))" if len(failed) > 1 else ""
    return f"job '{first['job_name']}' failed ({first['reason']}){more}; tracebacks in {log_path}"


def run_campaign(config: AnyConfig, base_dir: str | Path, workdir: str | Path, echo=print) -> dict:
    """Run (or continue) a campaign with jobflow's run_locally; return and write the report."""
    from al_flows.campaign.config import check_campaign_structures

    try:  # bad starting structures: one line now, not a failed job later
        check_campaign_structures(config, Path(base_dir))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_workdir_campaign(config, workdir)  # before the lock file is written
    workdir = Path(workdir).resolve()
    with workdir_lock(workdir):
        store = prepare_store(config, workdir, echo)
        try:
            workflow = workflow_of(config)
            flow, why = workflow.plan(config, store, Path(base_dir))
            echo(why)
            start = time.perf_counter()
            started_at = time.time()
            log_path = workdir / LOG_FILE
            if flow is not None:
                jobs_dir = workdir / "jobs"
                jobs_dir.mkdir(exist_ok=True)
                cwd = os.getcwd()
                ignore_jobflow_cd_warning()  # again: a caller (pytest) may have reset the filters since import
                try:
                    with job_log(workdir), workflow.live_report(store, config, workdir):
                        run_locally(
                            flow,
                            store=store,
                            root_dir=jobs_dir,
                            create_folders=True,
                            log=False,
                            allow_external_references=True,
                        )
                finally:
                    os.chdir(cwd)
            if flow is not None:  # the final report (an active-learning campaign's autotest included)
                report = workflow.report_after_run(store, config, workdir)
            else:
                report = workflow.build_report(store, config)
            report["wall_time_s"] = round(time.perf_counter() - start, 1)
            (workdir / "report.json").write_text(json.dumps(report, indent=2))
            if flow is not None:
                record = CampaignRecord(store, config.name)
                finished = workflow.finished(store, config)
                missing = workflow.missing_after_finish(store, config) if finished else None
                if missing is not None:
                    raise CampaignError(
                        f"campaign '{config.name}' finished but {missing} did not complete: "
                        f"{failure_summary(record, started_at, log_path)}"
                    )
                if not finished:
                    raise CampaignError(
                        f"campaign '{config.name}' stopped before finishing: "
                        f"{failure_summary(record, started_at, log_path)}; "
                        f"fix the cause and run the same command again to continue"
                    )
            return report
        finally:
            store.close()


def watch_workdir_report(workdir: str | Path, every_s: float, echo=print) -> int:
    """``al-flows report --watch``: rewrite a work directory's report whenever a new round is stored,
    until the campaign has finished (the store is opened afresh for every look, so rounds written by
    other processes are seen). Returns the number of reports written."""
    workdir = Path(workdir)

    def with_store(fn):
        config = load_workdir_campaign(workdir)
        store = open_store(config, workdir)
        try:
            return fn(store, config)
        finally:
            store.close()

    def look() -> tuple[bool, int]:
        return with_store(
            lambda store, config: (
                workflow_of(config).finished(store, config),
                len(CampaignRecord(store, config.name).summaries()),
            )
        )

    def write() -> None:
        report = with_store(lambda store, config: workflow_of(config).write_reports(store, config, workdir))
        echo(f"wrote {workdir / 'report' / 'index.html'} ({len(report['rounds'])} round(s))")

    return watch_report(write, look, every_s)


def open_store(config: AnyConfig, workdir: str | Path) -> JobStore:
    """Connected JobStore of a campaign work directory (for queries)."""
    if not Path(workdir).exists():
        raise ConfigError(f"--workdir: {workdir} does not exist; run the campaign first")
    check_workdir_version(workdir)
    store = make_job_store(config.store, workdir)
    store.connect()
    return store


class ProgressPrinter(logging.Handler):
    """Prints al_flows progress lines (and warnings, first line) as they happen; failed jobs'
    tracebacks go to the log file only (:func:`job_log`), their one-line reasons to the progress."""

    def __init__(self, echo=print):
        super().__init__(logging.INFO)
        self.echo = echo
        self.t0 = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Echo a progress record with the elapsed time (mm:ss.s), a warning by its first line."""
        msg = record.getMessage()
        if record.name.startswith("al_flows.progress"):
            elapsed = time.perf_counter() - self.t0
            self.echo(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {msg}")
        elif record.levelno >= logging.WARNING:
            self.echo(msg.splitlines()[0] if msg else msg)


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
