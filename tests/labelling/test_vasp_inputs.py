"""VASP input presets: what atomate2's StaticMaker writes for each, overrides, settings ids."""

from dataclasses import fields

import pytest
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Kpoints

from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.labelling.vasp_inputs import VaspInputSettings, label_settings_id, static_maker, with_system_tag
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.workflow.config import VaspLabeller


def written_inputs(labeller, tmp_path, system=None):
    maker = static_maker(VaspInputSettings.from_mapping(labeller.model_dump()))  # as builders.label_maker
    if system:
        maker = with_system_tag(maker, system)
    structure = AseAtomsAdaptor.get_structure(cuni_multilayer((2, 2, 2), variant="VNi(N1)"))
    maker.input_set_generator.get_input_set(structure, potcar_spec=True).write_input(tmp_path)
    poscar = (tmp_path / "POSCAR").read_text().splitlines()
    return (
        Incar.from_file(tmp_path / "INCAR"),
        Kpoints.from_file(tmp_path / "KPOINTS"),
        (tmp_path / "POTCAR.spec").read_text().split(),
        poscar,
        maker,
    )


def test_pnnl_cuni_preset_reproduces_methods_a1(tmp_path):
    incar, kpoints, potcars, poscar, maker = written_inputs(VaspLabeller(preset="pnnl-cuni"), tmp_path, system="abc123")
    assert incar["GGA"].upper() == "PE"
    assert incar["ENCUT"] == pytest.approx(295.4)
    assert incar["ISPIN"] == 1
    assert incar["EDIFF"] == pytest.approx(1e-4)
    assert incar["IBRION"] == -1 and incar["NSW"] == 0
    assert "MAGMOM" not in incar and "KSPACING" not in incar
    assert not incar.get("LAECHG", False) and not incar.get("LVTOT", False)
    assert incar["SYSTEM"] == "abc123"
    assert kpoints.style == Kpoints.supported_modes.Gamma and tuple(kpoints.kpts[0]) == (1, 1, 1)
    assert potcars == ["Cu", "Ni"]  # standard PAW; 295.4 eV is the Cu ENMAX
    assert poscar[5].split() == ["Cu", "Ni"] and poscar[6].split() == ["16", "15"]  # not re-sorted
    assert maker.stop_children_kwargs == {"handle_unsuccessful": False}


def test_mp_preset_is_materials_project_gga_static(tmp_path):
    incar, kpoints, potcars, _, _ = written_inputs(VaspLabeller(preset="mp"), tmp_path)
    assert incar["ENCUT"] == 520
    assert incar["ISPIN"] == 2 and len(incar["MAGMOM"]) == 31
    assert incar["EDIFF"] == pytest.approx(5e-5 * 31)  # MP: EDIFF_PER_ATOM
    assert potcars == ["Cu_pv", "Ni_pv"]
    assert kpoints.style == Kpoints.supported_modes.Gamma and all(k > 1 for k in kpoints.kpts[0])


def test_overrides_of_incar_kpoints_potcar(tmp_path):
    lab = VaspLabeller(
        preset="pnnl-cuni",
        incar={"ENCUT": 350, "EDIFF": 1e-6, "LREAL": "Auto"},
        kpoints={"grid": [2, 2, 1]},
        potcar={"Cu": "Cu_pv"},
    )
    incar, kpoints, potcars, _, _ = written_inputs(lab, tmp_path)
    assert incar["ENCUT"] == 350 and incar["EDIFF"] == pytest.approx(1e-6) and incar["LREAL"] == "Auto"
    assert incar["ISPIN"] == 1  # untouched preset values stay
    assert tuple(kpoints.kpts[0]) == (2, 2, 1)
    assert potcars == ["Cu_pv", "Ni"]
    (tmp_path / "mp").mkdir()
    incar, _, _, _, _ = written_inputs(VaspLabeller(preset="mp", incar={"ENCUT": 600}), tmp_path / "mp")
    assert incar["ENCUT"] == 600


def test_input_settings_are_fields_of_the_vasp_labeller_with_its_defaults():
    names = [f.name for f in fields(VaspInputSettings)]
    assert set(names) <= set(VaspLabeller.model_fields)  # a renamed config field cannot be dropped silently
    assert VaspInputSettings.from_mapping(VaspLabeller().model_dump()) == VaspInputSettings()
    lab = VaspLabeller(preset="mp", kpoints={"reciprocal_density": 50}, max_errors=2, vasp_cmd="srun vasp_std")
    settings = VaspInputSettings.from_mapping({**lab.model_dump(), "not_an_input": 1})
    assert (settings.preset, settings.max_errors, settings.vasp_cmd) == ("mp", 2, "srun vasp_std")
    assert settings.kpoints == {"grid": None, "reciprocal_density": 50.0}
    maker = static_maker(settings)
    assert maker.input_set_generator.user_kpoints_settings == {"reciprocal_density": 50.0}
    assert maker.run_vasp_kwargs == {"max_errors": 2, "custodian_kwargs": {}, "vasp_cmd": "srun vasp_std"}


def test_label_settings_id_tracks_science_not_operations():
    base = label_settings_id(VaspLabeller(preset="pnnl-cuni"))
    assert base.startswith("vasp:pnnl-cuni:")
    assert label_settings_id(VaspLabeller(preset="pnnl-cuni", vasp_cmd="srun vasp_std", max_errors=2)) == base
    assert label_settings_id(VaspLabeller(preset="pnnl-cuni", incar={"ENCUT": 300})) != base
    assert label_settings_id(VaspLabeller(preset="mp")) != base


@pytest.mark.parametrize(
    "labeller,match",
    [
        ({"kind": "vasp", "incar": {"encut": 300}}, "labeller.incar: INCAR tags are upper-case"),
        ({"kind": "vasp", "incar": {"SYSTEM": "x"}}, "SYSTEM is set per frame"),
        ({"kind": "vasp", "kpoints": {"grid": [1, 1, 1], "reciprocal_density": 10}}, "exactly one of kpoints.grid"),
        ({"kind": "vasp", "preset": "pbe"}, "labeller.preset"),
        ({"kind": "vasp"}, "test_set: kind mixed"),
    ],
)
def test_vasp_labeller_config_errors(tiny_dict, labeller, match):
    tiny_dict["labeller"] = labeller
    if "test_set: kind" not in match:
        tiny_dict["test_set"] = {"kind": "perturbed"}
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
        validate_campaign(tiny_dict)
