"""The run-time device: resolved on the worker from training.device / AL_FLOWS_DEVICE / auto,
refused with one line when the worker lacks it, honoured by the ensemble loader and trainer."""

import pytest
import torch
from pydantic import ValidationError

from al_flows.potential.device import ENV, resolve_device
from al_flows.potential.model import TrainingSettings

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a worker without CUDA")


def test_auto_reads_the_environment_then_the_hardware(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    monkeypatch.setenv(ENV, "cpu")
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    monkeypatch.setenv(ENV, "auto")
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


@no_cuda
def test_an_explicit_setting_wins_and_a_missing_gpu_is_refused(monkeypatch):
    monkeypatch.setenv(ENV, "cuda")
    assert resolve_device("cpu") == "cpu"  # training.device: cpu beats the worker's variable
    with pytest.raises(RuntimeError, match=r"^AL_FLOWS_DEVICE='cuda' but torch sees no CUDA device.*use auto or cpu$"):
        resolve_device(None)
    monkeypatch.delenv(ENV)
    with pytest.raises(RuntimeError, match=r"^training.device='cuda:1' but torch sees no CUDA device"):
        resolve_device("cuda:1")


def test_bad_names_are_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv(ENV, "gpu")
    with pytest.raises(ValueError, match=r"^AL_FLOWS_DEVICE='gpu' is not a torch device; use auto, cpu, cuda"):
        resolve_device(None)
    with pytest.raises(ValidationError, match="'tpu' is not a torch device"):
        TrainingSettings(device="tpu")
    assert TrainingSettings().device == "auto" and TrainingSettings(device="cuda:1").device == "cuda:1"


@no_cuda
def test_the_loader_and_trainer_honour_the_workers_setting(monkeypatch):
    """Every model job loads its ensemble through load_ensemble and trains through Trainer: both ask
    resolve_device, so a worker told to use a GPU it lacks fails at once instead of running on CPU."""
    from al_flows.potential.model import ModelSettings
    from al_flows.potential.training import Trainer, train_member
    from al_flows.potential.weights import weights_text
    from al_flows.workflow.jobs import load_ensemble
    from helpers import emt_labelled_multilayer

    frames = [emt_labelled_multilayer(s) for s in range(4)]
    model = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)
    trained = train_member(frames, model, TrainingSettings(epochs=1, batch_size=2), seed=0)
    docs = [{"model_blob": weights_text(trained.blob)}]
    assert str(load_ensemble(docs).device) == "cpu"
    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(RuntimeError, match="AL_FLOWS_DEVICE='cuda'"):
        load_ensemble(docs)
    with pytest.raises(RuntimeError, match="AL_FLOWS_DEVICE='cuda'"):
        Trainer(frames, model, TrainingSettings(epochs=1), seed=0)
    assert Trainer(frames, model, TrainingSettings(epochs=1, device="cpu"), seed=0).device.type == "cpu"
