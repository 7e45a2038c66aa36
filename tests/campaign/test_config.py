"""Campaign configuration: the shipped files validate; bad input gives one line naming the field."""

from pathlib import Path

import pytest
import yaml

from al_flows.campaign.config import ConfigError, load_campaign, validate_campaign

ROOT = Path(__file__).resolve().parents[2]
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
    assert "initial.structures[0].variants" in error_of(d)
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
    from helpers import TINY

    # 0.2.0 left the when-to-stop keys (max_rounds, convergence) and the run-time keys out of the
    # fingerprint, shear max_steps defaults to what gamma_max needs (None) instead of 30, and the
    # test set gained the mixed kind (the default) and its keys
    # (the tiny campaign had 838ee16accf0d065 under 0.1)
    assert validate_campaign(TINY).fingerprint() == "fa122faf91dd4d02"
    retried = {**TINY, "training": {**TINY["training"], "max_retries": 5, "divergence_factor": 10.0}}
    assert validate_campaign(retried).fingerprint() == "fa122faf91dd4d02"


# The fingerprints of the shipped campaign files with an autotest section, as they were before the
# autotest gained relative tolerances and its sign check (relative_tolerances, sign_zero): a work
# directory of one of them continues while those keys hold their defaults.
AUTOTEST_FILE_FINGERPRINTS = {
    "al_random_cells_eam.yaml": "58f6bc0008b4e9df",
    "al_random_cells_emt.yaml": "f3da298727ae5370",
    "cu_properties_budget_eam.yaml": "6544ea38271bcf8f",
    "cu_properties_budget_emt.yaml": "e9752f6d8eb561b3",
    "cuni_dpgen_eam.yaml": "17096ce3b14b23bc",
    "cuni_dpgen_emt.yaml": "bf4d7002d42254ed",
}


@pytest.mark.parametrize("name", sorted(AUTOTEST_FILE_FINGERPRINTS))
def test_autotest_tolerance_keys_at_their_defaults_keep_the_fingerprint(name):
    from al_flows.validation.tolerances import DEFAULT_RELATIVE_TOLERANCES

    data = yaml.safe_load((ROOT / "flows" / name).read_text())
    config = validate_campaign(data)
    assert config.fingerprint() == AUTOTEST_FILE_FINGERPRINTS[name]
    # the keys written out at their defaults (as a work directory's campaign.json holds them), or a
    # default repeated (the rest are laid under it): the same
    data["autotest"] = {**data["autotest"], "relative_tolerances": dict(DEFAULT_RELATIVE_TOLERANCES)}
    assert validate_campaign(data).fingerprint() == AUTOTEST_FILE_FINGERPRINTS[name]
    data["autotest"]["relative_tolerances"] = {"dE": DEFAULT_RELATIVE_TOLERANCES["dE"]}
    assert validate_campaign(data).fingerprint() == AUTOTEST_FILE_FINGERPRINTS[name]
    # another value judges the rows otherwise: another campaign, as another absolute tolerance is
    data["autotest"]["relative_tolerances"] = {**DEFAULT_RELATIVE_TOLERANCES, "dE": None}
    assert validate_campaign(data).fingerprint() != AUTOTEST_FILE_FINGERPRINTS[name]
    data["autotest"] = {**config.autotest.model_dump(mode="json"), "sign_zero": {"dE": 1.0}}
    assert validate_campaign(data).fingerprint() != AUTOTEST_FILE_FINGERPRINTS[name]


def test_every_shipped_file_with_an_autotest_has_its_fingerprint_pinned():
    with_autotest = {p.name for p in (ROOT / "flows").glob("*.yaml") if "autotest" in yaml.safe_load(p.read_text())}
    assert with_autotest == set(AUTOTEST_FILE_FINGERPRINTS)


# One science key of every section of the tiny campaign (tests/helpers.py): (section path, key, new value).
SCIENCE_CHANGES = [
    (("model",), "n_atom_basis", 32),
    (("model",), "cutoff", 4.5),
    (("training",), "lr", 1e-3),
    (("training",), "epochs", 5),
    (("selection",), "trust_hi", 50.0),
    (("selection",), "max_candidates", 4),
    (("selection",), "pick", "highest"),
    (("explorers", 0), "sigma", 0.04),
    (("explorers", 0), "fmax", 0.05),
    (("labeller",), "calculator", "lj"),
    (("initial",), "n_rattled", 5),
    (("initial", "structures", 0), "lattice_constant", 3.6),
    (("test_set",), "max_frames", 7),
    (("test_set",), "sigma", 0.03),
    ((), "ensemble_size", 3),
    ((), "seed", 4),
]


def _changed(base: dict, path: tuple, key: str, value) -> dict:
    import copy

    d = copy.deepcopy(base)
    section = d
    for p in path:
        section = section[p]
    assert key in section and section[key] != value, (path, key)  # a real change of a key the campaign sets
    section[key] = value
    return d


@pytest.mark.parametrize(
    ("path", "key", "value"), SCIENCE_CHANGES, ids=[".".join(map(str, p + (k,))) for p, k, _ in SCIENCE_CHANGES]
)
def test_fingerprint_changes_with_every_science_section(tiny_dict, path, key, value):
    """A change of the model, training, selection, explorers, labeller, initial data or test set
    defines other results: another fingerprint (a work directory must not mix them)."""
    base = validate_campaign(tiny_dict).fingerprint()
    changed = validate_campaign(_changed(tiny_dict, path, key, value))
    assert changed.fingerprint() != base
    assert validate_campaign(tiny_dict).fingerprint() == base  # deterministic


def test_fingerprint_leaves_out_exactly_the_listed_keys(tiny_dict):
    """Changing a key of NOT_FINGERPRINTED keeps the fingerprint; changing any other top-level
    section changes it. Convergence is a science section by its effect on the rounds run, but
    it is listed as 'when to stop' (raising the target extends a campaign): this test follows
    the list, test_fingerprint_changes_with_every_science_section does not."""
    from al_flows.workflow.config import NOT_FINGERPRINTED

    base = validate_campaign(tiny_dict).fingerprint()
    cases = {  # name: (change, left out of the fingerprint by the list)
        "store": ({"store": {"kind": "mongodb", "database": "x"}}, NOT_FINGERPRINTED.get("store") is True),
        "max_rounds": ({"max_rounds": 3}, NOT_FINGERPRINTED.get("max_rounds") is True),
        "convergence": ({"convergence": {"accurate_ratio": 0.9}}, NOT_FINGERPRINTED.get("convergence") is True),
        "training.max_retries": (
            {"training": {**tiny_dict["training"], "max_retries": 5}},
            "max_retries" in NOT_FINGERPRINTED.get("training", ()),
        ),
        "selection": ({"selection": {**tiny_dict["selection"], "max_candidates": 4}}, False),
    }
    for name, (change, left_out) in cases.items():
        assert (validate_campaign({**tiny_dict, **change}).fingerprint() == base) == left_out, name
    assert NOT_FINGERPRINTED.get("store") is True  # where results are stored never names them
    for science in ("model", "selection", "explorers", "labeller", "initial", "test_set"):
        assert NOT_FINGERPRINTED.get(science) is not True, science


@pytest.mark.parametrize(
    "model, field",
    [
        ("al_flows.exploration.md:NVTSettings", "temperatures_K"),
        ("al_flows.active_learning.config:TestSetConfig", "md_temperatures_K"),
    ],
)
def test_every_temperature_list_refuses_non_positive_kelvin(model, field):
    import importlib

    from pydantic import ValidationError

    module, name = model.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert getattr(cls(**{field: [300.0, 900.0]}), field) == [300.0, 900.0]
    for bad in ([300.0, 0.0], [-5.0]):
        with pytest.raises(ValidationError, match=r"temperatures must be positive \(Kelvin\)"):
            cls(**{field: bad})


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[2] / "flows").glob("*.yaml")))
def test_every_example_reads_back_from_its_stored_copy(name, tmp_path):
    """A work directory keeps the campaign with every field written out (campaign.json); status,
    report and continuing read it back: it must validate again, to the same settings. (A staged
    DP-GEN campaign once failed here: its stored defaults looked like keys given next to stages.)"""
    import json

    from al_flows.campaign.config import load_campaign
    from al_flows.campaign.run import load_workdir_campaign, remember_campaign

    config, _ = load_campaign(Path(__file__).parents[2] / "flows" / name)
    remember_campaign(config, tmp_path)
    again = load_workdir_campaign(tmp_path)
    assert again.model_dump(mode="json") == json.loads((tmp_path / "campaign.json").read_text())
    assert again.fingerprint() == config.fingerprint()


def test_a_shear_schedule_reads_back_from_its_stored_copy(tmp_path):
    import copy

    from al_flows.campaign.run import load_workdir_campaign, remember_campaign
    from helpers import TINY

    d = copy.deepcopy(TINY)
    shear = {k: v for k, v in d["explorers"][0].items() if k != "gamma_max"}
    d["explorers"] = [{**shear, "schedule": {"gamma_max": [0.1, 0.2], "n_levels": 2}}]
    config = validate_campaign(d)
    remember_campaign(config, tmp_path)
    assert load_workdir_campaign(tmp_path).fingerprint() == config.fingerprint()
