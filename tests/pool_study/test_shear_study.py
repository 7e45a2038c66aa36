"""Shear-study analysis (METHODS A4): pathway merging, pathway types, per-step records; and the
validation of minima (Fig. 6 analysis) with calculators whose minima are known."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_sequential import run_shear
from al_flows.pool_study.minima_validation import relax_fixed_cell, select_minima, validate_minimum
from al_flows.pool_study.shear_study import (
    classify_pathway,
    merge_pathways,
    pathway_tree,
    pathways,
    relative_to_reference,
    step_record,
    tree_branches,
    unsheared_reference,
)
from al_flows.structures.multilayer import cuni_multilayer


def test_merge_pathways_within_tolerance_and_transitively():
    base = np.array([0.0, -1.0, -2.0])
    profiles = [
        base,
        base + 0.0009,  # within 1e-3 of run 0
        base + 0.0018,  # within 1e-3 of run 1 only: merged transitively
        base + 0.01,  # another pathway
        base[:2],  # shorter run: never merged with longer ones
        base + np.array([0.0, 0.0, 0.002]),  # differs at one step only
    ]
    assert merge_pathways(profiles, tol=1e-3) == [[0, 1, 2], [3], [4], [5]]
    assert merge_pathways(profiles, tol=0.0) == [[0], [1], [2], [3], [4], [5]]
    assert merge_pathways(profiles, tol=0.02) == [[0, 1, 2, 3, 5], [4]]
    assert merge_pathways([], tol=1e-3) == []


TREE_PROFILES = [
    [0.0, -1.0, -2.0, -3.0, -4.0],
    [0.0, -1.0, -2.0, -3.5, -4.5],
    [0.0005, -1.0, -2.5, -3.5, -4.5],  # parts from runs 0, 1, 3 at step 2
    [0.0, -1.0004, -2.0, -3.0002, -4.0],  # with run 0 all along (within 1e-3)
    [0.0, -1.0, -2.5, -3.5, -5.0],  # with run 2 until step 3
    [5.0, 4.0],  # another root, shorter
]


def test_pathway_tree_by_hand():
    tree = pathway_tree(TREE_PROFILES, tol=1e-3)
    got = [(b["branch"], b["parent"], b["first_step"], b["last_step"], b["runs"], b["n_runs"]) for b in tree]
    assert got == [
        (0, None, 0, 1, [0, 1, 2, 3, 4], 5),  # shared prefix: steps 0-1
        (1, None, 0, 1, [5], 1),
        (2, 0, 2, 2, [0, 1, 3], 3),  # the branch step 2: runs 2 and 4 part
        (3, 0, 2, 3, [2, 4], 2),
        (4, 2, 3, 4, [0, 3], 2),  # step 3: run 1 parts
        (5, 2, 3, 4, [1], 1),
        (6, 3, 4, 4, [2], 1),  # step 4: runs 2 and 4 part
        (7, 3, 4, 4, [4], 1),
    ]
    # the leaves are the merged pathways
    leaves = sorted(b["runs"] for b in tree if not any(c["parent"] == b["branch"] for c in tree))
    assert leaves == sorted(merge_pathways(TREE_PROFILES, tol=1e-3)) == [[0, 3], [1], [2], [4], [5]]
    # with no tolerance run 2 has its own root and run 3 parts at step 1
    tree0 = pathway_tree(TREE_PROFILES, tol=0.0)
    assert [(b["parent"], b["first_step"], b["last_step"], b["runs"]) for b in tree0[:4]] == [
        (None, 0, 0, [0, 1, 3, 4]),
        (None, 0, 4, [2]),
        (None, 0, 1, [5]),
        (0, 1, 1, [0, 1, 4]),
    ]
    assert pathway_tree([], tol=1e-3) == []


def test_tree_branches_from_records_carry_run_numbers_steps_and_profiles():
    recs = []
    for run, energies in zip([10, 11, 12, 13, 14, 15], TREE_PROFILES, strict=True):
        recs += _records(run, energies, [0.0] * len(energies))
    tree = tree_branches(list(reversed(recs)), tol=1e-3)
    assert [(b["parent"], b["first_step"], b["last_step"], b["runs"], b["n_runs"]) for b in tree[:4]] == [
        (None, 1, 2, [10, 11, 12, 13, 14], 5),  # step numbers are the records' (1-based)
        (None, 1, 2, [15], 1),
        (0, 3, 3, [10, 11, 13], 3),
        (0, 3, 4, [12, 14], 2),
    ]
    assert tree[3]["representative"] == 12
    # profile of the representative over the branch's own steps: (gamma, energy, fcc)
    assert tree[3]["profile"] == [[pytest.approx(0.3), -2.5, 1.0], [0.4, -3.5, 1.0]]


def test_classify_pathway():
    assert classify_pathway([1.0, 0.98, 0.95]) == "FCC"
    assert classify_pathway([0.75, 0.7, 0.68]) == "FCC"  # a vacancy's neighbours are not FCC from the start
    assert classify_pathway([1.0, 0.7, 0.6]) == "defect/HCP"
    assert classify_pathway([0.75, 0.4, 0.7]) == "defect/HCP->FCC"
    assert classify_pathway([1.0, 0.7, 0.95], defect_threshold=0.5) == "FCC"


def _records(run, energies, hcp):
    return [
        {
            "run": run,
            "step": k + 1,
            "gamma": 0.1 * (k + 1),
            "energy": e,
            "fcc": 1 - h,
            "hcp": h,
            "intermixing": 0.0,
            "frame_id": f"r{run}s{k}",
        }
        for k, (e, h) in enumerate(zip(energies, hcp, strict=True))
    ]


def test_pathways_from_records():
    recs = _records(2, [-1.0, -2.0, -3.0], [0, 0.2, 0.3]) + _records(
        0, [-1.0, -2.0, -3.0005], [0, 0.2, 0.3]
    )  # fcc = 1 - hcp
    recs += _records(1, [-1.0, -2.5, -3.5], [0, 0.0, 0.0])
    paths = pathways(list(reversed(recs)), tol=1e-3)
    assert [p["runs"] for p in paths] == [[0, 2], [1]]
    assert [p["type"] for p in paths] == ["defect/HCP", "FCC"]
    assert paths[0]["representative"] == 0 and paths[0]["final_frame_id"] == "r0s2"
    assert paths[0]["final_energy"] == pytest.approx(-3.0005)
    assert paths[1]["profile"] == [[0.1, -1.0, 1.0], [0.2, -2.5, 1.0], [pytest.approx(0.3), -3.5, 1.0]]


def test_step_record_of_a_sheared_multilayer_with_a_vacancy():
    start = cuni_multilayer((2, 2, 3), a=3.58, variant="VNi(N1)")
    settings = ShearSettings(n_runs=1, sigma=0.0, shear_step=0.05, gamma_max=0.02, fmax=0.05)
    frames = run_shear(start, EMT(), settings, seed=0, run=3)
    rec = step_record(frames[-1], start)
    assert rec["run"] == 3 and rec["step"] == len(frames)
    assert rec["gamma"] == pytest.approx(len(frames) * np.hypot(0.05, 0.05) / start.cell[0, 0])
    assert rec["n_vacancies"] == 1 and len(rec["vacancy_positions"]) == 1
    assert rec["fcc"] + rec["hcp"] + rec["other"] == pytest.approx(1.0)
    assert rec["fcc"] > 0.5  # a small elastic shear keeps the lattice FCC around the vacancy
    assert rec["intermixing"] == pytest.approx(0.0)  # no Cu-Ni bonds made or broken
    # the vacancy in the Ni plane at the interface: 4 Cu neighbours below it, 4 + 4 Ni in and above its plane
    assert rec["vacancy_sizes"] == [1] and rec["vacancy_elements"] == [{"Cu": 4, "Ni": 8}]
    assert rec["intermixed_fraction"] == 0.0  # abrupt interface: 4 unlike neighbours at most
    assert rec["energy"] == pytest.approx(frames[-1].get_potential_energy())


class _Pinned(Calculator):
    """EMT plus a stiff spring holding the bond 0-j at length d0 (shorter than EMT's): a minimum
    the reference (plain EMT) does not have there, i.e. a 'spurious NNP minimum'."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, j, d0, k=50.0):
        super().__init__()
        self.j, self.d0, self.k, self.emt = j, d0, k, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = atoms.copy()
        a.calc = self.emt
        v = atoms.get_distance(0, self.j, mic=True, vector=True)
        d = np.linalg.norm(v)
        f = a.get_forces().copy()
        g = self.k * (d - self.d0) * v / d  # dE/dr_j
        f[self.j] -= g
        f[0] += g
        self.results = {"energy": a.get_potential_energy() + 0.5 * self.k * (d - self.d0) ** 2, "forces": f}


def test_validation_of_a_true_and_a_spurious_minimum():
    atoms = cuni_multilayer((2, 2, 2), a=3.58)
    atoms.positions[0] += [0.25, 0.1, 0.0]
    # a true minimum: relaxed with EMT itself, validated against EMT
    true_min, e_true, conv, _ = relax_fixed_cell(atoms, EMT(), 0.005, 300)
    assert conv
    true_min.info.update(energy=e_true, parent_id="ml", run=0)
    row, _ = validate_minimum(true_min, EMT, EMT, fmax=0.005, spurious_tol=0.005)
    assert abs(row["d_single_per_atom"]) < 1e-9
    assert row["relax_drop_per_atom"] < 1e-4 and not row["spurious"]
    assert abs(row["d_back_per_atom"]) < 1e-4
    # a spurious minimum: relaxed with the pinned calculator (atom 0 held off its site)
    j = int(np.argsort(atoms.get_distances(0, range(1, len(atoms)), mic=True))[0]) + 1
    pinned = lambda: _Pinned(j, d0=2.0, k=50.0)  # noqa: E731
    fake_min, e_fake, _, _ = relax_fixed_cell(atoms, pinned(), 0.005, 300)
    assert fake_min.get_distance(0, j, mic=True) < 2.2
    fake_min.info.update(energy=e_fake, parent_id="ml", run=1)
    row, relaxed = validate_minimum(fake_min, EMT, pinned, fmax=0.005, spurious_tol=0.005)
    n = len(atoms)
    ref = fake_min.copy()
    ref.calc = EMT()
    assert row["e_ref"] == pytest.approx(ref.get_potential_energy())
    assert row["relax_drop_per_atom"] == pytest.approx((row["e_ref"] - row["e_ref_relaxed"]) / n)
    assert row["relax_drop_per_atom"] > 0.005 and row["spurious"]
    assert row["e_ref_relaxed"] == pytest.approx(e_true, abs=1e-3)  # EMT finds the true minimum
    assert relaxed.get_distance(0, j, mic=True) == pytest.approx(true_min.get_distance(0, j, mic=True), abs=0.02)
    assert row["d_back_per_atom"] > 0.005  # the NNP does not hold the reference minimum either


def test_select_minima_by_excess_energy_per_system():
    atoms = cuni_multilayer((1, 1, 2), a=3.58)
    minima = []
    for parent, energies in (("a", [-10.0, -9.0, -9.5]), ("b", [-20.0, -19.96])):
        for e in energies:
            m = atoms.copy()
            m.info.update(energy=e, parent_id=parent)
            minima.append(m)
    chosen = select_minima(minima, 3)
    n = len(atoms)
    assert [(m.info["parent_id"], m.info["energy"]) for m in chosen] == [("a", -9.0), ("a", -9.5), ("b", -19.96)]
    assert chosen[0].info["excess_energy_per_atom"] == pytest.approx(1.0 / n)
    assert len(select_minima(minima, 10)) == 5


def test_energy_vs_gamma_plot_draws_the_tree(tmp_path):
    from al_flows.pool_study.report import plot_energy_vs_gamma, tree_lines

    recs = []
    for run, energies in zip([10, 11, 12, 13, 14, 15], TREE_PROFILES, strict=True):
        recs += _records(run, energies, [0.0] * len(energies))
    tree = tree_branches(recs, tol=1e-3)
    lines = tree_lines(tree, e0=-1.0)
    assert len(lines) == 8
    # a root starts at its own first step; a child from its parent's last point
    assert lines[0]["xy"].tolist() == [[0.1, 1.0], [0.2, 0.0]]
    np.testing.assert_allclose(lines[3]["xy"], [[0.2, 0.0], [0.3, -1.5], [0.4, -2.5]], atol=1e-12)  # gamma 0.1*k
    assert [ln["label"] for ln in lines] == ["5", "1", "3", "2", "2", "1", "1", "1"]
    assert lines[0]["width"] == 3.5 and lines[1]["width"] == pytest.approx(0.5 + 3 / 5)
    systems = {"s": {"pathways": pathways(recs, tol=1e-3), "tree": tree}}
    out = plot_energy_vs_gamma(systems, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 0 and out.endswith("e.png")


class _Springs(Calculator):
    """E = e0 + k/2 * sum |r - r0|^2 (eV, Angstrom): minimum e0 at r0."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, r0, e0=-7.25, k=2.0):
        super().__init__()
        self.r0, self.e0, self.k = np.array(r0), e0, k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        u = atoms.positions - self.r0
        self.results = {"energy": self.e0 + 0.5 * self.k * float((u**2).sum()), "forces": -self.k * u}


def test_unsheared_reference_is_the_relaxed_start_at_its_own_cell():
    start = cuni_multilayer((1, 1, 2))  # 8 atoms, cubic cell: gamma 0
    r0 = start.positions.copy()
    start.positions += np.random.default_rng(0).normal(0, 0.05, r0.shape)
    ref = unsheared_reference(start, _Springs(r0), fmax=1e-4, max_steps=200)
    # converged to |F| <= fmax: E - e0 = sum |F|^2 / (2k) <= 8 * 1e-8 / 4
    assert ref["energy"] == pytest.approx(-7.25, abs=2e-8)
    assert (ref["gamma"], ref["n_atoms"], ref["converged"], ref["optimizer"]) == (0.0, 8, True, "BFGS")
    assert np.allclose(start.positions, r0 + np.random.default_rng(0).normal(0, 0.05, r0.shape))  # not moved
    sheared = start.copy()
    sheared.cell[0] += [0.0, 0.3 * sheared.cell[0, 0], 0.4 * sheared.cell[0, 0]]
    assert unsheared_reference(sheared, _Springs(r0), 1e-4, 200, "FIRE")["gamma"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="optimizer"):
        unsheared_reference(start, _Springs(r0), 1e-4, 200, "CG")


def test_energies_relative_to_the_reference_by_hand():
    recs = [{"run": 0, "step": 1, "energy": -9.5}, {"run": 0, "step": 2, "energy": -11.0}]
    out = relative_to_reference(recs, {"energy": -10.0, "n_atoms": 4})
    # binary-exact numbers: equal, not close
    assert [(r["delta_energy"], r["de_per_atom"]) for r in out] == [(0.5, 0.125), (-1.0, -0.25)]
    assert "delta_energy" not in recs[0]  # copies
    paths = pathways(
        [{**r, "gamma": 0.1 * r["step"], "fcc": 1.0, "hcp": 0.0, "intermixing": 0.0, "frame_id": "f"} for r in out]
    )
    assert paths[0]["final_delta_energy"] == -1.0
