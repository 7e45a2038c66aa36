"""The shipped FireWorks templates load with FireWorks' own classes and render the
queue scripts a cluster expects."""

from pathlib import Path

import pytest
from fireworks import FWorker, LaunchPad
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

DIR = Path(__file__).resolve().parents[1] / "flows" / "fireworks"


@pytest.mark.parametrize("name,category", [("gpu", "gpu"), ("vasp", "vasp"), ("cpu", ["cpu", None])])
def test_workers_pull_their_category(name, category):
    worker = FWorker.from_file(str(DIR / f"my_fworker_{name}.yaml"))
    assert worker.category == category
    query = worker.query
    expected = {"$in": ["cpu", None]} if isinstance(category, list) else category
    assert query["spec._category"] == expected


def test_launchpad_template_reads():
    lp = LaunchPad.from_file(str(DIR / "my_launchpad.yaml"))
    assert lp.host == "mongodb.example.org" and lp.name == "al_flows_fireworks"


@pytest.mark.parametrize(
    "adapter,lines",
    [
        ("my_qadapter_gpu_slurm.yaml", ["#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1", "my_fworker_gpu.yaml singleshot"]),
        ("my_qadapter_vasp_slurm.yaml", ["#SBATCH --partition=cpu", "#SBATCH --ntasks=64", "module load vasp"]),
        ("my_qadapter_cpu_slurm.yaml", ["#SBATCH --partition=cpu", "#SBATCH --ntasks=1", "my_fworker_cpu.yaml singleshot"]),
        ("my_qadapter_vasp_pbs.yaml", ["#PBS -q batch", "#PBS -l nodes=1:ppn=32", "module load vasp"]),
        ("my_qadapter_gpu_pbs.yaml", ["#PBS -q gpu", "my_fworker_gpu.yaml singleshot"]),
    ],
)
def test_queue_adapters_render(adapter, lines):
    qa = CommonAdapter.from_file(str(DIR / adapter))
    script = qa.get_script_str("/scratch/launch")
    for line in lines:
        assert line in script, line
    assert "cd /scratch/launch" in script
