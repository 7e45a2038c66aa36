"""The training loss per structure, L = rho (E - E_hat)^2 + (1/N) sum_k |F_k - F_hat_k|^2 (the Cu-Ni
paper's loss): computed by hand on known errors, and the weight rho the trainer is given is the one
its training and validation losses use."""

import numpy as np
import pytest
import schnetpack.properties as P
import torch

from al_flows.potential.evaluation import per_frame_loss
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer


def test_per_frame_loss_by_hand():
    # two structures: A with 2 atoms, B with 3 atoms
    n_atoms = torch.tensor([2, 3])
    idx_m = torch.tensor([0, 0, 1, 1, 1])
    e_true = torch.tensor([-7.25, 3.5], dtype=torch.float64)
    e_pred = e_true + torch.tensor([0.5, -1.0], dtype=torch.float64)  # dE = 0.5, -1.0 eV
    f_true = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32))
    df = torch.tensor([[1, 0, 0], [0, 2, 0], [0, 0, 1], [1, -1, 0], [0, 0, 0]], dtype=torch.float32)
    out = {P.energy: e_pred, P.forces: f_true + df}
    batch = {P.n_atoms: n_atoms, P.idx_m: idx_m}
    # by hand: |dF|^2 per atom A: 1, 4 -> mean 2.5; B: 1, 2, 0 -> mean 1.0; dE^2: 0.25, 1.0
    expected = {0.0: [2.5, 1.0], 0.5: [2.5 + 0.5 * 0.25, 1.0 + 0.5 * 1.0], 2.0: [2.5 + 0.5, 1.0 + 2.0]}
    for rho, want in expected.items():
        got = per_frame_loss(out, batch, e_true, f_true, rho)
        assert got.shape == (2,)
        # float32 round-off: F_true + dF - F_true with |F| <= 3 is exact to ~1 ulp (3.6e-7) per
        # component, squared and summed over 3 components and <= 3 atoms: well inside 1e-5
        np.testing.assert_allclose(got.detach().double().numpy(), want, rtol=0, atol=1e-5)


def _hand_loss(trainer: Trainer, idx, rho: float) -> np.ndarray:
    """The per-structure loss of the trainer's current weights on frames ``idx``, from its
    predictions, in float64 by the formula."""
    batch, e_true, f_true = trainer.data.batch(np.asarray(idx))
    out = trainer.module(batch)
    de = (out[P.energy].detach().double() - e_true.double()).numpy()
    df2 = ((out[P.forces].detach().double() - f_true.double()) ** 2).sum(dim=1).numpy()
    n = batch[P.n_atoms].numpy()
    f_term = np.bincount(batch[P.idx_m].numpy(), weights=df2, minlength=len(n)) / n
    return rho * de**2 + f_term


def test_the_trainer_uses_its_rho_in_training_and_validation_losses():
    from helpers import emt_labelled_multilayer

    frames = [emt_labelled_multilayer(s) for s in range(3)]
    model = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)
    idx = [0, 1, 2]
    train_loss, hand = {}, {}
    for rho in (0.0, 0.5):
        # one batch of all frames, so the first epoch's training loss is the loss of the initial weights
        trainer = Trainer(frames, model, TrainingSettings(rho=rho, batch_size=4, epochs=1, device="cpu"), seed=0)
        trainer.fit_reference(idx)
        hand[rho] = _hand_loss(trainer, idx, rho)
        # float32 model outputs, summed over 32 atoms in float32 by the loss and in float64 here:
        # relative round-off ~32 * 6e-8 = 2e-6, so 1e-5 relative
        np.testing.assert_allclose(trainer.errors(idx).loss, hand[rho], rtol=1e-5)  # validation loss
        train_loss[rho] = trainer.run_epochs(idx, [], 1)[0]["train_loss"]
        assert train_loss[rho] == pytest.approx(hand[rho].mean(), rel=1e-5)
    # same seed, same initial weights: the two losses differ by the energy term alone, a visible
    # part of the loss (else a trainer ignoring rho could pass)
    energy_term = (hand[0.5] - hand[0.0]).mean()
    assert energy_term > 0.05 * hand[0.5].mean()
    assert train_loss[0.5] - train_loss[0.0] == pytest.approx(energy_term, rel=1e-4)
