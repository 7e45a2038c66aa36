"""The autotest properties a campaign converges on (al_flows.validation.properties): the same values
as the autotest's rows, only what is listed computed, and the judgement of an ensemble's values."""

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT
from pydantic import ValidationError
from scipy.optimize import minimize_scalar

from al_flows.validation.autotest import AutotestSettings, autotest
from al_flows.validation.lattices import crystal
from al_flows.validation.properties import (
    PropertyConvergence,
    PropertyTarget,
    available_properties,
    default_tolerance,
    judge,
    property_result,
    property_values,
)
from helpers import QUICK_AUTOTEST

QUICK = AutotestSettings(**{k: v for k, v in QUICK_AUTOTEST.items() if k != "elements"})


def test_names_are_the_autotest_rows():
    assert list(available_properties(AutotestSettings())) == [
        "a0",
        "v0",
        "e0",
        "B",
        "dE[hcp-fcc]",
        "a0[hcp]",
        "dE[bcc-fcc]",
        "a0[bcc]",
        "dE[sc-fcc]",
        "a0[sc]",
        "dE[diamond-fcc]",
        "a0[diamond]",
        "C11",
        "C12",
        "C44",
        "E_vac",
        "E_int[oct]",
        "E_int[tet]",
        "gamma_usf",
        "gamma_isf",
        "E_surf[100]",
        "E_surf[110]",
        "E_surf[111]",
    ]
    bcc = available_properties(AutotestSettings(lattice="bcc", lattices=["fcc", "bcc"]))
    assert list(bcc) == ["a0", "v0", "e0", "B", "dE[fcc-bcc]", "a0[fcc]", "C11", "C12", "C44", "E_vac"]
    assert bcc["dE[fcc-bcc]"] == "meV/atom" and bcc["B"] == "GPa"


def test_values_equal_the_autotest_rows():
    """Every property computed alone equals the autotest's row of the same name: the same functions
    with the same arguments, so the same floats (EMT is deterministic)."""
    rows = autotest("Cu", EMT, EMT, QUICK)["rows"]
    names = [r["property"] for r in rows]
    assert names == list(available_properties(QUICK))
    values = property_values("Cu", EMT, QUICK, names)
    for r in rows:
        assert values[r["property"]] == r["reference"], r["property"]
    # a subset, in another order, gives the same values
    some = property_values("Cu", EMT, QUICK, ["E_vac", "dE[bcc-fcc]", "a0"])
    assert some == {n: values[n] for n in ("E_vac", "dE[bcc-fcc]", "a0")}


def test_a0_is_the_emt_minimum():
    """Independent check: a bounded 1-D minimisation of EMT's fcc Cu energy (xatol 1e-8 A)."""
    direct = minimize_scalar(
        lambda a: _emt_energy(crystal("Cu", "fcc", a)), bounds=(3.3, 3.9), method="bounded", options={"xatol": 1e-8}
    ).x
    assert property_values("Cu", EMT, QUICK, ["a0"])["a0"] == pytest.approx(direct, abs=1e-5)


def _emt_energy(atoms):
    atoms.calc = EMT()
    return atoms.get_potential_energy() / len(atoms)


class CountingEMT(EMT):
    made = 0

    def __init__(self, **kw):
        super().__init__(**kw)
        CountingEMT.made += 1


@pytest.mark.parametrize(
    ("names", "made"),
    [
        (["a0"], 1),  # the lattice minimum's shared calculator only
        (["a0", "v0", "e0"], 1),
        (["a0", "dE[bcc-fcc]", "a0[bcc]"], 1),  # both minima on the shared calculator
        (["C11", "C12", "C44"], 2),  # + one elastic calculation for the three
        (["gamma_usf", "gamma_isf"], 2),  # + one stacking-fault path for both
        (["E_vac", "E_int[oct]"], 3),
    ],
)
def test_only_what_is_listed_is_computed(names, made):
    CountingEMT.made = 0
    property_values("Cu", CountingEMT, QUICK, names)
    assert CountingEMT.made == made


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match=r"dE\[hcp-fcc\]"):
        property_values("Cu", EMT, QUICK, ["dE[hcp-fcc]"])  # QUICK compares fcc with bcc only


def test_default_tolerances():
    assert default_tolerance("a0") == 0.02 and default_tolerance("a0[hcp]") == 0.02
    assert default_tolerance("dE[hcp-fcc]") == 10.0 and default_tolerance("E_surf[111]") == 0.1
    assert default_tolerance("E_int[oct]") == 0.2
    assert default_tolerance("a0", {"a0": 0.005}) == 0.005 and default_tolerance("B", {"a0": 0.005}) == 10.0


def test_mean_and_spread_of_the_members():
    t = PropertyTarget(name="B", element="Cu", tolerance=1.5)
    r = property_result(t, "GPa", [1.0, 2.0, 4.0], 2.0)
    mean = 7 / 3
    spread = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 3)  # population std, = sqrt(14)/3
    assert r["mean"] == pytest.approx(mean, rel=1e-15) and r["spread"] == pytest.approx(spread, rel=1e-15)
    assert r["error"] == pytest.approx(1 / 3, rel=1e-14) and r["property"] == "Cu B" and r["unit"] == "GPa"
    assert r["within"]  # 1/3 <= 1.5 and 1.247 <= 1.5
    assert not property_result(t.model_copy(update={"tolerance": 1.2}), "GPa", [1.0, 2.0, 4.0], 2.0)["within"]
    assert not property_result(t, "GPa", [1.0, np.nan], 1.0)["within"]


def test_judge_at_the_tolerance_and_with_missing_results():
    """Binary-exact numbers: error and spread exactly at the tolerance are within (<=)."""
    t = PropertyTarget(name="a0", element="Cu", tolerance=0.5)
    row = {"property": "Cu a0", "mean": 1.5, "spread": 0.5, "reference": 1.0}
    assert judge([row], [t])
    assert not judge([{**row, "mean": 1.5000001}], [t])
    assert not judge([{**row, "spread": 0.5000001}], [t])
    assert not judge([], [t]) and not judge(None, [t])  # not computed: not met
    other = PropertyTarget(name="a0", element="Ni", tolerance=10.0)
    assert not judge([row], [t, other])


def test_resolved_targets_are_checked():
    with pytest.raises(ValidationError, match=r"properties\[0\].element"):
        PropertyConvergence(targets=[PropertyTarget(name="a0")])
    with pytest.raises(ValidationError, match=r"properties\[1\].name: 'E_surf\[111\]'"):
        PropertyConvergence(
            targets=[PropertyTarget(name="a0", element="Cu"), PropertyTarget(name="E_surf[111]", element="Cu")],
            settings=AutotestSettings(lattice="bcc"),
        )
    with pytest.raises(ValidationError, match="listed twice"):
        PropertyConvergence(targets=[PropertyTarget(name="a0", element="Cu")] * 2)


def test_reference_key_names_what_is_computed():
    a0 = PropertyTarget(name="a0", element="Cu", tolerance=0.01)
    conv = PropertyConvergence(targets=[a0])
    assert (
        conv.reference_key() == PropertyConvergence(targets=[a0.model_copy(update={"tolerance": 1.0})]).reference_key()
    )
    assert conv.reference_key() == PropertyConvergence(targets=[a0], mode="properties").reference_key()
    assert (
        conv.reference_key() != PropertyConvergence(targets=[a0.model_copy(update={"element": "Ni"})]).reference_key()
    )
    assert conv.reference_key() != PropertyConvergence(targets=[a0], settings=QUICK).reference_key()


def test_a_convergence_property_with_the_wrong_sign_is_not_met():
    """hcp - fcc of Cu: reference +7.8 meV/atom (Cu EAM), members at -0.9 (EMT's sign): within the
    old absolute 10 meV/atom, but outside the relative 20 % (1.56) and of the wrong sign."""
    from al_flows.validation.properties import PropertyConvergence, PropertyTarget, judge, property_result

    target = PropertyTarget(name="dE[hcp-fcc]", element="Cu")
    row = property_result(target, "meV/atom", [-0.9, -0.95, -0.85], 7.8)
    assert not row["within"] and row["sign_ok"] is False and set(row["failed_by"]) == {"tolerance", "sign"}
    assert row["tolerance"] == pytest.approx(0.2 * 7.8) and row["tolerance_kind"] == "rel"
    conv = PropertyConvergence(targets=[target])
    assert not conv.met([row]) and not judge([row], [target])
    # a given tolerance is absolute; the sign is still checked
    wide = PropertyTarget(name="dE[hcp-fcc]", element="Cu", tolerance=10.0)
    wrong = property_result(wide, "meV/atom", [-0.9, -0.9], 7.8)
    assert wrong["failed_by"] == ["sign"] and not wrong["within"]
    right = property_result(wide, "meV/atom", [7.0, 7.2], 7.8)
    assert right["within"] and right["sign_ok"] is True
    # the members' spread must be within the tolerance as well
    spread = property_result(wide, "meV/atom", [-5.0, 20.0], 7.8)
    assert spread["failed_by"] == ["spread"]
