"""The shipped FireWorks templates load with FireWorks' own classes and render the
queue scripts a cluster expects."""

import re
from pathlib import Path

import pytest
import yaml
from fireworks import FWorker, LaunchPad
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

DIR = Path(__file__).resolve().parents[2] / "flows" / "fireworks"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "fireworks.md"


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
        (
            "my_qadapter_gpu_slurm.yaml",
            ["#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1", "my_fworker_gpu.yaml singleshot"],
        ),
        ("my_qadapter_vasp_slurm.yaml", ["#SBATCH --partition=cpu", "#SBATCH --ntasks=64", "module load vasp"]),
        (
            "my_qadapter_cpu_slurm.yaml",
            ["#SBATCH --partition=cpu", "#SBATCH --ntasks=1", "my_fworker_cpu.yaml singleshot"],
        ),
        ("my_qadapter_vasp_pbs.yaml", ["#PBS -q batch", "#PBS -l nodes=1:ppn=32", "module load vasp"]),
        ("my_qadapter_gpu_pbs.yaml", ["#PBS -q gpu", "my_fworker_gpu.yaml singleshot"]),
        ("my_qadapter_cpu_pbs.yaml", ["#PBS -q batch", "#PBS -l nodes=1:ppn=1", "my_fworker_cpu.yaml singleshot"]),
    ],
)
def test_queue_adapters_render(adapter, lines):
    qa = CommonAdapter.from_file(str(DIR / adapter))
    script = qa.get_script_str("/scratch/launch")
    for line in lines:
        assert line in script, line
    assert "cd /scratch/launch" in script


def _named_in_guide() -> set[str]:
    return set(re.findall(r"my_[a-z_]+\.yaml", GUIDE.read_text()))


def test_guide_names_every_template_and_each_exists():
    named = _named_in_guide()
    shipped = {p.name for p in DIR.glob("*.yaml")}
    assert {"my_qadapter_cpu_pbs.yaml", "my_qadapter_cpu_slurm.yaml", "my_launchpad.yaml"} <= named
    assert not named - shipped, f"docs/fireworks.md names files flows/fireworks lacks: {sorted(named - shipped)}"
    assert not shipped - named, (
        f"flows/fireworks ships files docs/fireworks.md does not mention: {sorted(shipped - named)}"
    )


@pytest.mark.parametrize("name", sorted(_named_in_guide()))
def test_every_template_the_guide_names_loads(name):
    path = DIR / name
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data
    if name.startswith("my_qadapter_"):
        qa = CommonAdapter.from_file(str(path))
        assert qa.q_type == data["_fw_q_type"] and qa.q_type in ("SLURM", "PBS")
        worker = re.search(r"-w (\S+)", data["rocket_launch"]).group(1).rsplit("/", 1)[-1]
        assert (DIR / worker).is_file(), worker
        kind = name.split("_")[2]  # gpu / vasp / cpu
        assert worker == f"my_fworker_{kind}.yaml"
        script = qa.get_script_str("/scratch/launch")
        assert "rlaunch" in script and "singleshot" in script
    elif name.startswith("my_fworker_"):
        assert FWorker.from_file(str(path)).name == data["name"]
    else:
        assert LaunchPad.from_file(str(path)).name == data["name"]
