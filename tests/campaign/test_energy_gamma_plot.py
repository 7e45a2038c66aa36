"""The data of energy_vs_gamma.png: energy per atom relative to the relaxed unsheared starting
structure of each path, for the ensemble's exploration and the labeller's own test-set paths."""

from ase.calculators.emt import EMT
from ase.optimize import BFGS
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.shear_paths import energy_vs_gamma_data, labeller_shear_paths, unsheared_references
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_sequential import explore_shear
from al_flows.frames.extxyz import frames_text
from al_flows.structures.multilayer import cuni_multilayer
from helpers import TINY


def _path(source, round_, parent, gamma, energy, n_atoms=4, run=0):
    return {
        "source": source,
        "round": round_,
        "explorer": "test" if source == "labeller" else "shear",
        "parent_id": parent,
        "run": run,
        "gamma": gamma,
        "energy": energy,
        "n_atoms": n_atoms,
    }


def test_relative_energies_per_atom_by_hand():
    paths = [
        _path("ensemble", 0, "A", [0.1, 0.2], [-3.0, -2.5]),
        _path("ensemble", 1, "A", [0.1], [-4.0]),
        _path("labeller", -1, "A", [0.1, 0.3], [-1.0, 1.0]),
        _path("ensemble", 0, "B", [0.1], [0.0]),  # no reference: left out
        _path("ensemble", 1, "A", [0.1], [0.0], n_atoms=5, run=1),  # atom count differs from the reference's: left out
    ]
    refs = {
        ("ensemble", 0, "shear", "A"): {"gamma": 0.0, "energy": -3.5, "n_atoms": 4},
        ("ensemble", 1, "shear", "A"): {"gamma": 0.0, "energy": -3.0, "n_atoms": 4},
        ("labeller", -1, "test", "A"): {"gamma": 0.05, "energy": -2.0, "n_atoms": 4},
    }
    data = energy_vs_gamma_data(paths, refs)
    assert [(d["source"], d["round"], d["parent_id"], d["run"]) for d in data] == [
        ("ensemble", 0, "A", 0),
        ("ensemble", 1, "A", 0),
        ("labeller", -1, "A", 0),
    ]
    # (E - E_ref) / N with binary-exact numbers: equal, not close
    assert data[0]["gamma"].tolist() == [0.0, 0.1, 0.2] and data[0]["de_per_atom"].tolist() == [0.0, 0.125, 0.25]
    assert data[1]["gamma"].tolist() == [0.0, 0.1] and data[1]["de_per_atom"].tolist() == [0.0, -0.25]
    assert data[2]["gamma"].tolist() == [0.05, 0.1, 0.3] and data[2]["de_per_atom"].tolist() == [0.0, 0.25, 0.75]
    assert all(d["de_per_atom"][0] == 0.0 for d in data)


def test_labeller_paths_relative_to_the_labeller_relaxed_unsheared_structure():
    config = validate_campaign(TINY)  # labeller EMT, test_set fmax 0.1 eV/Å
    start = cuni_multilayer((2, 2, 2))
    start.info["structure_id"] = "A"
    frames = explore_shear(
        [start],
        EMT(),
        ShearSettings(n_runs=1, sigma=0.02, shear_step=0.5, gamma_max=0.2, fmax=0.1),
        seed=1,
        explorer="test",
    )
    assert len(frames) >= 2
    store = JobStore(MemoryStore())
    store.connect()
    meta = {"campaign": config.name, "round": -1}
    store.docs_store.update(
        [
            {
                "uuid": "s",
                "index": 1,
                "metadata": {**meta, "stage": "structures"},
                "output": {"structures_blob": frames_text([start])},
            },
            {
                "uuid": "t",
                "index": 1,
                "metadata": {**meta, "stage": "test_set"},
                "output": {"frames_blob": frames_text(frames)},
            },
        ],
        key=["uuid", "index"],
    )
    paths = labeller_shear_paths(store, config)
    assert len(paths) == 1 and paths[0]["gamma"] == [a.info["gamma"] for a in frames]
    cache: dict = {}
    refs = unsheared_references(store, config, paths, summaries=[], cache=cache)
    ref = refs[("labeller", -1, "test", "A")]
    # the reference is the starting structure relaxed by EMT at its own (unsheared) cell
    work = start.copy()
    work.calc = EMT()
    e_start = work.get_potential_energy()
    BFGS(work, logfile=None).run(fmax=config.test_set.fmax, steps=500)
    assert ref["gamma"] == 0.0 and ref["n_atoms"] == len(start)
    assert ref["energy"] == work.get_potential_energy() < e_start  # same relaxation, same numbers
    (d,) = energy_vs_gamma_data(paths, refs)
    n = len(start)
    want = [0.0] + [(a.get_potential_energy() - ref["energy"]) / n for a in frames]
    assert d["de_per_atom"].tolist() == want and d["de_per_atom"][0] == 0.0
    # a second report reads the cache instead of relaxing again
    assert len(cache) == 1
    key = next(iter(cache))
    cache[key] = {**cache[key], "energy": 123.0}
    assert (
        unsheared_references(store, config, paths, summaries=[], cache=cache)[("labeller", -1, "test", "A")]["energy"]
        == 123.0
    )
    store.close()


def test_title_counts_paths_and_their_frames():
    """energy_vs_gamma.png's title: explored and labeller paths, and the frames on them (each
    path's first point is its unsheared reference, not a frame)."""
    from al_flows.campaign.report_plots import energy_vs_gamma_figure
    from al_flows.plotting import pyplot

    paths = [
        _path("ensemble", 0, "A", [0.1, 0.2, 0.3], [-3.0, -2.5, -2.0]),
        _path("ensemble", 1, "A", [0.1, 0.2], [-4.0, -3.9]),
        _path("labeller", -1, "A", [0.1, 0.3], [-1.0, 1.0]),
    ]
    refs = {
        ("ensemble", 0, "shear", "A"): {"gamma": 0.0, "energy": -3.5, "n_atoms": 4},
        ("ensemble", 1, "shear", "A"): {"gamma": 0.0, "energy": -3.0, "n_atoms": 4},
        ("labeller", -1, "test", "A"): {"gamma": 0.0, "energy": -2.0, "n_atoms": 4},
    }
    fig = energy_vs_gamma_figure(energy_vs_gamma_data(paths, refs))
    try:
        title = fig.axes[0].get_title()
    finally:
        pyplot().close(fig)
    assert title.endswith("2 path(s), 5 frames explored, 1 path(s), 2 frames of the labeller"), title
