"""The explore jobs load their ensemble on the worker's device (AL_FLOWS_DEVICE): a worker told to
use a GPU it lacks refuses at once, naming the variable, instead of exploring on the CPU."""

import pytest
import torch

from al_flows.active_learning.jobs.exploration import MDExploreMaker, ShearExploreMaker
from al_flows.exploration.md import NVTSettings
from al_flows.exploration.shear import ShearSettings
from al_flows.frames.extxyz import frames_text
from al_flows.potential.device import ENV
from al_flows.potential.model import ModelSettings, build_member
from al_flows.potential.weights import member_to_bytes, weights_text
from al_flows.structures.multilayer import cuni_multilayer

MAKERS = {
    "shear": ShearExploreMaker(
        settings=ShearSettings(n_runs=1, sigma=0.0, shear_step=0.5, gamma_max=0.2, max_steps=1, max_opt_steps=2)
    ),
    "md": MDExploreMaker(settings=NVTSettings(n_runs=1, n_steps=2, record_every=1)),
}


def _models():
    """Two untrained tiny SchNet members as TrainingDocument dicts (the job only reads these two fields)."""
    ms = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)
    return [
        {"model_id": f"m{s}", "model_blob": weights_text(member_to_bytes(build_member(ms, ["Cu", "Ni"], s), ms, {}))}
        for s in (1, 2)
    ]


def _structures():
    atoms = cuni_multilayer((2, 2, 2))
    atoms.info["structure_id"] = "pristine"
    return {"structures_blob": frames_text([atoms])}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_explore_job_refuses_a_cuda_device_the_worker_lacks(kind, monkeypatch):
    maker = MAKERS[kind]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a worker without CUDA, on any machine
    structures, models = _structures(), _models()

    monkeypatch.setenv(ENV, "cpu")  # the same call runs where the worker's device exists
    doc = type(maker).make.original(maker, structures, models, "c", 0, seed=1)
    assert doc.device == "cpu" and doc.n_frames > 0

    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(RuntimeError, match=r"^AL_FLOWS_DEVICE='cuda' but torch sees no CUDA device.*use auto or cpu$"):
        type(maker).make.original(maker, structures, models, "c", 0, seed=1)
