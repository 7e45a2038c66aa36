"""Command line of al_flows.

Subcommands: ``run`` (run or continue a campaign locally), ``demo`` (the shipped tiny Cu-Ni
campaign), ``validate`` (check a campaign file), ``submit`` (add a campaign to a FireWorks
LaunchPad), ``status`` (rounds and failures from the store), ``lineage`` (where a label or a
model came from), ``export`` (dataset or models to files), ``report`` (plots and HTML),
``import`` (VASP runs and extxyz files into one labelled pool).

Every error is one line on stderr and exit code 2; a refused command creates nothing.
Unexpected errors are one line too, with the traceback in a log file (``AL_FLOWS_DEBUG=1``
shows it instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from al_flows import ignore_jobflow_cd_warning

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
    from al_flows.campaign.config import ConfigError, check_campaign_structures

    try:
        return check_campaign_structures(config, base_dir)
    except ValueError as exc:  # StructureError, a missing file, an impossible multilayer
        raise ConfigError(f"{source}: {exc}") from None


def _submit(config_path: Path, launchpad_file: str, workdir: str | None) -> int:
    from fireworks import LaunchPad

    from al_flows.campaign.config import ConfigError, load_campaign
    from al_flows.campaign.fireworks import submit_campaign

    config, base_dir = load_campaign(config_path)
    _check_structures(config, base_dir, config_path.name)
    if not Path(launchpad_file).is_file():
        raise ConfigError(f"--launchpad: no such file {launchpad_file}; start from flows/fireworks/my_launchpad.yaml")
    launchpad = LaunchPad.from_file(launchpad_file)
    workdir = workdir or config.name
    _, message = submit_campaign(config, base_dir, workdir, launchpad)
    print(message)
    print(
        f"queues: train={config.queues.train} explore={config.queues.explore} label={config.queues.label} "
        f"other={config.queues.default}"
    )
    return 0


def _record(workdir: str):
    """(config, connected store, CampaignRecord) of a work directory."""
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import load_workdir_campaign, open_store

    config = load_workdir_campaign(workdir)
    store = open_store(config, workdir)
    return config, store, CampaignRecord(store, config.name)


def _pool_status(config, store, as_json: bool) -> int:
    import json

    from al_flows.campaign.report_json import build_pool_study_report

    try:
        report = build_pool_study_report(store, config)
        stages = {
            d["metadata"]["stage"] for d in store.query({"metadata.campaign": config.name}, properties=["metadata"])
        }
    finally:
        store.close()
    report["stages_done"] = sorted(stages)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_pool_report(report)
        print(f"stages done: {', '.join(report['stages_done']) or 'none'}")
    return 0


def _method_columns(row: dict) -> str:
    """The exploration stage (staged DP-GEN campaigns), median survival time (ANI-Al) and labelling
    budget spent so far (labeller.budget) of a round row."""
    out = f"  stage {row['stage']}" if row.get("stage") else ""
    if row.get("median_survival_ps") is not None:
        out += f"  median survival {row['median_survival_ps']:.2f} ps"
    if row.get("labels_spent") is not None:
        hours = f", {row['core_hours_spent']:.3g} core-h" if row.get("core_hours_spent") is not None else ""
        out += f"  budget spent {row['labels_spent']} labels{hours} ({row['n_budget_skipped']} skipped)"
    return out


def _property_lines(row: dict) -> list[str]:
    """One line per convergence property of a round row: ensemble mean +- spread, reference, tolerance."""
    return [
        f"{'':>14}{p['property']}: {p['mean']:.5g} +- {p['spread']:.2g} {p['unit']} (reference {p['reference']:.5g}, "
        f"tolerance {p['tolerance']:.3g}) {'within' if p['within'] else 'NOT within'}"
        for p in row.get("properties") or []
    ]


def _status(workdir: str, as_json: bool) -> int:
    import json

    from al_flows.pool_study.config import PoolStudyConfig

    config, store, record = _record(workdir)
    if isinstance(config, PoolStudyConfig):
        return _pool_status(config, store, as_json)
    try:
        status = record.status()
    finally:
        store.close()
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"campaign {status['campaign']}: {status['state']}")
    if status["rounds"]:
        print(
            f"{'round':>5} {'state':>8} {'labels':>6} {'explored':>8} {'acc/cand/fail':>14} {'new':>4} {'fail':>4} "
            f"{'test F (eV/A)':>13} {'test E (eV/atom)':>16}  wall time (s)"
        )
    for r in status["rounds"]:
        times = " ".join(f"{k}={v:.0f}" for k, v in r["wall_time_s"].items())
        if r["state"] == "done":
            print(
                f"{r['round']:>5} {'done':>8} {r['n_labels_total']:>6} {r['n_explored']:>8} "
                f"{r['n_accurate']:>4}/{r['n_candidate']:>4}/{r['n_failed']:>4} {r['n_labelled']:>4} "
                f"{r['n_label_failures']:>4} "
                f"{r['test_force_rmse']:>13.4f} {r['test_energy_rmse_per_atom']:>16.5f}  {times}{_method_columns(r)}"
            )
            for line in _property_lines(r):
                print(line)
        else:
            print(f"{r['round']:>5} {'running':>8}  stages done: {r['stages_done']}  {times}")
    for f in status["job_failures"]:
        where = f"round {f['round']}" if f["round"] >= 0 else "before round 0"
        print(f"failed job ({where}, {f['stage']}): {f['job_name']}: {f['reason']}")
    for f in status["label_failures"]:
        print(f"failed label (round {f['round']}): {f['frame_id']}: {f['reason']}")
    if not status["rounds"] and not status["job_failures"]:
        print("no round has started yet")
    return 0


def _not_for_pool_study(config, command: str) -> None:
    from al_flows.campaign.config import ConfigError
    from al_flows.pool_study.config import PoolStudyConfig

    if isinstance(config, PoolStudyConfig):
        store_hint = (
            "see the queries in docs/pool_study.md"
            if command == "lineage"
            else "use 'al-flows export' with what=dataset/model"
        )
        raise ConfigError(
            f"--workdir: '{config.name}' is a pool study; '{command}' follows active-learning rounds ({store_hint})"
        )


def _lineage(workdir: str, label: str | None, model: str | None, as_json: bool) -> int:
    import json

    config, store, record = _record(workdir)
    try:
        _not_for_pool_study(config, "lineage")
    except Exception:
        store.close()
        raise
    try:
        result = record.label_lineage(label) if label else record.model_lineage(model)
    except KeyError as exc:
        from al_flows.campaign.config import ConfigError

        raise ConfigError(exc.args[0]) from None
    finally:
        store.close()
    if as_json:
        print(json.dumps(result, indent=2))
    elif label:
        for step in result["chain"]:
            print("  " + ", ".join(f"{k}={v}" for k, v in step.items()))
    else:
        members = result["members"] if "members" in result else [result]
        if "members" in result:
            print(f"ensemble {result['ensemble_id']}: {len(members)} member(s)")
        for one in members:
            m = one["model"]
            print(
                f"model {m['model_id']}: round {m['round']} member {m['member']} seed {m['seed']}, best epoch "
                f"{m['best_epoch']}, val force RMSE {m['val_force_rmse']:.4f} eV/A"
            )
            print(
                f"  trained on {one['n_labels']} labels ({m['n_train']} train + {m['n_val']} validation); "
                f"by round {one['labels_by_round']}; by explorer {one['labels_by_explorer']}"
            )
    return 0


def _export(workdir: str, what: str, output: str, fmt: str, round_: int | None) -> int:
    from al_flows.campaign.config import ConfigError
    from al_flows.campaign.record import export_dataset, export_model
    from al_flows.pool_study.config import PoolStudyConfig

    config, store, record = _record(workdir)
    try:
        if isinstance(config, PoolStudyConfig):
            from al_flows.pool_study.report import export_pool_study

            for p in export_pool_study(store, config.name, what, output, fmt):
                print(f"wrote {p}")
        elif what == "dataset":
            path = export_dataset(record, output, fmt)
            print(f"wrote {path} ({fmt})")
        else:
            for written in export_model(record, output, round_):
                print(f"wrote {written}")
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    finally:
        store.close()
    return 0


def _import(paths: list[str], output: str, stride: int) -> int:
    from al_flows.campaign.config import ConfigError
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
    from al_flows.campaign.report import write_report
    from al_flows.campaign.run import watch_workdir_report
    from al_flows.pool_study.config import PoolStudyConfig
    from al_flows.pool_study.report import write_pool_report

    if watch is not None and watch <= 0:
        print("error: --watch: give a positive number of seconds between looks, e.g. --watch 60", file=sys.stderr)
        return 2
    if watch is not None:
        watch_workdir_report(workdir, watch, echo=lambda line: print(line, flush=True))
        return 0
    config, store, _ = _record(workdir)
    try:
        writer = write_pool_report if isinstance(config, PoolStudyConfig) else write_report
        result = writer(store, config, Path(workdir) / "report")
    finally:
        store.close()
    print(f"wrote {result['html']} and {len(result['plots'])} plot(s)")
    return 0


def _print_pool_report(report: dict) -> None:
    from al_flows.pool_study.strategies import table_markdown

    if report["table"]:
        print(table_markdown(report["table"]))
        print("  ".join(f"{k}={v:.3g}" for k, v in report["ratios"].items()))
    for name, p in report.get("pathways", {}).items():
        kinds = ", ".join(f"{k}: {v}" for k, v in p["counts_by_type"].items())
        print(f"{name}: {p['n_runs']} runs -> {p['n_pathways']} pathways ({kinds})")
    if "validation" in report:
        v = report["validation"]
        print(
            f"validation: {v['n_minima']} minima, {v['n_agree_single']} agree with the labeller, {v['n_spurious']} "
            f"spurious, max |NNP - labeller| {v['max_abs_d_single_per_atom']:.4f} eV/atom"
        )
    print("finished" if report["finished"] else "not finished")


def _print_report(report: dict, workdir: Path) -> None:
    if report.get("workflow") == "pool_study":
        _print_pool_report(report)
        print(f"report: {workdir / 'report.json'}")
        return
    print(
        f"{'round':>5} {'labels':>6} {'explored':>8} {'acc/cand/fail':>14} {'labelled':>8} {'acc.ratio':>9} "
        f"{'val F':>7} {'test F':>7} {'test F R2':>9} {'test E/atom':>11}"
    )
    for r in report["rounds"]:
        r2 = r.get("test_force_r2")
        print(
            f"{r['round']:>5} {r['n_labels_total']:>6} {r['n_explored']:>8} "
            f"{r['n_accurate']:>4}/{r['n_candidate']:>4}/{r['n_failed']:>4} {r['n_labelled']:>8} "
            f"{r['accurate_ratio']:>9.3f} "
            f"{r['val_force_rmse']:>7.4f} {r['test_force_rmse']:>7.4f} {'n/a' if r2 is None else f'{r2:.3f}':>9} "
            f"{r['test_energy_rmse_per_atom']:>11.5f}{_method_columns(r)}"
        )
    if "autotest" in report:
        at = report["autotest"]
        bad = [f"{r['element']} {r['property']}" for r in at["rows"] if not r["passed"]]
        print(
            f"autotest vs {at['reference']}: {len(at['rows']) - len(bad)}/{len(at['rows'])} rows within tolerance"
            + (f" (outside: {', '.join(bad)})" if bad else "")
        )
    print(f"{report['state']}; report: {workdir / 'report.json'} (forces eV/A, energies eV/atom)")


def _run(config_path: Path, workdir: str) -> int:
    from al_flows.campaign.config import load_campaign
    from al_flows.campaign.run import live_progress, run_campaign
    from al_flows.campaign.stores import describe_store

    config, base_dir = load_campaign(config_path)
    print(f"campaign {config.name}: store = {describe_store(config.store, workdir)}")
    with live_progress():
        report = run_campaign(config, base_dir, workdir)
    _print_report(report, Path(workdir))
    return 0


def _validate(campaign: str) -> int:
    import yaml

    from al_flows.campaign.config import load_campaign

    config, base_dir = load_campaign(campaign)
    n_checked = _check_structures(config, base_dir, Path(campaign).name)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    print(
        f"structures: {n_checked} starting structure(s) from file and multilayer sources checked "
        "(generated random cells and DP-GEN sets are checked when the campaign builds them)"
    )
    print(f"ok: {campaign} (fingerprint {config.fingerprint()})")
    return 0


WORKDIR_HELP = "campaign work directory (holds the embedded store, campaign.json, report.json and al_flows.log)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``al-flows`` (every option has a help text)."""
    parser = argparse.ArgumentParser(prog="al-flows", description="Active learning of SchNet potentials with jobflow.")
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
    p = sub.add_parser("export", help="write the dataset or a round's models to files")
    p.add_argument("--workdir", required=True, help=WORKDIR_HELP)
    p.add_argument(
        "what",
        choices=["dataset", "model"],
        help="dataset: every label with its provenance, in --format; "
        "model: one weights file per ensemble member, round{k}_member{i}.pt (see docs/models.md)",
    )
    p.add_argument("--output", required=True, help="file to write (dataset) or directory to create (model)")
    p.add_argument(
        "--format",
        default="extxyz",
        choices=["extxyz", "ase-db", "schnetpack"],
        help="dataset format (default: extxyz)",
    )
    p.add_argument(
        "--round", type=int, default=None, help="model: round whose ensemble to export (default: the last trained)"
    )
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
    """The ``al-flows`` command line; returns the exit status (0 success, 2 an error, reported in one line)."""
    args = build_parser().parse_args(argv)
    # jobflow's run_locally uses monty's deprecated ``cd`` (fixed upstream); every other warning is shown.
    # Importing al_flows sets this filter too; again here, where a caller (pytest) may have reset the filters
    ignore_jobflow_cd_warning()
    from al_flows.campaign.config import ConfigError
    from al_flows.campaign.run import CampaignError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CampaignError) as exc:
        lines = str(exc).splitlines()
        extra = f" (and {len(lines) - 1} more problem(s): {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        print(f"error: {lines[0]}{extra}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to continue", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: one line, traceback in the log
        return _internal_error(exc, args)


if __name__ == "__main__":
    sys.exit(main())
