"""merge_labels refuses to mix labels computed with other label settings into a dataset, unless the
campaign allows it explicitly (``labeller.allow_mixed_settings``, ``ActiveLearningMaker.allow_mixed_settings``)."""

from dataclasses import replace

import pytest

from al_flows.active_learning import ActiveLearningMaker
from al_flows.active_learning.jobs.labelling import LabellingError
from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.schemas import RoundState
from al_flows.campaign.config import validate_campaign
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from helpers import emt_labelled_multilayer

merge = merge_labels.original


def _labels(seeds, settings: str) -> dict:
    """A LabelDocument-like dict: EMT-labelled frames computed with label settings ``settings``."""
    frames = [emt_labelled_multilayer(s) for s in seeds]
    for a in frames:
        a.info.update(round=0, explorer="shear", label_settings=settings)
    return {"labelled_blob": frames_text(frames)}


def test_labels_of_other_settings_are_refused_unless_allowed():
    dataset = merge(None, _labels([0, 1], "vasp:aaaa"), "c", -1).model_dump()
    assert dataset["n_frames"] == 2

    same = merge(dataset, _labels([2], "vasp:aaaa"), "c", 0)  # the campaign's settings: merged
    assert (same.n_frames, same.n_added) == (3, 1)

    other = _labels([2], "vasp:bbbb")
    with pytest.raises(LabellingError) as err:
        merge(dataset, other, "c", 3)
    msg = str(err.value)
    assert "would be mixed" in msg and "'vasp:aaaa'" in msg and "'vasp:bbbb'" in msg
    assert msg.startswith("round 3: ") and "allow_mixed_settings: true" in msg and "\n" not in msg

    mixed = merge(dataset, other, "c", 3, allow_mixed_settings=True)
    assert (mixed.n_frames, mixed.n_added) == (3, 1)
    frames = frames_from_bytes(mixed.dataset_blob)
    assert [a.info["label_settings"] for a in frames] == ["vasp:aaaa", "vasp:aaaa", "vasp:bbbb"]

    # the initial labels too: no dataset yet, but two settings within the labels
    both = {"labelled_blob": _labels([0], "vasp:aaaa")["labelled_blob"] + _labels([1], "x")["labelled_blob"]}
    with pytest.raises(LabellingError, match="would be mixed"):
        merge(None, both, "c", -1)
    assert merge(None, both, "c", -1, allow_mixed_settings=True).n_frames == 2


def test_the_campaigns_override_reaches_the_merge_jobs(tiny_dict):
    """The initial merge and a round's merge get the campaign's allow_mixed_settings (their 5th argument)."""
    maker = ActiveLearningMaker.from_config(validate_campaign(tiny_dict))
    state = RoundState(round=1, dataset_uuid="d", structures_uuid="s", test_uuid="t")
    for allowed in (False, True):
        m = replace(maker, allow_mixed_settings=allowed)
        merges = [j for j in [*m.initial_jobs(), *m.round_jobs(state, 8)] if j.metadata["stage"] == "merge"]
        assert [j.metadata["round"] for j in merges] == [-1, 1]
        assert [j.function_args[4] for j in merges] == [allowed, allowed]
