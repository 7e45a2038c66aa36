"""Starting structures of a campaign: where they come from (the ``initial.structures`` sources of a
campaign file, also used by pool sources and the shear study), building and checking them, and
the perturbed copies labelled as initial data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from ase import Atoms
from ase.io import read
from pydantic import Field, field_validator

from al_flows.frames.checks import StructureError, check_structure
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.ids import frame_id
from al_flows.settings import Settings
from al_flows.structures.generators import DPGenInitSettings, RandomCellSettings, dpgen_initial_sets, random_cells
from al_flows.structures.multilayer import VARIANTS, cuni_multilayer


class MultilayerSource(Settings):
    """Cu-Ni multilayers of Sprueill et al. (one structure per variant; docs/methods.md)."""

    kind: Literal["multilayer"] = "multilayer"
    size: tuple[int, int, int] = (5, 5, 5)
    lattice_constant: float = Field(3.58, gt=0, description="Angstrom")
    variants: list[str] = ["pristine"]

    @field_validator("size")
    @classmethod
    def _positive(cls, v):
        if min(v) < 1:
            raise ValueError("every supercell repeat must be >= 1")
        return v

    @field_validator("variants")
    @classmethod
    def _known(cls, v):
        bad = [x for x in v if x not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
        if not v:
            raise ValueError("list at least one variant")
        return v


class FileSource(Settings):
    """Structures read with ase.io.read (every frame of the file), path relative to the YAML file."""

    kind: Literal["file"] = "file"
    path: str
    index: str = ":"


class RandomCellSource(RandomCellSettings):
    """ANI-Al (Smith et al.): random disordered orthorhombic cells of the campaign's elements."""

    kind: Literal["random_cells"] = "random_cells"


class DPGenSource(DPGenInitSettings):
    """DP-GEN (Zhang et al.): scaled, perturbed, alloy-decorated crystals (default fcc/hcp/sc/diamond;
    bcc on request) and rigidly displaced halves (default from fcc and hcp), of the campaign's elements."""

    kind: Literal["dpgen"] = "dpgen"


class GivenSource(Settings):
    """Structures given in Python (``make(structures)``), kept as extxyz text so that the settings
    that hold them serialise, and name the campaign, like any other source."""

    kind: Literal["given"] = "given"
    frames: str = Field(repr=False, description="extxyz text of checked structures (given_structures)")


StructureSource = Annotated[
    Union[MultilayerSource, FileSource, RandomCellSource, DPGenSource, GivenSource], Field(discriminator="kind")
]


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
        structures.extend(source_structures(src, f"{where}[{i}]", base_dir, elements, seed, i, first=len(structures)))
    for atoms in structures:
        atoms.info["frame_id"] = frame_id(atoms)
    return structures


def source_structures(src, at: str, base_dir, elements, seed: int, i: int, first: int = 0) -> list[Atoms]:
    """The checked structures of one source ``src`` (config path ``at``, position ``i``)."""
    if isinstance(src, (RandomCellSource, DPGenSource)):
        if not elements:
            raise ValueError(f"{at}: kind {src.kind} needs the campaign's elements")
        sub_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, i]).generate_state(1)[0])
        if isinstance(src, RandomCellSource):
            got = random_cells(src, list(elements), sub_seed)
        else:
            got = dpgen_initial_sets(src, list(elements), sub_seed)
        for atoms in got:
            atoms.info["structure_id"] = f"{src.kind}{i}-{atoms.info.get('structure_id', first)}"
        fix = (
            f"raise {at}.min_distance"
            if isinstance(src, RandomCellSource)
            else f"lower {at}.atom_sigma or {at}.cell_pert_fraction, or raise {at}.scales / {at}.nn_distances"
        )
    elif isinstance(src, GivenSource):
        got = frames_from_bytes(src.frames)
        fix = "fix the structures passed to make(structures)"
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
                f"{at}.path: cannot read {path} ({type(exc).__name__}: {text[:200]}); check the file, its format and "
                f"{at}.index"
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


def given_source(structures, elements: list[str] | None = None, where: str = "structures") -> GivenSource:
    """A structure source holding ``structures`` (ASE Atoms or pymatgen Structures), checked now."""
    return GivenSource(frames=frames_text(given_structures(structures, elements, where)))


def given_structures(structures, elements: list[str] | None = None, where: str = "structures") -> list[Atoms]:
    """Checked copies of structures given in Python: ASE ``Atoms`` or pymatgen ``Structure`` (one or
    a list). Each keeps ``info['structure_id']`` if it has one, else gets ``'{formula}-{i}'``; each
    is checked like a campaign file's structures, a bad one raising StructureError naming
    ``where[i]``."""
    items = structures if isinstance(structures, (list, tuple)) else [structures]
    if not items:
        raise StructureError(f"{where}: no structure given; pass ASE Atoms or pymatgen Structures")
    out: list[Atoms] = []
    for i, item in enumerate(items):
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        if isinstance(item, Atoms):
            atoms = item.copy()
        elif isinstance(item, Structure):
            atoms = AseAtomsAdaptor.get_atoms(item)
            atoms.info = {}
        else:
            raise StructureError(
                f"{where}[{i}]: a {type(item).__name__} is not a structure; pass ASE Atoms or pymatgen Structures"
            )
        atoms.calc = None
        atoms.info.setdefault("structure_id", f"{atoms.get_chemical_formula()}-{i}")
        check_structure(
            atoms,
            f"{where}[{i}] (structure '{atoms.info['structure_id']}')",
            elements,
            fix=f"fix the coordinates of {where}[{i}]",
        )
        atoms.info["frame_id"] = frame_id(atoms)
        out.append(atoms)
    return out


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
