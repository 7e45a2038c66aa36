"""The EAM labeller (``calculator: eam``): a campaign labelled with a published EAM file end to end,
its labels checked against matscipy's EAM evaluated directly; the file's name and sha256 in the
label settings; the one-line refusals of the campaign file."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk

from al_flows.campaign.config import ConfigError, load_campaign, validate_campaign
from al_flows.labelling.eam import eam_calculator, file_sha256, potential_elements, potentials_dir
from al_flows.labelling.vasp_inputs import label_settings_id

EAM = {"kind": "ase", "calculator": "eam", "potential": "CuNi.eam.alloy"}


def eam_campaign(**labeller):
    from helpers import TINY

    data = copy.deepcopy(TINY)
    data["labeller"] = {**EAM, **labeller}
    return data


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from al_flows.campaign.run import run_campaign

    config = validate_campaign(eam_campaign())
    workdir = tmp_path_factory.mktemp("eam_campaign")
    report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    return config, workdir, report


def _stored(config, workdir, stage):
    from al_flows.campaign.stores import make_job_store

    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        return list(store.query({"metadata.campaign": "tiny", "metadata.stage": stage}, load=True))
    finally:
        store.close()


def test_eam_campaign_labels_equal_matscipy_eam_on_the_same_structures(finished):
    from matscipy.calculators.eam import EAM as MatscipyEAM

    from al_flows.frames.dataset import Dataset
    from al_flows.frames.extxyz import frames_from_bytes

    config, workdir, report = finished
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    merged = [d for d in _stored(config, workdir, "merge") if d["metadata"]["round"] == 0][0]
    train = list(Dataset.from_bytes(merged["output"]["dataset_blob"]))
    test = frames_from_bytes(_stored(config, workdir, "test_set")[0]["output"]["frames_blob"])
    assert len(train) == 8 + 3 and len(test) > 0  # 2 structures x 4 copies, then 3 labels of round 0
    # matscipy's own reader of the file (its atomic numbers, 28 and 29, are right), not al_flows'
    direct = MatscipyEAM(str(potentials_dir() / "CuNi.eam.alloy"), kind="eam/alloy")
    for atoms in train + test:
        labelled_energy, labelled_forces = atoms.get_potential_energy(), atoms.get_forces()
        work = atoms.copy()
        work.calc = direct
        # not float64 round-off here: the labels were computed at the positions before the frames were
        # stored as extxyz, which prints 8 decimals; a shift below 5e-9 Angstrom moved the forces by up
        # to 1.2e-7 eV/A and the energies by up to 3.8e-8 eV (measured), and printing the forces adds
        # 5e-9 eV/A (the float64 check is the next test)
        assert work.get_potential_energy() == pytest.approx(labelled_energy, abs=1e-6, rel=0)
        np.testing.assert_allclose(work.get_forces(), labelled_forces, rtol=0, atol=1e-6)
        assert atoms.info["labeller"] == "ase:eam:CuNi.eam.alloy"
    assert {a.info["label_settings"] for a in train} == {label_settings_id(config.labeller)}
    # the energies are EAM's (cohesive energies, -3.5 eV/atom for Cu, -4.45 for Ni), not EMT's (near 0)
    per_atom = [a.get_potential_energy() / len(a) for a in train + test]
    assert -4.5 < min(per_atom) and max(per_atom) < -2.0


def test_labels_of_the_labeller_equal_matscipy_eam_to_float64_round_off(finished):
    """The label code itself, at the very positions it labels: equal to matscipy's EAM (read by
    matscipy from the file) to float64 round-off of sums over ~100 pair and embedding terms of a few
    eV each (|E| ~ 120 eV x 1e-16 x 100 terms ~ 1e-12 eV)."""
    from matscipy.calculators.eam import EAM as MatscipyEAM

    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.labelling.ase import calculator_factory, label_frames

    config, workdir, _ = finished
    frames = frames_from_bytes(_stored(config, workdir, "test_set")[0]["output"]["frames_blob"])
    make = calculator_factory(config.labeller.calculator, config.labeller.calculator_kwargs())
    result = label_frames(frames, make, "ase:eam")
    assert len(result.labelled) == len(frames) and not result.failed
    direct = MatscipyEAM(str(potentials_dir() / "CuNi.eam.alloy"), kind="eam/alloy")
    for atoms in result.labelled:
        work = atoms.copy()
        work.calc = direct
        assert work.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-10, rel=0)
        np.testing.assert_allclose(work.get_forces(), atoms.get_forces(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(work.get_stress(), atoms.get_stress(), rtol=0, atol=1e-12)


def test_label_documents_record_the_potential_file_and_its_sha256(finished):
    config, workdir, _ = finished
    docs = _stored(config, workdir, "label")
    assert {d["metadata"]["round"] for d in docs} == {-1, 0, 1}
    sha = file_sha256(potentials_dir() / "CuNi.eam.alloy")
    for doc in docs:
        out = doc["output"]
        assert out["labeller"] == "ase:eam:CuNi.eam.alloy"
        assert out["potential_file"] == {"name": "CuNi.eam.alloy", "sha256": sha}
        assert out["label_settings"] == label_settings_id(config.labeller)
    assert config.labeller.potential_sha256 == sha


def test_work_directory_settings_validate_again_to_the_same_fingerprint(finished):
    from al_flows.campaign.run import load_workdir_campaign

    config, workdir, _ = finished
    again = load_workdir_campaign(workdir)
    assert again.fingerprint() == config.fingerprint()
    assert again.labeller.calculator_kwargs() == config.labeller.calculator_kwargs()


def test_a_changed_potential_file_is_other_label_settings(tmp_path):
    source = potentials_dir() / "CuNi.eam.alloy"
    copy_path = tmp_path / "CuNi.eam.alloy"
    shutil.copy(source, copy_path)
    same = validate_campaign(eam_campaign(potential=str(copy_path))).labeller
    wheel = validate_campaign(eam_campaign()).labeller
    # the file counts by name and content, not by where it lies
    assert label_settings_id(same) == label_settings_id(wheel)
    text = copy_path.read_text().splitlines(keepends=True)
    text[1] = "Cu-Ni EAM potential, edited\n"  # a comment line: the numbers are the same, the bytes are not
    copy_path.write_text("".join(text))
    edited = validate_campaign(eam_campaign(potential=str(copy_path)))
    assert edited.labeller.potential_sha256 == file_sha256(copy_path) != wheel.potential_sha256
    assert label_settings_id(edited.labeller) != label_settings_id(wheel)
    assert edited.fingerprint() != validate_campaign(eam_campaign()).fingerprint()


def test_the_work_directory_refuses_an_edited_potential_file_naming_its_sha256(finished, tmp_path):
    from al_flows.campaign.run import CampaignError, check_settings
    from al_flows.campaign.stores import make_job_store

    config, workdir, _ = finished
    text = (potentials_dir() / "CuNi.eam.alloy").read_text().splitlines(keepends=True)
    text[1] = "Cu-Ni EAM potential, edited\n"
    (tmp_path / "CuNi.eam.alloy").write_text("".join(text))  # found next to the campaign file first
    edited = validate_campaign(eam_campaign(), base_dir=tmp_path)
    assert edited.labeller.potential == "CuNi.eam.alloy"
    old, new = config.labeller.potential_sha256, edited.labeller.potential_sha256
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        with pytest.raises(CampaignError) as err:
            check_settings(store, edited, workdir)
    finally:
        store.close()
    assert f'(labeller.potential_sha256: "{old}" -> "{new}"); restore them' in str(err.value)


def test_emt_label_settings_and_fingerprint_are_those_of_before_eam_labellers():
    from helpers import TINY

    config = validate_campaign(copy.deepcopy(TINY))
    assert label_settings_id(config.labeller) == "ase:emt:732fd463bcfe"
    assert config.fingerprint() == "fa122faf91dd4d02"


def test_a_path_relative_to_the_campaign_file_is_found(tmp_path):
    (tmp_path / "pots").mkdir()
    shutil.copy(potentials_dir() / "CuNi.eam.alloy", tmp_path / "pots" / "mine.eam.alloy")
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(eam_campaign(potential="pots/mine.eam.alloy")))
    config, _ = load_campaign(path)
    assert config.labeller.potential_path == str(tmp_path / "pots" / "mine.eam.alloy")
    assert config.labeller.label_file() == {
        "name": "mine.eam.alloy",
        "sha256": file_sha256(potentials_dir() / "CuNi.eam.alloy"),
    }


def test_serialised_labeller_settings_find_the_file_from_another_folder(tmp_path, monkeypatch):
    """A Maker holding the labeller's settings (pool study) is rebuilt from its dict by a FireWorks
    worker in another folder: the absolute path filled in at validation finds the file."""
    from al_flows.workflow.config import AseLabeller

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(potentials_dir() / "CuNi.eam.alloy", tmp_path / "a" / "mine.eam.alloy")
    monkeypatch.chdir(tmp_path / "a")
    lab = AseLabeller(calculator="eam", potential="mine.eam.alloy")
    monkeypatch.chdir(tmp_path / "b")
    again = AseLabeller.from_dict(lab.as_dict())
    assert (
        again.calculator_kwargs()
        == lab.calculator_kwargs()
        == {
            "potential": str(tmp_path / "a" / "mine.eam.alloy"),
            "sha256": file_sha256(potentials_dir() / "CuNi.eam.alloy"),
        }
    )
    assert again.labeller_name() == "ase:eam:mine.eam.alloy"


def _refusal(data) -> str:
    with pytest.raises(ConfigError) as err:
        validate_campaign(data)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_refuses_a_missing_potential_file_naming_the_folders_searched():
    message = _refusal(eam_campaign(potential="CuNj.eam.alloy"))
    assert message.startswith("campaign: labeller.potential: no file 'CuNj.eam.alloy' in ")
    assert str(potentials_dir()) in message and "relative to the campaign file" in message


def test_refuses_a_campaign_element_the_file_has_no_functions_for():
    message = _refusal(eam_campaign(potential="Cu_mishin1.eam.alloy"))
    assert message == (
        "campaign: labeller.potential: Cu_mishin1.eam.alloy has no EAM functions for element 'Ni' (it has Cu); "
        "name a potential file that covers them or remove 'Ni' from elements"
    )


def test_refuses_eam_without_a_potential_and_a_potential_with_another_calculator():
    data = eam_campaign()
    del data["labeller"]["potential"]
    assert _refusal(data).startswith("campaign: labeller.potential: required with calculator eam; ")
    message = _refusal(eam_campaign(calculator="emt"))
    assert message == (
        "campaign: labeller.potential: only calculator eam reads a potential file (calculator is 'emt'); "
        "remove potential or set calculator: eam"
    )


def test_refuses_a_pinned_sha256_the_file_does_not_have_and_kwargs():
    message = _refusal(eam_campaign(potential_sha256="0" * 64))
    assert message.startswith("campaign: labeller.potential_sha256: ") and "restore the file" in message
    assert _refusal(eam_campaign(kwargs={"cutoff": 5.0})) == (
        "campaign: labeller.kwargs: calculator eam takes its settings from the potential file, not ['cutoff']; "
        "remove kwargs"
    )


def test_refuses_a_potential_file_whose_tables_are_cut_short(tmp_path):
    lines = (potentials_dir() / "CuNi.eam.alloy").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.eam.alloy"
    cut.write_text("".join(lines[:200]))
    message = _refusal(eam_campaign(potential=str(cut)))
    assert message.startswith("campaign: labeller.potential: cut.eam.alloy is not a readable eam/alloy file (")
    assert message.endswith("give a complete DYNAMO setfl file")


def test_autotest_reference_eam_names_its_own_field():
    from helpers import QUICK_AUTOTEST

    data = eam_campaign()
    data["autotest"] = {**QUICK_AUTOTEST, "reference": "eam", "reference_kwargs": {"potential": "NiX.eam.alloy"}}
    message = _refusal(data)
    assert message.startswith("campaign: autotest.reference_kwargs.potential: no file 'NiX.eam.alloy' in ")
    data["autotest"]["reference_kwargs"] = {"potential": "Cu_mishin1.eam.alloy"}
    data["autotest"]["elements"] = ["Cu"]
    config = validate_campaign(data)
    assert config.autotest.reference_kwargs == {"potential": "Cu_mishin1.eam.alloy"}


def test_label_maker_autotest_and_property_reference_use_the_labellers_file():
    from al_flows.active_learning.builders import label_maker
    from al_flows.active_learning.flows import ActiveLearningMaker
    from al_flows.labelling.ase import calculator_factory
    from helpers import QUICK_AUTOTEST

    data = eam_campaign()
    data["autotest"] = dict(QUICK_AUTOTEST)
    config = validate_campaign(data)
    path = str((potentials_dir() / "CuNi.eam.alloy").resolve())
    want = {"potential": path, "sha256": file_sha256(path)}
    maker = label_maker(config)
    assert (maker.calculator, maker.calculator_kwargs) == ("eam", want)  # labels, test set, property reference
    assert maker.labeller_name == "ase:eam:CuNi.eam.alloy"
    reference = ActiveLearningMaker.from_config(config).resolved_autotest()  # filled in when the autotest runs
    assert (reference.reference, reference.reference_kwargs) == ("eam", want)
    atoms = bulk("Ni", "fcc", a=3.52)
    atoms.calc = calculator_factory(reference.reference, reference.reference_kwargs)()
    assert atoms.get_potential_energy() == pytest.approx(-4.450, abs=5e-4)  # Ni's cohesive energy in this file


def test_validate_cli_refuses_a_missing_element_in_one_line(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(eam_campaign(potential="Al_zhou.eam.alloy")))
    out = subprocess.run(
        [str(Path(sys.executable).with_name("al-flows")), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {path}: labeller.potential: Al_zhou.eam.alloy has no EAM functions for elements 'Cu', 'Ni' "
        "(it has Al); name a potential file that covers them or remove 'Cu', 'Ni' from elements"
    ]


def test_setfl_elements_come_from_the_symbols_not_the_atomic_number_field():
    # Mishin's and Zhou's files write 1 as the atomic number of their element
    folder = potentials_dir()
    assert potential_elements(folder / "Cu_mishin1.eam.alloy") == ["Cu"]
    assert potential_elements(folder / "Al_zhou.eam.alloy") == ["Al"]
    assert potential_elements(folder / "CuNi.eam.alloy") == ["Ni", "Cu"]
    assert potential_elements(folder / "Cu_u3.eam") == ["Cu"]  # funcfl: the atomic number


def test_matscipy_eam_agrees_with_ase_eam_calculator():
    # two spline interpolations of the same tables, so not to round-off: measured 9e-8 eV and 8e-7 eV/A
    # (CuNi, 500-point tables), 3e-12 eV and 4e-10 eV/A (Cu_mishin1, 10001-point tables)
    from ase.calculators.eam import EAM as AseEAM

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
    atoms.numbers[::3] = 28
    atoms.rattle(0.05, seed=2)
    for name in ("CuNi.eam.alloy", "Cu_mishin1.eam.alloy"):
        work = atoms.copy() if name == "CuNi.eam.alloy" else bulk("Cu", "fcc", a=3.615, cubic=True).repeat(2)
        work.rattle(0.05, seed=2)
        ours = work.copy()
        ours.calc = eam_calculator(name)
        theirs = work.copy()
        theirs.calc = AseEAM(potential=str(potentials_dir() / name))
        assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), abs=1e-6, rel=0)
        np.testing.assert_allclose(ours.get_forces(), theirs.get_forces(), rtol=0, atol=5e-6)
