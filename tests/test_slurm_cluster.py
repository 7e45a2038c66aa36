"""Smoke test of the private SLURM cluster harness (tests/slurm_cluster.py)."""

import itertools

from slurm_cluster import SlurmCluster


def test_jobs_run_in_their_partitions(tmp_path, slurm_ready):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    with SlurmCluster(tmp_path) as cluster:
        cluster.sbatch(
            "--partition=gpu",
            "--gres=gpu:1",
            "--job-name=smoke_gpu",
            "--wrap",
            "echo $SLURM_JOB_PARTITION $CUDA_VISIBLE_DEVICES > out_gpu",
            cwd=jobs,
        )
        cluster.sbatch(
            "--partition=cpu",
            "--job-name=smoke_cpu",
            "--wrap",
            "echo $SLURM_JOB_PARTITION $CUDA_VISIBLE_DEVICES > out_cpu",
            cwd=jobs,
        )
        cluster.wait_idle(120)
        assert (jobs / "out_gpu").read_text().split() == ["gpu", "0"]
        assert (jobs / "out_cpu").read_text().split() == ["cpu"]  # no GPU for a cpu job
        assert sorted(cluster.job_partitions()) == [
            ("smoke_cpu", "cpu", "COMPLETED"),
            ("smoke_gpu", "gpu", "COMPLETED"),
        ]
        daemons = cluster.daemon_pids()
    assert set(daemons) == {"munged", "slurmctld", "slurmd"}
    # nothing of the cluster is left running
    assert not [name for name, pid in daemons.items() if _alive(pid)]
    assert not cluster.leftover_pids()


def test_one_job_at_a_time(tmp_path, slurm_ready):
    """Jobs in both partitions never overlap: the node has a single slot."""
    with SlurmCluster(tmp_path) as cluster:
        for part in ("cpu", "gpu"):
            cluster.sbatch(f"--partition={part}", "--wrap", "sleep 1", cwd=tmp_path)
        cluster.wait_idle(120)
        recs = sorted(cluster.job_records(), key=lambda r: r["StartTime"])
        assert [r["JobState"] for r in recs] == ["COMPLETED"] * 2
        for a, b in itertools.pairwise(recs):
            assert a["EndTime"] <= b["StartTime"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
