"""Settings and data builders shared by the tests (``from helpers import TINY``); the fixtures are
in tests/conftest.py. tests/ is no package: pytest (its default ``prepend`` import mode) puts
tests/ on sys.path when it imports tests/conftest.py, before any test module, so ``helpers`` is
found from every test file, under pytest-xdist's workers too."""

TINY = {
    "name": "tiny",
    "seed": 3,
    "elements": ["Cu", "Ni"],
    "initial": {
        "structures": [
            {"kind": "multilayer", "size": [2, 2, 2], "lattice_constant": 3.58, "variants": ["pristine", "VNi(N1)"]}
        ],
        "n_rattled": 4,
        "rattle_sigma": 0.04,
        "strain_max": 0.01,
    },
    "model": {"n_atom_basis": 16, "n_interactions": 1, "n_rbf": 10, "cutoff": 4.0},
    "training": {"epochs": 4, "batch_size": 4, "lr": 2e-3, "lr_patience": 5, "val_fraction": 0.15},
    "ensemble_size": 2,
    "explorers": [
        {
            "kind": "shear",
            "name": "shear",
            "n_runs": 1,
            "sigma": 0.03,
            "shear_step": 0.5,
            "gamma_max": 0.2,
            "fmax": 0.1,
            "max_opt_steps": 30,
        }
    ],
    "selection": {"trust_lo": 0.0, "trust_hi": 100.0, "max_candidates": 3, "pick": "random"},
    "labeller": {"kind": "ase", "calculator": "emt"},
    "test_set": {"n_runs": 1, "sigma": 0.02, "shear_step": 0.5, "gamma_max": 0.2, "fmax": 0.1, "max_frames": 6},
    "store": {"kind": "embedded"},
    "max_rounds": 2,
    "convergence": {"accurate_ratio": 0.99},
}

# a quick autotest of Cu (the campaign file's `autotest` section) for the tiny campaign
QUICK_AUTOTEST = {
    "lattices": ["fcc", "bcc"],
    "eos_points": 5,
    "relax_hcp_ca": False,
    "vacancy_repeat": [2, 2, 2],
    "vacancy_relax": False,
    "gsfe_points": 3,
    "gsfe_layers": 6,
    "gsfe_relax_normal": False,
    "interstitial_repeat": [2, 2, 2],
    "interstitial_relax": False,
    "surface_layers": 5,
    "surface_size": [1, 1],
    "surface_relax": False,
    "elements": ["Cu"],
}


def emt_labelled_multilayer(seed: int):
    """32-atom Cu-Ni multilayer, strained (2 %) and rattled (0.08 A), with frozen EMT labels:
    the training data of the training tests."""
    import numpy as np
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from al_flows.structures.multilayer import cuni_multilayer

    rng = np.random.default_rng(seed)
    atoms = cuni_multilayer((2, 2, 2))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
    atoms.rattle(0.08, seed=seed)
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def frames_with_deviations(deviations):
    """One-atom Cu frames with ``info['deviation']`` and ids f0, f1, ...: inputs of selection tests."""
    from ase import Atoms

    out = []
    for i, d in enumerate(deviations):
        a = Atoms("Cu", positions=[[0.1 * i, 0, 0]], cell=[5, 5, 5], pbc=True)
        a.info.update(deviation=d, frame_id=f"f{i}")
        out.append(a)
    return out


def untimed(rows):
    """Report rows (one dict or a list) without their ``stage_times``: the time a run took is a
    measurement of that run, not a result two runs of one campaign must share."""
    if isinstance(rows, dict):
        return {k: v for k, v in rows.items() if k != "stage_times"}
    return [untimed(r) for r in rows]
