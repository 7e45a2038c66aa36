"""fcc lattice constant and hcp-fcc, bcc-fcc energy differences of the ASE labellers (EMT and the
published EAM files al_flows labels with), each structure relaxed in cell shape and volume.

    python benchmarks/labeller_phases.py            # a table, meV/atom (docs/methods.md, Labellers)
    python benchmarks/labeller_phases.py --json     # the same as JSON

fcc and bcc: one-atom primitive cells; hcp: the two-atom cell with c/a free. Each is relaxed with
BFGS on a FrechetCellFilter to 1e-6 eV/A (forces and stress x volume), starting from the
volume of the fcc lattice constant given.
"""

from __future__ import annotations

import argparse
import json
import time

from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from al_flows.labelling.ase import calculator_factory

# (label, calculator, kwargs, element, starting fcc a0 in Angstrom)
CASES = [
    ("EMT", "emt", {}, "Cu", 3.6),
    ("EMT", "emt", {}, "Ni", 3.5),
    ("EMT", "emt", {}, "Al", 4.05),
    ("CuNi.eam.alloy", "eam", {"potential": "CuNi.eam.alloy"}, "Cu", 3.615),
    ("CuNi.eam.alloy", "eam", {"potential": "CuNi.eam.alloy"}, "Ni", 3.52),
    ("Cu_mishin1.eam.alloy", "eam", {"potential": "Cu_mishin1.eam.alloy"}, "Cu", 3.615),
    ("Al_zhou.eam.alloy", "eam", {"potential": "Al_zhou.eam.alloy"}, "Al", 4.05),
]


def relaxed(atoms, make) -> tuple[float, object]:
    """Energy per atom (eV) of ``atoms`` relaxed in positions, cell shape and volume."""
    atoms = atoms.copy()
    atoms.calc = make()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=500)
    return atoms.get_potential_energy() / len(atoms), atoms


def phases(calculator: str, kwargs: dict, element: str, a0: float) -> dict:
    """a0 (Angstrom, fcc), hcp-fcc and bcc-fcc (meV/atom), c/a of hcp."""
    make = calculator_factory(calculator, kwargs)
    e_fcc, fcc = relaxed(bulk(element, "fcc", a=a0), make)
    e_hcp, hcp = relaxed(bulk(element, "hcp", a=a0 / 2**0.5, c=a0 / 2**0.5 * (8 / 3) ** 0.5), make)
    e_bcc, _ = relaxed(bulk(element, "bcc", a=a0 * (0.5) ** (1 / 3)), make)
    a_fcc = (4 * fcc.get_volume()) ** (1 / 3)
    cell = hcp.cell.cellpar()
    return {
        "a0": a_fcc,
        "hcp_fcc_meV": 1000 * (e_hcp - e_fcc),
        "bcc_fcc_meV": 1000 * (e_bcc - e_fcc),
        "c_over_a": cell[2] / cell[0],
        "e_fcc": e_fcc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, calculator, kwargs, element, a0 in CASES:
        start = time.perf_counter()
        rows.append({"labeller": label, "element": element, **phases(calculator, kwargs, element, a0)})
        rows[-1]["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'labeller':<22}{'el':<4}{'a0 (A)':>8}{'E_fcc (eV)':>12}{'hcp-fcc':>10}{'bcc-fcc':>10}{'c/a':>7}")
    for r in rows:
        print(
            f"{r['labeller']:<22}{r['element']:<4}{r['a0']:>8.3f}{r['e_fcc']:>12.3f}"
            f"{r['hcp_fcc_meV']:>10.1f}{r['bcc_fcc_meV']:>10.1f}{r['c_over_a']:>7.3f}"
        )
    print("hcp-fcc, bcc-fcc in meV/atom")


if __name__ == "__main__":
    main()
