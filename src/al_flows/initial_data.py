"""Starting structures of a campaign and the perturbed copies labelled as initial data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from al_flows.config import DPGenSource, FileSource, MultilayerSource, RandomCellSource
from al_flows.dataset import frame_id
from al_flows.generators import dpgen_initial_sets, random_cells
from al_flows.multilayer import cuni_multilayer


def build_structures(sources: list, base_dir: str | Path = ".", elements: list[str] | None = None, seed: int = 0) -> list[Atoms]:
    """Starting structures from the campaign's sources; each gets ``info['structure_id']``.
    Generated sources (random cells, DP-GEN sets) use ``elements`` and source i the seed (seed, i)."""
    structures: list[Atoms] = []
    for i, src in enumerate(sources):
        if isinstance(src, (RandomCellSource, DPGenSource)):
            if not elements:
                raise ValueError(f"initial.structures[{i}]: kind {src.kind} needs the campaign's elements")
            sub_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, i]).generate_state(1)[0])
            make = random_cells if isinstance(src, RandomCellSource) else dpgen_initial_sets
            got = make(src, list(elements), sub_seed)
            for atoms in got:
                atoms.info["structure_id"] = f"{src.kind}{i}-{atoms.info.get('structure_id', len(structures))}"
            structures.extend(got)
        elif isinstance(src, MultilayerSource):
            for variant in src.variants:
                atoms = cuni_multilayer(tuple(src.size), a=src.lattice_constant, variant=variant)
                atoms.info["structure_id"] = f"multilayer-{'x'.join(map(str, src.size))}-{variant}"
                structures.append(atoms)
        else:
            path = Path(base_dir) / src.path
            if not path.is_file():
                raise ValueError(f"initial.structures[{i}].path: no such file {path}")
            frames = read(path, index=src.index)
            for j, atoms in enumerate(frames if isinstance(frames, list) else [frames]):
                atoms.calc = None
                atoms.info.setdefault("structure_id", f"{path.stem}-{j}")
                structures.append(atoms)
    for atoms in structures:
        atoms.info["frame_id"] = frame_id(atoms)
    return structures


def perturbed_copies(structures: list[Atoms], n: int, sigma: float, strain_max: float, seed: int) -> list[Atoms]:
    """``n`` copies of each structure: random isotropic strain in [-strain_max, strain_max],
    then Gaussian displacements of std ``sigma`` (Angstrom). Provenance in ``info``."""
    rng = np.random.default_rng(seed)
    copies = []
    for atoms in structures:
        for k in range(n):
            new = atoms.copy()
            scale = 1.0 + rng.uniform(-strain_max, strain_max)
            new.set_cell(new.cell[:] * scale, scale_atoms=True)
            new.positions += rng.normal(0.0, sigma, size=new.positions.shape)
            new.info = {
                "round": -1,
                "explorer": "initial",
                "parent_id": atoms.info.get("structure_id", atoms.info.get("frame_id", "")),
                "model_id": "",
                "deviation": float("nan"),
                "copy": k,
            }
            new.info["frame_id"] = frame_id(new)
            copies.append(new)
    return copies
