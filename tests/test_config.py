"""Campaign configuration: the shipped files validate; bad input gives one line naming the field."""

from pathlib import Path

import pytest
import yaml

from al_flows.config import ConfigError, load_campaign, validate_campaign

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "flows" / "demo_cuni_emt.yaml"


def demo_dict():
    return yaml.safe_load(DEMO.read_text())


def error_of(data) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_campaign(data, source="c.yaml")
    return str(exc.value)


def test_demo_config_validates_with_expected_values():
    config, base = load_campaign(DEMO)
    assert config.name == "demo-cuni-emt"
    assert config.elements == ["Cu", "Ni"]
    assert config.initial.structures[0].size == (2, 2, 2)
    assert config.explorers[0].gamma_max == pytest.approx(0.33)
    assert config.selection.trust_lo < config.selection.trust_hi
    assert config.store.kind == "embedded"
    assert base == DEMO.parent


def test_every_flow_file_validates():
    files = sorted((ROOT / "flows").glob("*.yaml"))
    assert files
    for f in files:
        load_campaign(f)


def test_trust_levels_inverted_rejected_in_one_line():
    d = demo_dict()
    d["selection"].update(trust_lo=0.5, trust_hi=0.1)
    msg = error_of(d)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("c.yaml: selection")
    assert "trust_lo" in msg


def test_unknown_key_rejected_naming_it():
    d = demo_dict()
    d["training"]["epochz"] = 3
    msg = error_of(d)
    assert msg == "c.yaml: training.epochz: unknown key; remove it or check its spelling (see docs/configuration.md)"


def test_wrong_type_rejected_naming_field():
    d = demo_dict()
    d["ensemble_size"] = "four"
    msg = error_of(d)
    assert len(msg.splitlines()) == 1 and msg.startswith("c.yaml: ensemble_size:")


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("ensemble_size",), 1, "ensemble_size"),
        (("max_rounds",), 0, "max_rounds"),
        (("model", "cutoff"), -1.0, "model.cutoff"),
        (("training", "lr"), 0.0, "training.lr"),
        (("convergence", "accurate_ratio"), 1.5, "convergence.accurate_ratio"),
        (("elements",), ["Cu", "Xx"], "elements"),
        (("labeller", "kind"), "gaussian", "labeller"),
    ],
)
def test_impossible_values_rejected(path, value, field):
    d = demo_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    msg = error_of(d)
    assert msg.splitlines()[0].startswith(f"c.yaml: {field}")


def test_unknown_variant_and_missing_section():
    d = demo_dict()
    d["initial"]["structures"][0]["variants"] = ["VNi(N9)x"]
    assert "initial.structures.0.variants" in error_of(d)
    d = demo_dict()
    del d["explorers"]
    assert error_of(d) == "c.yaml: explorers: required; add it (see docs/configuration.md)"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such campaign file"):
        load_campaign(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_campaign(bad)


def test_fingerprint_ignores_store_but_not_science():
    d = demo_dict()
    a = validate_campaign(d).fingerprint()
    d["store"] = {"kind": "mongodb", "database": "x"}
    assert validate_campaign(d).fingerprint() == a
    d["training"]["epochs"] = 41
    assert validate_campaign(d).fingerprint() != a


def test_fingerprint_is_stable_across_versions():
    """A work directory made by an earlier version must still continue: the settings fingerprint
    of a fixed campaign does not change when keys that do not change results are added
    (store secrets, failure handling: training.max_retries, ...)."""
    from tests.conftest import TINY

    assert validate_campaign(TINY).fingerprint() == "838ee16accf0d065"
    retried = {**TINY, "training": {**TINY["training"], "max_retries": 5, "divergence_factor": 10.0}}
    assert validate_campaign(retried).fingerprint() == "838ee16accf0d065"
