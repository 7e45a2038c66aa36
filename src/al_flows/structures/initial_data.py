"""Starting structures of a campaign and the perturbed copies labelled as initial data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from al_flows.campaign.config import DPGenSource, FileSource, MultilayerSource, RandomCellSource
from al_flows.frames.dataset import frame_id
from al_flows.structures.generators import dpgen_initial_sets, random_cells
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.exploration.shear import check_reaches_gamma
from al_flows.frames.checks import StructureError, check_structure


def build_structures(
    sources: list,
    base_dir: str | Path = ".",
    elements: list[str] | None = None,
    seed: int = 0,
    where: str = "initial.structures",
) -> list[Atoms]:
    """Starting structures from the campaign's sources; each gets ``info['structure_id']``.
    Generated sources (random cells, DP-GEN sets) use ``elements`` and source i the seed (seed, i).

    Every structure is checked (:func:`al_flows.frames.checks.check_structure`: atoms present,
    finite positions and cell, no periodic cell thinner than 0.5 A, no overlapping atoms, and,
    given ``elements``, only those elements); a bad one raises StructureError naming
    ``where[i]``, the structure and the fix. ``where``: the config path of ``sources``."""
    structures: list[Atoms] = []
    for i, src in enumerate(sources):
        structures.extend(_source_structures(src, f"{where}[{i}]", base_dir, elements, seed, i, first=len(structures)))
    for atoms in structures:
        atoms.info["frame_id"] = frame_id(atoms)
    return structures


def _source_structures(src, at: str, base_dir, elements, seed: int, i: int, first: int = 0) -> list[Atoms]:
    """The checked structures of one source ``src`` (config path ``at``, position ``i``)."""
    if isinstance(src, (RandomCellSource, DPGenSource)):
        if not elements:
            raise ValueError(f"{at}: kind {src.kind} needs the campaign's elements")
        sub_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, i]).generate_state(1)[0])
        make = random_cells if isinstance(src, RandomCellSource) else dpgen_initial_sets
        got = make(src, list(elements), sub_seed)
        for atoms in got:
            atoms.info["structure_id"] = f"{src.kind}{i}-{atoms.info.get('structure_id', first)}"
        fix = (f"raise {at}.min_distance" if isinstance(src, RandomCellSource)
               else f"lower {at}.atom_sigma or {at}.cell_pert_fraction, or raise {at}.scales / {at}.nn_distances")
    elif isinstance(src, MultilayerSource):
        got = []
        for variant in src.variants:
            try:
                atoms = cuni_multilayer(tuple(src.size), a=src.lattice_constant, variant=variant)
            except ValueError as exc:  # a variant the cell is too small for
                problem = str(exc).removeprefix("variant: ")
                raise ValueError(f"{at}.variants: {problem}; use a larger {at}.size or another variant") from None
            atoms.info["structure_id"] = f"multilayer-{'x'.join(map(str, src.size))}-{variant}"
            got.append(atoms)
        fix = f"check {at}.lattice_constant (Angstrom)"
    else:
        path = Path(base_dir) / src.path
        if not path.is_file():
            raise ValueError(f"{at}.path: no such file {path}")
        try:
            frames = read(path, index=src.index)
        except Exception as exc:  # any reader failure: one line naming the file
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise StructureError(
                f"{at}.path: cannot read {path} ({type(exc).__name__}: {text[:200]}); check the file, its format and {at}.index"
            ) from None
        got = []
        for j, atoms in enumerate(frames if isinstance(frames, list) else [frames]):
            atoms.calc = None
            atoms.info.setdefault("structure_id", f"{path.stem}-{j}")
            got.append(atoms)
        if not got:
            raise StructureError(f"{at}: {path} holds no structure for index {src.index!r}; check {at}.index")
        fix = f"fix the coordinates in {path} or leave that frame out with {at}.index"
    for atoms in got:
        check_structure(atoms, f"{at} (structure '{atoms.info['structure_id']}')", elements, fix=fix)
    return got


def check_campaign_structures(config, base_dir: str | Path = ".") -> int:
    """Build and check the starting structures a campaign reads from files or builds as
    multilayers (cheap; generated random cells and DP-GEN sets are checked when the campaign
    builds them): ``initial.structures`` of an active-learning campaign, the md pool sources'
    and the shear study's structures of a pool study. Returns how many structures were checked;
    raises StructureError (ValueError for a missing file) naming the field."""
    groups = []
    if hasattr(config, "initial"):
        groups.append(("initial.structures", config.initial.structures))
    else:
        groups += [(f"pool.sources[{i}].structures", src.structures) for i, src in enumerate(config.pool.sources)
                   if src.kind in ("md", "labeller_shear")]
        if config.shear_study is not None:
            groups.append(("shear_study.structures", config.shear_study.structures))
    shears = [(f"explorers[{j}]", e) for j, e in enumerate(getattr(config, "explorers", [])) if e.kind == "shear"]
    n = 0
    for where, sources in groups:
        for i, src in enumerate(sources):
            if isinstance(src, (FileSource, MultilayerSource)):
                got = _source_structures(src, f"{where}[{i}]", base_dir, config.elements, config.seed, i)
                n += len(got)
                checks = shears if where == "initial.structures" else []
                if where == "shear_study.structures":
                    checks = [("shear_study", config.shear_study)]
                elif where.startswith("pool.sources["):
                    src_index = int(where.split("[")[1].split("]")[0])
                    source = config.pool.sources[src_index]
                    checks = [(f"pool.sources[{src_index}]", source)] if source.kind == "labeller_shear" else []
                for field, settings in checks:  # a step cap that stops short of gamma_max validates nothing
                    for atoms in got:
                        check_reaches_gamma(settings, atoms.cell[:], field)
    return n


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
