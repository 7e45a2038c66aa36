"""The members of an ensemble differ by their seed: every train job of a round gets its own seed,
and each member starts from its own initial weights, drawn from that seed."""

from dataclasses import replace

import torch

from al_flows.active_learning import ActiveLearningMaker
from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.jobs.training import TrainMemberMaker
from al_flows.active_learning.schemas import RoundState
from al_flows.campaign.config import validate_campaign
from al_flows.frames.extxyz import frames_text
from al_flows.potential import training as training_module
from al_flows.potential.model import TrainingSettings
from helpers import emt_labelled_multilayer


def _train_jobs(maker: ActiveLearningMaker, round_: int) -> list:
    state = RoundState(round=round_, dataset_uuid="d", structures_uuid="s", test_uuid="t")
    return [j for j in maker.round_jobs(state, 8) if j.metadata["stage"] == "train"]


def test_every_member_of_a_round_gets_its_own_seed(tiny_dict):
    tiny_dict["ensemble_size"] = 4
    maker = ActiveLearningMaker.from_config(validate_campaign(tiny_dict))
    seeds = {}
    for k in (0, 1):
        jobs = _train_jobs(maker, k)
        # TrainMemberMaker.make(dataset, campaign, round, member, seed)
        assert [(j.function_args[2], j.function_args[3]) for j in jobs] == [(k, m) for m in range(4)]
        seeds[k] = [j.function_args[4] for j in jobs]
        assert len(set(seeds[k])) == 4, seeds[k]
    assert set(seeds[0]).isdisjoint(seeds[1])  # and new seeds each round
    # the seeds follow the campaign's seed: another campaign seed, other members
    other = _train_jobs(replace(maker, seed=maker.seed + 1), 0)
    assert set(seeds[0]).isdisjoint(j.function_args[4] for j in other)


def test_members_start_from_different_initial_weights(tiny_dict, monkeypatch):
    """The train job of each member builds its model from the member's seed: the initial weights of
    two members differ, those of one seed built twice are equal."""
    maker = ActiveLearningMaker.from_config(validate_campaign(tiny_dict))
    member_seeds = [j.function_args[4] for j in _train_jobs(maker, 0)]  # the tiny campaign: 2 members
    built = []  # (seed, initial weights) of every model the trainer builds

    def spy(settings, elements, seed):
        module = real(settings, elements, seed)
        built.append((seed, {k: v.detach().clone() for k, v in module.state_dict().items()}))
        return module

    real = training_module.build_member
    monkeypatch.setattr(training_module, "build_member", spy)
    frames = [emt_labelled_multilayer(s) for s in range(4)]
    for a in frames:
        a.info.update(round=-1, explorer="initial")
    dataset = merge_labels.original(None, {"labelled_blob": frames_text(frames)}, "c", -1).model_dump()
    train = replace(maker.train_maker, training=TrainingSettings(epochs=1, batch_size=4, val_fraction=0.25))
    docs = [TrainMemberMaker.make.original(train, dataset, "c", 0, m, s) for m, s in enumerate(member_seeds)]
    assert [d.seed for d in docs] == member_seeds and docs[0].model_id != docs[1].model_id

    assert [s for s, _ in built] == member_seeds  # each member's model is built from its own seed
    (_, w0), (_, w1) = built
    compared = [k for k, v in w0.items() if k.startswith("representation") and k.endswith("weight")]
    assert len(compared) >= 3, list(w0)
    # independent draws of every weight tensor of the representation: initialised at scale ~0.1-1,
    # two draws differ far beyond 1e-4 (equal draws: identical)
    for k in compared:
        assert not torch.allclose(w0[k], w1[k], atol=1e-4), k
    # the same seed again: the same draw, bit for bit (so the difference above is the seed's)
    again = real(maker.train_maker.model, ["Cu", "Ni"], member_seeds[0]).state_dict()
    assert all(torch.equal(again[k], w0[k]) for k in compared)
