"""The campaign Flow: its jobs, their metadata, and a JSON round trip (what FireWorks needs)."""

import json

from monty.json import MontyDecoder, jsanitize

from al_flows.active_learning import ActiveLearningMaker, ShearExploreMaker
from al_flows.campaign.config import validate_campaign


def test_flow_jobs_metadata_and_json_round_trip(tiny_dict):
    config = validate_campaign(tiny_dict)
    flow = ActiveLearningMaker.from_config(config).make()
    stages = [j.metadata["stage"] for j in flow.jobs]
    assert stages == ["structures", "test_set", "perturb", "label", "merge", "round"]
    assert all(
        j.metadata["campaign"] == "tiny" and j.metadata["fingerprint"] == config.fingerprint() for j in flow.jobs
    )
    assert [j.metadata["round"] for j in flow.jobs] == [-1, -1, -1, -1, -1, 0]

    text = json.dumps(jsanitize(flow.as_dict(), strict=True, enum_values=True))
    assert len(text) < 100_000  # no blobs or structures inside job inputs
    back = MontyDecoder().process_decoded(json.loads(text))
    maker = back.jobs[-1].maker
    assert isinstance(maker, ActiveLearningMaker)
    assert maker.train_maker.model == config.model
    assert maker.select_maker.settings == config.selection
    assert maker.stop_policy.max_rounds == 2
    assert isinstance(maker.explore_makers[0], ShearExploreMaker)
    assert maker.explore_makers[0].settings.gamma_max == 0.2
    assert maker.label_maker.labeller_name == "ase:emt"


def test_explorer_names_become_maker_names(tiny_dict):
    tiny_dict["explorers"] = [
        dict(tiny_dict["explorers"][0], name="shear_a"),
        dict(tiny_dict["explorers"][0], name="shear_b", sigma=0.0),
    ]
    maker = ActiveLearningMaker.from_config(validate_campaign(tiny_dict))
    assert [m.name for m in maker.explore_makers] == ["shear_a", "shear_b"]
    assert maker.explore_makers[1].settings.sigma == 0.0
