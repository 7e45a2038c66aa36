"""What the ``al-flows`` commands print as text: the status table, a lineage, the run's report table
(:mod:`al_flows.cli` runs the commands; ``--json`` prints the same data as JSON)."""

from __future__ import annotations

from pathlib import Path


def method_columns(row: dict) -> str:
    """The exploration stage (staged DP-GEN campaigns), median survival time (ANI-Al) and labelling
    budget spent so far (labeller.budget) of a round row."""
    out = f"  stage {row['stage']}" if row.get("stage") else ""
    if row.get("median_survival_ps") is not None:
        out += f"  median survival {row['median_survival_ps']:.2f} ps"
    if row.get("labels_spent") is not None:
        hours = f", {row['core_hours_spent']:.3g} core-h" if row.get("core_hours_spent") is not None else ""
        out += f"  budget spent {row['labels_spent']} labels{hours} ({row['n_budget_skipped']} skipped)"
    return out


def property_lines(row: dict) -> list[str]:
    """One line per convergence property of a round row: ensemble mean +- spread, reference, tolerance."""
    return [
        f"{'':>14}{p['property']}: {p['mean']:.5g} +- {p['spread']:.2g} {p['unit']} (reference {p['reference']:.5g}, "
        f"tolerance {p['tolerance']:.3g}) {'within' if p['within'] else 'NOT within'}"
        for p in row.get("properties") or []
    ]


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def calibration_line(row: dict) -> str:
    """The calibration record of a round row (its summary's ``calibration``; '' before calibration
    records): Spearman correlation and scale of the labelled frames' error on their deviation, the
    coverage of the bound in force during the round on the test frames (raw: the deviation itself
    read as the bound), on the random sample and on the selected frames, and the bound the next round
    reads with its 90th percentile and the true error's on the test frames (docs/methods.md,
    "Calibrated error bounds")."""
    c = row.get("calibration")
    if not c:
        return ""
    nominal, test = c.get("nominal_coverage"), c.get("coverage_test")
    coverage = f"test coverage {_num(test, '.2f')}"
    if test is None:
        coverage += " before a bound"
    elif nominal is not None:
        coverage += f" of nominal {nominal:.2f}"
    if c.get("raw_coverage_test") is not None:
        coverage += f" (raw {c['raw_coverage_test']:.2f})"
    for key, words in (("coverage_random", "random sample"), ("coverage_selected", "selected")):
        if c.get(key) is not None:
            coverage += f", {words} {c[key]:.2f}"
    q, n = c.get("bound_scale"), c.get("bound_residuals") or 0
    bound = f"bound q={q:.3g} from {n} residuals" if q is not None else f"no bound yet ({n} residuals)"
    if q is not None and c.get("test_p90_bound") is not None and c.get("test_p90_error") is not None:
        bound += f" (test p90: bound {c['test_p90_bound']:.3g}, error {c['test_p90_error']:.3g} eV/A)"
    return (
        f"{'':>14}calibration: spearman {_num(c.get('spearman'), '.2f')}, scale {_num(c.get('scale'), '.3g')}, "
        f"{coverage}, {bound}"
    )


def bound_line(row: dict) -> str:
    """convergence.error_bound of a round row: the share of explored frames whose bound was below the
    target and the rounds in a row that met it ('' without it)."""
    if row.get("bound_share") is None:
        return ""
    return (
        f"{'':>14}error bound: {row['bound_share']:.2f} of explored frames below the target, "
        f"streak {row.get('bound_streak') or 0}"
    )


def print_status(status: dict, workflow: str = "active_learning") -> None:
    """The text of ``al-flows status`` of a campaign of ``workflow`` (the name of its workflow, whose
    ``status`` gave ``status``)."""
    STATUS_TEXT[workflow](status)


def print_rounds_status(status: dict) -> None:
    """The status of an active-learning campaign: one row per round, then failed jobs and labels."""
    print(f"campaign {status['campaign']}: {status['state']}")
    if status["rounds"]:
        print(
            f"{'round':>5} {'state':>8} {'labels':>6} {'explored':>8} {'acc/cand/fail':>14} {'new':>4} {'fail':>4} "
            f"{'test F (eV/A)':>13} {'test E (eV/atom)':>16}  wall time (s)"
        )
    for r in status["rounds"]:
        times = " ".join(f"{k}={v:.0f}" for k, v in r["wall_time_s"].items())
        if r.get("stage_times"):
            t = r["stage_times"]
            times += f" overhead={t['overhead_s']:.0f} | cpu={t['total_cpu_s']:.0f}"
        if r["state"] == "done":
            print(
                f"{r['round']:>5} {'done':>8} {r['n_labels_total']:>6} {r['n_explored']:>8} "
                f"{r['n_accurate']:>4}/{r['n_candidate']:>4}/{r['n_failed']:>4} {r['n_labelled']:>4} "
                f"{r['n_label_failures']:>4} "
                f"{r['test_force_rmse']:>13.4f} {r['test_energy_rmse_per_atom']:>16.5f}  {times}{method_columns(r)}"
            )
            for line in [*property_lines(r), calibration_line(r), bound_line(r)]:
                if line:
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


def print_lineage(result: dict, label: bool) -> None:
    """The text of ``al-flows lineage``: a label's chain, one step a line, or a model's (or an
    ensemble's members') training data."""
    if label:
        for step in result["chain"]:
            print("  " + ", ".join(f"{k}={v}" for k, v in step.items()))
        return
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
        start = one.get("start") or {}
        if start.get("start") == "warm":
            chain = " <- ".join(f"{c['model_id']} (round {c.get('round', '?')})" for c in one.get("warm_chain", []))
            print(f"  started warm from {chain}")
        elif (m.get("training_settings") or {}).get("warm_start") and start.get("scratch_reason"):
            print(f"  trained from scratch: {start['scratch_reason']}")


def print_pool_report(report: dict) -> None:
    """The text of a pool study's report (Table I of Sprueill et al., pathways, validation)."""
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


def print_pool_status(status: dict) -> None:
    """The status of a pool study: its report's text and the stages with stored jobs."""
    print_pool_report(status)
    print(f"stages done: {', '.join(status['stages_done']) or 'none'}")


def print_report(report: dict, workdir: Path, workflow: str = "active_learning") -> None:
    """The text ``al-flows run`` ends with for a campaign of ``workflow`` (the name of its workflow)."""
    RUN_TEXT[workflow](report, workdir)


def print_pool_run_report(report: dict, workdir: Path) -> None:
    """What a pool study's run ends with: its report's text and where report.json is."""
    print_pool_report(report)
    print(f"report: {workdir / 'report.json'}")


def print_rounds_report(report: dict, workdir: Path) -> None:
    """The table of an active-learning run: one row per round, the autotest's verdict, where report.json is."""
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
            f"{r['test_energy_rmse_per_atom']:>11.5f}{method_columns(r)}"
        )
    if "autotest" in report:
        print_autotest_verdict(report["autotest"])
    print(f"{report['state']}; report: {workdir / 'report.json'} (forces eV/A, energies eV/atom)")


def autotest_failure(row: dict) -> str:
    """One failed autotest row: its values, the tolerance used and its bound (abs or rel), what failed."""
    tol = "none" if row.get("tolerance") is None else f"{row['tolerance']:.3g} ({row.get('tolerance_kind')})"
    return (
        f"{row['element']} {row['property']} {row['model']:.4g} vs {row['reference']:.4g} {row['unit']}, "
        f"tolerance {tol}, failed by {' and '.join(row.get('failed_by') or ['tolerance'])}"
    )


def print_autotest_verdict(at: dict) -> None:
    """The autotest's verdict: rows passed, then one line per failed row (:func:`autotest_failure`)."""
    bad = [r for r in at["rows"] if not r["passed"]]
    print(f"autotest vs {at['reference']}: {len(at['rows']) - len(bad)}/{len(at['rows'])} rows passed")
    for r in bad:
        print(f"  failed: {autotest_failure(r)}")


# The text of each workflow (by the names of al_flows.campaign.workflows.WORKFLOWS): al-flows status, al-flows run
STATUS_TEXT = {"active_learning": print_rounds_status, "pool_study": print_pool_status}
RUN_TEXT = {"active_learning": print_rounds_report, "pool_study": print_pool_run_report}
