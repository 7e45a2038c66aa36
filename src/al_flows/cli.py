"""Command line of al_flows.

Subcommands: ``run`` (run or continue a campaign locally), ``demo`` (the shipped tiny Cu-Ni
campaign), ``validate`` (check a campaign file), ``submit`` (add a campaign to a FireWorks
LaunchPad), ``status`` (rounds and failures from the store), ``lineage`` (where a label or a
model came from), ``export`` (dataset or models to files), ``report`` (plots and HTML),
``import`` (VASP runs and extxyz files into one labelled pool).

Every error is one line on stderr and exit code 2; a refused command creates nothing.
Unexpected errors are one line too, with the traceback in a log file (``AL_FLOWS_DEBUG=1``
shows it instead). A reader that closes stdout early (``| head``) ends a command quietly with
exit code 141, nothing logged. A campaign file's YAML syntax and top-level keys are checked
before the heavy imports (:mod:`al_flows.campaign.campaign_file`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from al_flows import ignore_jobflow_cd_warning
from al_flows.campaign.campaign_file import ConfigError, read_campaign_file
from al_flows.cli_text import print_lineage, print_report, print_status

DEMO_NAME = "demo_cuni_emt.yaml"


def demo_config_path() -> Path:
    """The shipped demo campaign: ``al_flows/flows/demo_cuni_emt.yaml`` inside an installed wheel,
    else ``flows/demo_cuni_emt.yaml`` of the checkout al_flows runs from."""
    here = Path(__file__).resolve().parent
    for path in (here / "flows" / DEMO_NAME, here.parents[1] / "flows" / DEMO_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the demo campaign {DEMO_NAME} is neither in {here / 'flows'} nor in a checkout's flows/; reinstall al_flows"
    )


def _check_structures(config, base_dir: Path, source: str) -> int:
    """Check the starting structures read from files or built as multilayers (cheap) before
    anything runs; a bad one becomes a ConfigError line ``source: field (structure): problem; fix``."""
    from al_flows.campaign.config import check_campaign_structures

    try:
        return check_campaign_structures(config, base_dir)
    except ValueError as exc:  # StructureError, a missing file, an impossible multilayer
        raise ConfigError(f"{source}: {exc}") from None


def _submit(config_path: Path, launchpad_file: str, workdir: str | None) -> int:
    read_campaign_file(config_path)  # syntax and top-level keys before the heavy imports
    from fireworks import LaunchPad

    from al_flows.campaign.config import load_campaign
    from al_flows.campaign.fireworks import submit_campaign
    from al_flows.campaign.run import check_workdir_campaign

    config, base_dir = load_campaign(config_path)
    _check_structures(config, base_dir, str(config_path))
    workdir = workdir or config.name
    check_workdir_campaign(config, workdir)  # before the LaunchPad is read or contacted
    if not Path(launchpad_file).is_file():
        raise ConfigError(f"--launchpad: no such file {launchpad_file}; start from flows/fireworks/my_launchpad.yaml")
    launchpad = LaunchPad.from_file(launchpad_file)
    _, message = submit_campaign(config, base_dir, workdir, launchpad)
    print(message)
    print(
        f"queues: train={config.queues.train} explore={config.queues.explore} label={config.queues.label} "
        f"other={config.queues.default}"
    )
    return 0


def _open(workdir: str):
    """(config, connected store, workflow) of a work directory."""
    from al_flows.campaign.run import load_workdir_campaign, open_store
    from al_flows.campaign.workflows import workflow_of

    config = load_workdir_campaign(workdir)
    store = open_store(config, workdir)
    return config, store, workflow_of(config)


def _status(workdir: str, as_json: bool) -> int:
    import json

    config, store, workflow = _open(workdir)
    try:
        status = workflow.status(store, config)
    finally:
        store.close()
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status, workflow.name)
    return 0


def _lineage(workdir: str, label: str | None, model: str | None, as_json: bool) -> int:
    import json

    config, store, workflow = _open(workdir)
    try:
        result = workflow.lineage(store, config, label, model)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    finally:
        store.close()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_lineage(result, label=bool(label))
    return 0


def _export(workdir: str, what: str, output: str, fmt: str, round_: int | None) -> int:
    from al_flows.campaign.export import ExportError

    config, store, workflow = _open(workdir)
    try:
        for line in workflow.export(store, config, what, output, fmt, round_):
            print(line)
    except (KeyError, ExportError) as exc:
        raise ConfigError(exc.args[0]) from None
    finally:
        store.close()
    return 0


def _import(paths: list[str], output: str, stride: int) -> int:
    from al_flows.frames.dataset import Dataset
    from al_flows.pool_study.pool_import import import_frames, import_tree

    frames = []
    for p in map(Path, paths):
        try:
            frames += (import_tree if p.is_dir() else import_frames)(p, stride=stride)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(str(exc)) from None
    data = Dataset()
    data.add(frames)
    data.write_extxyz(output)
    print(
        f"wrote {output}: {len(data)} frames ({len(frames) - len(data)} duplicates dropped), by format "
        f"{data.counts_by('source_format')}"
    )
    return 0


def _report(workdir: str, watch: float | None = None) -> int:
    from al_flows.campaign.run import watch_workdir_report

    if watch is not None and watch <= 0:
        print("error: --watch: give a positive number of seconds between looks, e.g. --watch 60", file=sys.stderr)
        return 2
    if watch is not None:
        watch_workdir_report(workdir, watch, echo=lambda line: print(line, flush=True))
        return 0
    config, store, workflow = _open(workdir)
    try:
        result = workflow.write_report(store, config, Path(workdir) / "report")
    finally:
        store.close()
    print(f"wrote {result['html']} and {len(result['plots'])} plot(s)")
    return 0


def _run(config_path: Path, workdir: str) -> int:
    read_campaign_file(config_path)  # syntax and top-level keys before the heavy imports
    from al_flows.campaign.config import load_campaign
    from al_flows.campaign.run import live_progress, run_campaign
    from al_flows.campaign.stores import describe_store
    from al_flows.campaign.workflows import workflow_of

    config, base_dir = load_campaign(config_path)
    _check_structures(config, base_dir, str(config_path))
    header = [f"campaign {config.name}: store = {describe_store(config.store, workdir)}"]

    def echo(line: str) -> None:  # the store line once the checks have passed: before the first line of the run
        while header:
            print(header.pop())
        print(line)

    with live_progress(echo):
        report = run_campaign(config, base_dir, workdir, echo=echo)
    print_report(report, Path(workdir), workflow_of(config).name)
    return 0


def _validate(campaign: str) -> int:
    read_campaign_file(campaign)  # syntax and top-level keys before the heavy imports
    import yaml

    from al_flows.campaign.config import load_campaign

    config, base_dir = load_campaign(campaign)
    n_checked = _check_structures(config, base_dir, campaign)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    print(
        f"structures: {n_checked} starting structure(s) from file and multilayer sources checked "
        "(generated random cells and DP-GEN sets are checked when the campaign builds them)"
    )
    print(f"ok: {campaign} (fingerprint {config.fingerprint()})")
    return 0


WORKDIR_HELP = (
    "campaign work directory, one campaign each (holds the embedded store, campaign.json, report.json, report/, "
    "jobs/ and al_flows.log; docs/configuration.md#the-work-directory)"
)


def _add_export(sub) -> None:
    """The ``export`` subcommand's arguments."""
    p = sub.add_parser("export", help="write the dataset or a round's models to files")
    p.add_argument("--workdir", required=True, help=WORKDIR_HELP)
    p.add_argument(
        "what",
        choices=["dataset", "model"],
        help="dataset: every label (or those of --round) with its provenance, in --format; "
        "model: one weights file per ensemble member, round{k}_member{i}.pt (see docs/models.md)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="file to write, its folders created (dataset), or directory to create (model; refused when it holds "
        "other .pt files)",
    )
    p.add_argument(
        "--format",
        default="extxyz",
        choices=["extxyz", "ase-db", "schnetpack"],
        help="dataset format (default: extxyz)",
    )
    p.add_argument(
        "--round",
        type=int,
        default=None,
        help="model: round whose ensemble to export (default: the last trained); dataset: the labels that round's "
        "models trained on, i.e. the initial data and the labels of earlier rounds (default: every label)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``al-flows`` (every option has a help text)."""
    parser = argparse.ArgumentParser(prog="al-flows", description="Active learning of SchNet potentials with jobflow.")
    parser.add_argument("--version", action="version", version=f"al-flows {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run or continue a campaign locally (jobflow run_locally)")
    p.add_argument("campaign", help="campaign YAML file (see docs/configuration.md)")
    p.add_argument(
        "--workdir", required=True, help=WORKDIR_HELP + "; created if missing, continued if it holds the campaign"
    )
    p = sub.add_parser("demo", help=f"run the shipped tiny Cu-Ni campaign ({DEMO_NAME}, EMT labels)")
    p.add_argument("--workdir", default="demo_run", help=WORKDIR_HELP + " (default: demo_run)")
    p = sub.add_parser("submit", help="add the campaign (or its continuation) to a FireWorks LaunchPad")
    p.add_argument("campaign", help="campaign YAML file")
    p.add_argument(
        "--launchpad", required=True, help="FireWorks LaunchPad file (see flows/fireworks/my_launchpad.yaml)"
    )
    p.add_argument(
        "--workdir",
        default=None,
        help=WORKDIR_HELP + ", on a filesystem the workers share (default: ./<campaign name>)",
    )
    p = sub.add_parser("status", help="one row per round, and the jobs and labels that failed, from the store")
    p.add_argument("--workdir", required=True, help=WORKDIR_HELP)
    p.add_argument(
        "--json", action="store_true", help="print the status as JSON (rounds, job_failures, label_failures)"
    )
    p = sub.add_parser("lineage", help="the chain of a label back to the initial data, or the labels behind a model")
    p.add_argument("--workdir", required=True, help=WORKDIR_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--label", help="frame id of a label (see 'al-flows export ... dataset')")
    which.add_argument(
        "--model", help="model id of an ensemble member, or an ensemble id (what labels carry as model_id)"
    )
    p.add_argument("--json", action="store_true", help="print the lineage as JSON")
    _add_export(sub)
    p = sub.add_parser("report", help="PNG plots and an HTML page in WORKDIR/report/")
    p.add_argument("--workdir", required=True, help=WORKDIR_HELP)
    p.add_argument(
        "--watch",
        type=float,
        default=None,
        metavar="SECONDS",
        help="look every SECONDS and rewrite the report when a round is stored, until the campaign finishes "
        "(campaigns run by FireWorks workers; al-flows run rewrites it after every round itself)",
    )
    p = sub.add_parser(
        "import",
        help="read VASP runs (vasprun.xml/OUTCAR/XDATCAR) and extxyz files into one extxyz pool with provenance",
    )
    p.add_argument("paths", nargs="+", help="VASP run directories, trees of them, or files")
    p.add_argument("--output", required=True, help="extxyz file to write")
    p.add_argument("--stride", type=int, default=1, help="keep every stride-th ionic step (default: 1)")
    p = sub.add_parser(
        "validate",
        help="check a campaign YAML (settings, calculators, starting structures) and print what it resolves to",
    )
    p.add_argument("campaign", help="campaign YAML file to check; nothing is run or written")
    return parser


COMMANDS = {
    "run": lambda a: _run(Path(a.campaign), a.workdir),
    "demo": lambda a: _run(demo_config_path(), a.workdir),
    "submit": lambda a: _submit(Path(a.campaign), a.launchpad, a.workdir),
    "status": lambda a: _status(a.workdir, a.json),
    "lineage": lambda a: _lineage(a.workdir, a.label, a.model, a.json),
    "export": lambda a: _export(a.workdir, a.what, a.output, a.format, a.round),
    "report": lambda a: _report(a.workdir, a.watch),
    "import": lambda a: _import(a.paths, a.output, a.stride),
    "validate": lambda a: _validate(a.campaign),
}


def _version() -> str:
    """The installed al_flows' version (package metadata; the source tree's where it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("al_flows")
    except PackageNotFoundError:
        from al_flows import __version__

        return __version__


def _user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a refusal that says what to do (ConfigError, CampaignError); the module of
    CampaignError is looked up only when already imported, so a refusal raised early stays cheap."""
    run = sys.modules.get("al_flows.campaign.run")
    return isinstance(exc, ConfigError) or (run is not None and isinstance(exc, run.CampaignError))


def _stdout_closed() -> int:
    """The reader of stdout went away (``al-flows status --json | head``): stop quietly, exit 141 as a
    process killed by SIGPIPE would. stdout is pointed at /dev/null so that the interpreter's last
    flush does not fail again (the Python docs' recipe for SIGPIPE); nothing is logged."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _internal_error(exc: BaseException, args) -> int:
    """One line for an unexpected error; the traceback goes to a log file."""
    import os
    import tempfile
    import traceback

    if os.environ.get("AL_FLOWS_DEBUG"):
        raise exc
    workdir = getattr(args, "workdir", None)
    log_dir = Path(workdir) if workdir and Path(workdir).is_dir() else Path(tempfile.gettempdir())
    log = log_dir / "al_flows.log"
    with open(log, "a") as fh:
        fh.write(f"al-flows {args.command}: unexpected error\n{traceback.format_exc()}\n")
    from al_flows.workflow.jobs import one_line_reason

    print(f"error: {one_line_reason(exc)} (traceback in {log}; AL_FLOWS_DEBUG=1 shows it)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The ``al-flows`` command line; returns the exit status (0 success, 2 an error, reported in one line,
    141 when the reader of stdout closed it early)."""
    args = build_parser().parse_args(argv)
    # jobflow's run_locally uses monty's deprecated ``cd`` (fixed upstream); every other warning is shown.
    # Importing al_flows sets this filter too; again here, where a caller (pytest) may have reset the filters
    ignore_jobflow_cd_warning()
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to continue", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: one line, traceback in the log
        if not _user_error(exc):
            return _internal_error(exc, args)
        lines = str(exc).splitlines()
        extra = f" (and {len(lines) - 1} more problem(s): {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        print(f"error: {lines[0]}{extra}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
