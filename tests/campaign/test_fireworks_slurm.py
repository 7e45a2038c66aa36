"""FireWorks on the private SLURM cluster: qlaunch -> sbatch -> rlaunch singleshot, with a
mongomock LaunchPad persisted to a JSON file, and one FWorker per category routed to a
partition (gpu -> gpu with --gres=gpu:1, vasp and cpu -> cpu).

The mongomock persistence file is read when a client is created and written back, whole,
when the process exits, with no locking: every process that opens the LaunchPad (qlaunch,
rlaunch in the job, the helpers here) runs under one ``flock``, and this test process
never opens the LaunchPad itself. The cluster runs one job at a time.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from slurm_cluster import SlurmCluster

# the venv's scripts, by absolute path (a job's `bash -l` may reset PATH); not resolved,
# so a venv's python symlink keeps pointing into the venv
VENV_BIN = Path(sys.executable).parent
PYTHON = str(VENV_BIN / Path(sys.executable).name)
RLAUNCH = str(VENV_BIN / "rlaunch")
QLAUNCH = str(VENV_BIN / "qlaunch")

# worker -> (FWorker category, SLURM partition, extra queue-adapter fields)
WORKERS = {
    "gpu": ("gpu", "gpu", {"gres": "gpu:1"}),
    "vasp": ("vasp", "cpu", {}),
    "cpu": (["cpu", None], "cpu", {}),  # null: also pulls Fireworks with no _category
}


def _yaml(value) -> str:
    """JSON is YAML: exact quoting without depending on a YAML writer."""
    return json.dumps(value)


def fireworks_config_dir(tmp, cluster: SlurmCluster, launchpad_file, lockfile) -> Path:
    """Write FireWorks' configuration for the cluster into ``tmp/fw_config`` and return it.

    - ``launchpad_file``: the mongomock persistence file (created as ``{}`` if missing),
    - ``lockfile``: the flock file that serialises every LaunchPad user.

    Files: FW_config.yaml (MONGOMOCK_SERVERSTORE_FILE, CONFIG_FILE_DIR, LAUNCHPAD_LOC),
    my_launchpad.yaml (host localhost, name al_flows_test; served by mongomock),
    my_fworker_{gpu,vasp,cpu}.yaml, my_qadapter_{gpu,vasp,cpu}.yaml (CommonAdapter,
    SLURM; rocket_launch = ``env FW_CONFIG_FILE=... MONGOMOCK_SERVERSTORE_FILE=...
    flock LOCK rlaunch -c DIR -w my_fworker_X.yaml singleshot``).
    Processes that open the LaunchPad need ``fw_env(cfg)`` in their environment
    (FireWorks reads FW_config.yaml at import time, before ``-c`` is parsed).
    """
    tmp, launchpad_file, lockfile = Path(tmp), Path(launchpad_file).resolve(), Path(lockfile).resolve()
    cfg = (tmp / "fw_config").resolve()
    cfg.mkdir(parents=True, exist_ok=True)
    if not launchpad_file.exists():
        launchpad_file.write_text("{}")
    lockfile.touch()
    flock = shutil.which("flock") or "/usr/bin/flock"

    partitions = set(cluster.run(["sinfo", "-h", "-o", "%R"], timeout=20).stdout.split())
    missing = {p for _, p, _ in WORKERS.values()} - partitions
    assert not missing, f"partitions {missing} not in the cluster"

    (cfg / "FW_config.yaml").write_text(
        f"MONGOMOCK_SERVERSTORE_FILE: {_yaml(str(launchpad_file))}\n"
        f"CONFIG_FILE_DIR: {_yaml(str(cfg))}\n"
        f"LAUNCHPAD_LOC: {_yaml(str(cfg / 'my_launchpad.yaml'))}\n"
    )
    (cfg / "my_launchpad.yaml").write_text(
        "host: localhost\n"  # the client is mongomock (FW_config); "mongomock://" fails pymongo's URI check
        "port: 27017\n"
        "name: al_flows_test\n"
        "strm_lvl: WARNING\n"
    )
    q = shlex.quote
    env_prefix = " ".join(f"{k}={q(v)}" for k, v in fw_env(cfg).items())
    for worker, (category, partition, extra) in WORKERS.items():
        fworker = cfg / f"my_fworker_{worker}.yaml"
        fworker.write_text(f"name: {_yaml(worker)}\ncategory: {_yaml(category)}\nquery: '{{}}'\n")
        rocket = (
            f"env {env_prefix} {q(flock)} {q(str(lockfile))} {q(RLAUNCH)} -c {q(str(cfg))} -w {q(str(fworker))} "
            "singleshot"
        )
        assert "$$" not in rocket  # the template drops every line still holding "$$"
        lines = [
            "_fw_name: CommonAdapter",
            "_fw_q_type: SLURM",
            f"rocket_launch: {_yaml(rocket)}",
            f"queue: {_yaml(partition)}",
            f"job_name: {_yaml('fw_' + worker)}",
            "nodes: 1",
            "ntasks: 1",
        ] + [f"{k}: {_yaml(v)}" for k, v in extra.items()]
        (cfg / f"my_qadapter_{worker}.yaml").write_text("\n".join(lines) + "\n")
    return cfg


def fw_env(cfg: Path) -> dict[str, str]:
    """Environment a LaunchPad user needs (both read at fireworks' import)."""
    from_cfg = (Path(cfg) / "FW_config.yaml").read_text().splitlines()
    store = next(
        json.loads(line.split(":", 1)[1]) for line in from_cfg if line.startswith("MONGOMOCK_SERVERSTORE_FILE")
    )
    return {"FW_CONFIG_FILE": str(Path(cfg) / "FW_config.yaml"), "MONGOMOCK_SERVERSTORE_FILE": store}


def locked_python(cluster: SlurmCluster, cfg: Path, lockfile, code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python under the LaunchPad lock; return its stdout. The lock is held by a
    running Firework for its whole run (rocket_launch takes it), so the wait includes one Firework."""
    flock = shutil.which("flock") or "/usr/bin/flock"
    res = cluster.run(
        [flock, str(lockfile), PYTHON, "-c", textwrap.dedent(code)], env=fw_env(cfg), timeout=timeout, cwd=cfg
    )
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def fw_states(cluster, cfg, lockfile) -> dict[str, dict]:
    """{firework name: {"state": ..., "fworker": name of the worker of its last launch}}."""
    out = locked_python(
        cluster,
        cfg,
        lockfile,
        f"""
        import json
        from fireworks import LaunchPad
        lp = LaunchPad.from_file({str(cfg / 'my_launchpad.yaml')!r})
        res = {{}}
        for fw_id in lp.get_fw_ids():
            fw = lp.get_fw_by_id(fw_id)
            launch = fw.launches[-1] if fw.launches else None
            res[fw.name] = {{"state": fw.state, "fworker": launch.fworker.name if launch else None}}
        print("STATES=" + json.dumps(res))
    """,
    )
    line = next(line for line in out.splitlines() if line.startswith("STATES="))
    return json.loads(line[len("STATES=") :])


def qlaunch(cluster, cfg: Path, lockfile, worker: str, launch_dir: Path) -> subprocess.CompletedProcess:
    """``flock LOCK qlaunch -c CFG -q my_qadapter_W.yaml -w my_fworker_W.yaml --launch_dir D singleshot``.

    Submits one job only when a Firework for this worker is READY (non-reservation mode
    checks ``run_exists``); then the job's rlaunch pulls whichever READY Firework matches.
    """
    flock = shutil.which("flock") or "/usr/bin/flock"
    launch_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        flock,
        str(lockfile),
        QLAUNCH,
        "-c",
        str(cfg),
        "-q",
        str(cfg / f"my_qadapter_{worker}.yaml"),
        "-w",
        str(cfg / f"my_fworker_{worker}.yaml"),
        "--launch_dir",
        str(launch_dir),
        "singleshot",
    ]
    res = cluster.run(cmd, env=fw_env(cfg), cwd=launch_dir, timeout=600)  # waits for the lock, as above
    assert res.returncode == 0, f"qlaunch {worker}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def launch_until_completed(cluster, cfg, lockfile, workdir: Path, max_rounds: int = 10, timeout: float = 300):
    """Rounds of one qlaunch per worker, then wait for the queue to drain, until every
    Firework is COMPLETED. Waiting between rounds keeps a still-READY Firework from being
    submitted twice. Returns (final states, [[workers that submitted] per round])."""
    deadline = time.monotonic() + timeout
    rounds = []
    for r in range(max_rounds):
        states = fw_states(cluster, cfg, lockfile)
        if states and all(s["state"] == "COMPLETED" for s in states.values()):
            return states, rounds
        bad = {n: s["state"] for n, s in states.items() if s["state"] in ("FIZZLED", "DEFUSED", "PAUSED")}
        assert not bad, f"Fireworks failed: {bad}"
        submitted = []
        for worker in WORKERS:
            before = len(cluster.job_ids("-t", "all"))
            qlaunch(cluster, cfg, lockfile, worker, workdir / f"round{r}_{worker}")
            if len(cluster.job_ids("-t", "all")) > before:
                submitted.append(worker)
        rounds.append(submitted)
        assert submitted, f"round {r}: nothing submitted, states {states}"
        cluster.wait_idle(max(1.0, deadline - time.monotonic()))
    raise AssertionError(f"not all COMPLETED after {max_rounds} rounds: {fw_states(cluster, cfg, lockfile)}")


def test_trivial_workflow_routes_to_partitions(tmp_path, slurm_ready):
    out = tmp_path / "out"
    out.mkdir()
    lock = tmp_path / "launchpad.lock"
    with SlurmCluster(tmp_path) as cluster:
        cfg = fireworks_config_dir(tmp_path, cluster, tmp_path / "launchpad.json", lock)
        # gpu -> vasp -> cpu in a chain, and one Firework with no category beside them
        locked_python(
            cluster,
            cfg,
            lock,
            f"""
            from fireworks import Firework, LaunchPad, ScriptTask, Workflow
            lp = LaunchPad.from_file({str(cfg / 'my_launchpad.yaml')!r})
            lp.reset("", require_password=False)
            out = {str(out)!r}
            def fw(name, category):
                task = ScriptTask.from_str(
                    "echo $SLURM_JOB_PARTITION ${{CUDA_VISIBLE_DEVICES:-none}} > " + out + "/" + name + ".txt")
                spec = {{"_category": category}} if category else {{}}
                return Firework([task], spec=spec, name=name)
            gpu, vasp = fw("fw_gpu", "gpu"), fw("fw_vasp", "vasp")
            cpu, plain = fw("fw_cpu", "cpu"), fw("fw_plain", None)
            lp.add_wf(Workflow([gpu, vasp, cpu, plain], {{gpu: [vasp], vasp: [cpu]}}, name="routing"))
        """,
        )
        states, rounds = launch_until_completed(cluster, cfg, lock, tmp_path / "launches")
        # with nothing READY, a qlaunch submits nothing
        n_jobs = len(cluster.job_ids("-t", "all"))
        for worker in WORKERS:
            res = qlaunch(cluster, cfg, lock, worker, tmp_path / "launches" / f"idle_{worker}")
            assert "No jobs exist in the LaunchPad for submission to queue" in res.stdout + res.stderr
        assert len(cluster.job_ids("-t", "all")) == n_jobs
        jobs = cluster.job_partitions()

    # every Firework COMPLETED, pulled by the worker of its category ...
    assert {n: s["state"] for n, s in states.items()} == dict.fromkeys(
        ["fw_gpu", "fw_vasp", "fw_cpu", "fw_plain"], "COMPLETED"
    )
    assert {n: s["fworker"] for n, s in states.items()} == {
        "fw_gpu": "gpu",
        "fw_vasp": "vasp",
        "fw_cpu": "cpu",
        "fw_plain": "cpu",
    }
    # ... in the partition of that worker, the GPU seen only in the gpu partition
    ran = {p.stem: p.read_text().split() for p in out.glob("*.txt")}
    assert ran == {
        "fw_gpu": ["gpu", "0"],
        "fw_vasp": ["cpu", "none"],
        "fw_cpu": ["cpu", "none"],
        "fw_plain": ["cpu", "none"],
    }
    # one job per Firework (a submission never found nothing to run); SLURM's record agrees.
    # (How Fireworks spread over rounds depends on timing: a job may finish before the
    # next worker's qlaunch of the same round.)
    assert sum(len(r) for r in rounds) == 4, rounds
    assert sorted(jobs) == sorted(
        [
            ("fw_gpu", "gpu", "COMPLETED"),
            ("fw_vasp", "cpu", "COMPLETED"),
            ("fw_cpu", "cpu", "COMPLETED"),
            ("fw_cpu", "cpu", "COMPLETED"),
        ]
    )


def fw_records(cluster, cfg, lockfile) -> list[dict]:
    """One record per Firework: id, name, state, category, stage, round, worker of its last launch."""
    out = locked_python(
        cluster,
        cfg,
        lockfile,
        f"""
        import json
        from fireworks import LaunchPad
        lp = LaunchPad.from_file({str(cfg / 'my_launchpad.yaml')!r})
        res = []
        for fw_id in lp.get_fw_ids():
            fw = lp.get_fw_by_id(fw_id)
            launch = fw.launches[-1] if fw.launches else None
            res.append({{"fw_id": fw_id, "name": fw.name, "state": fw.state, "category": fw.spec.get("_category"),
                         "stage": fw.spec.get("stage"), "round": fw.spec.get("round"),
                         "fworker": launch.fworker.name if launch else None}})
        print("RECORDS=" + json.dumps(res))
    """,
    )
    line = next(line for line in out.splitlines() if line.startswith("RECORDS="))
    return json.loads(line[len("RECORDS=") :])


def test_campaign_through_qlaunch_runs_gpu_jobs_in_gpu_partition(tmp_path, slurm_ready, tiny_dict):
    """A small campaign submitted with `al-flows submit` and run by qlaunch/sbatch/rlaunch to
    completion: training and exploration (created at run time by the round job) ran in the
    gpu partition, labelling and bookkeeping in the cpu partition."""
    import yaml

    from al_flows.campaign.config import load_campaign
    from al_flows.campaign.report_json import build_report
    from al_flows.campaign.run import open_store

    tiny_dict["max_rounds"] = 1
    campaign = tmp_path / "tiny.yaml"
    campaign.write_text(yaml.safe_dump(tiny_dict))
    lock = tmp_path / "launchpad.lock"
    flock = shutil.which("flock") or "/usr/bin/flock"
    al_flows = str(Path(PYTHON).parent / "al-flows")
    with SlurmCluster(tmp_path) as cluster:
        cfg = fireworks_config_dir(tmp_path, cluster, tmp_path / "launchpad.json", lock)
        locked_python(
            cluster,
            cfg,
            lock,
            f"""
            from fireworks import LaunchPad
            LaunchPad.from_file({str(cfg / 'my_launchpad.yaml')!r}).reset("", require_password=False)
        """,
        )
        res = cluster.run(
            [
                flock,
                str(lock),
                al_flows,
                "submit",
                str(campaign),
                "--launchpad",
                str(cfg / "my_launchpad.yaml"),
                "--workdir",
                str(tmp_path / "w"),
            ],
            env=fw_env(cfg),
            cwd=tmp_path,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "added 6 Firework(s)" in res.stdout
        for _ in range(60):
            records = fw_records(cluster, cfg, lock)
            if all(r["state"] == "COMPLETED" for r in records):
                break
            failed = [r for r in records if r["state"] in ("FIZZLED", "DEFUSED")]
            assert not failed, failed
            before = len(cluster.job_ids("-t", "all"))
            for worker in WORKERS:
                qlaunch(cluster, cfg, lock, worker, tmp_path / "launches" / worker)
            assert len(cluster.job_ids("-t", "all")) > before, f"nothing submitted: {records}"
            cluster.wait_idle(600)
        else:
            raise AssertionError("campaign did not complete")
        jobs = cluster.job_partitions()

    partition_of_worker = {"gpu": "gpu", "vasp": "cpu", "cpu": "cpu"}
    # SLURM's own record: every job of a worker ran in that worker's partition
    assert jobs and all(state == "COMPLETED" for _, _, state in jobs)
    for name, partition, _ in jobs:
        assert partition == partition_of_worker[name.removeprefix("fw_")], (name, partition)
    # every Firework was pulled by the worker of its category
    expected_worker = {"gpu": "gpu", "vasp": "vasp", "cpu": "cpu", None: "cpu"}
    for r in records:
        assert r["fworker"] == expected_worker[r["category"]], r
    by_stage = {}
    for r in records:
        by_stage.setdefault(r["stage"], set()).add(partition_of_worker[r["fworker"]])
    assert by_stage["train"] == {"gpu"} and by_stage["explore"] == {"gpu"}  # created at run time by round 0
    assert by_stage["label"] == {"cpu"} and by_stage["select"] == {"cpu"}
    assert len(jobs) == len(records)  # one queue job per Firework

    config, _ = load_campaign(campaign)
    store = open_store(config, tmp_path / "w")
    report = build_report(store, config)
    store.close()
    assert report["finished"] and [r["round"] for r in report["rounds"]] == [0]
    assert report["rounds"][0]["n_labels_total"] == 8
