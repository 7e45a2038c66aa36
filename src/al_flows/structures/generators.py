"""Initial structures that need no expert input (ANI-Al and DP-GEN; docs/methods.md).

- :func:`random_cells` (ANI-Al, Smith et al.): random disordered orthorhombic periodic cells.
- :func:`dpgen_initial_sets` (DP-GEN, Zhang et al.): scaled and perturbed crystals of
  several lattices, randomly decorated for alloys, plus crystals whose two halves are
  rigidly displaced against each other.

Every frame carries the provenance keys of :mod:`al_flows.frames.info` (round -1, parent_id "",
model_id "", deviation NaN, frame_id) plus ``explorer``, ``structure_id`` and the keys
named below. Lengths in Angstrom, densities in g/cm^3, masses in amu.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers, covalent_radii, reference_states
from pydantic import Field, field_validator, model_validator

from al_flows.frames.ids import frame_id
from al_flows.settings import Settings
from al_flows.structures.displaced_halves import A_OVER_NN, CubicPlane, HcpPlane, displaced_halves, oriented_cell

AMU_PER_A3 = 1.0 / 1.66053906660  # (amu/Angstrom^3) per (g/cm^3)
Lattice = Literal["fcc", "hcp", "bcc", "sc", "diamond"]
LATTICES: tuple[Lattice, ...] = ("fcc", "hcp", "bcc", "sc", "diamond")
DPGEN_LATTICES: tuple[Lattice, ...] = ("fcc", "hcp", "sc", "diamond")  # the crystals of Zhang et al.
DISPLACED_LATTICES: tuple[Lattice, ...] = ("fcc", "hcp")  # their displaced halves start from these
_BATCH = 32  # candidate positions drawn at once during random placement


class RandomCellSettings(Settings):
    """Random disordered cells of ANI-Al (Smith et al.). The default density range is that of
    Al; it is per element (system), so set density_min/density_max for other elements."""

    n_cells: int = Field(400, gt=0, description="number of cells")
    edge_min: float = Field(10.5, gt=0, description="Angstrom, smallest orthorhombic edge")
    edge_max: float = Field(17.0, gt=0, description="Angstrom, largest orthorhombic edge")
    density_min: float = Field(1.80, gt=0, description="g/cm^3, lowest target density (Al default)")
    density_max: float = Field(4.05, gt=0, description="g/cm^3, highest target density (Al default)")
    min_distance: float = Field(1.8, ge=0, description="Angstrom, no two atoms closer (minimum image)")
    composition: dict[str, float] | None = Field(None, description="weight per element; None: equal")
    max_atoms: int | None = Field(None, gt=0, description="cap on atoms per cell; error if edges/density allow more")
    max_tries: int = Field(2000, gt=0, description="candidate positions per atom before the cell is redrawn")
    max_restarts: int = Field(50, ge=0, description="redraws of one cell before giving up")

    @model_validator(mode="after")
    def _ranges(self):
        if self.edge_min > self.edge_max:
            raise ValueError(f"edge_min {self.edge_min} > edge_max {self.edge_max}")
        if self.density_min > self.density_max:
            raise ValueError(f"density_min {self.density_min} > density_max {self.density_max}")
        if self.edge_min < 2 * self.min_distance:
            raise ValueError(f"edge_min {self.edge_min} must be >= 2*min_distance for the minimum-image check")
        return self


class DPGenInitSettings(Settings):
    """DP-GEN initial sets (Zhang et al.). Lattice constants follow from one nearest-neighbour
    distance per element (Angstrom): ``nn_distances`` or, for elements not in it, the
    element's ase.data.reference_states crystal (fallback 2x covalent radius); alloys use
    the composition-weighted mean (Vegard-like). The same distance is used for every lattice.
    Defaults follow the paper: fcc, hcp, sc and diamond (bcc on request), displaced halves from
    fcc and hcp cut along fcc (100), (110), (111) and hcp (0001), (10-10), (11-20), then dilated
    and perturbed like the other crystals. ``displacement_mode: directions`` with
    ``displaced_lattices: null`` and ``dilate_displaced: false`` is the earlier construction."""

    lattices: list[Lattice] = Field(list(DPGEN_LATTICES), min_length=1, description="crystal lattices to build")
    nn_distances: dict[str, float] | None = Field(None, description="Angstrom, nearest-neighbour distance per element")
    repeat: tuple[int, int, int] = Field((2, 2, 2), description="supercell of the conventional cell (hcp: 2-atom cell)")
    scales: list[float] = Field(
        [0.96, 0.98, 1.0, 1.02, 1.04], min_length=1, description="isotropic length scale factors"
    )
    n_perturbed: int = Field(10, ge=0, description="perturbed copies per lattice and scale")
    atom_sigma: float = Field(0.01, ge=0, description="Angstrom, std of Gaussian atom displacements per coordinate")
    cell_pert_fraction: float = Field(0.03, ge=0, lt=0.5, description="max |entry| of the random symmetric cell strain")
    composition: dict[str, float] | None = Field(None, description="alloy weight per element; None: equal")
    displaced_lattices: list[Lattice] | None = Field(
        list(DISPLACED_LATTICES),
        description="lattices (of those in lattices) the displaced halves start from; null: all",
    )
    displacement_mode: Literal["planes", "directions"] = Field(
        "planes",
        description="planes: cut along displacement_planes, halves pulled apart along the normal; "
        "directions: halves of the repeat supercell split along c, moved along displacement_directions",
    )
    n_displaced: int = Field(
        2, ge=0, description="displacement distances per lattice and plane (mode directions: per lattice)"
    )
    displacement_min: float = Field(0.2, ge=0, description="Angstrom, smallest rigid displacement")
    displacement_max: float = Field(10.0, ge=0, description="Angstrom, largest rigid displacement")
    displacement_planes: list[CubicPlane] = Field(
        ["100", "110", "111"], description="cut planes of the cubic lattices (mode planes)"
    )
    displacement_planes_hcp: list[HcpPlane] = Field(
        ["0001", "10-10", "11-20"], description="cut planes of hcp (mode planes)"
    )
    displaced_min_layers: int = Field(4, ge=2, description="atomic layers along the normal, at least (mode planes)")
    displaced_min_width: float = Field(4.5, gt=0, description="Angstrom, in-plane cell edges at least (mode planes)")
    dilate_displaced: bool = Field(
        True, description="dilate every displaced structure by each of scales, with cell and atom perturbation"
    )
    displacement_directions: list[tuple[int, int, int]] = Field(
        [(1, 0, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1)],
        min_length=1,
        description="[uvw] in conventional-cell vectors, mode directions; w >= 0 (w = 0 shear, w > 0 also a gap)",
    )

    @field_validator("scales")
    @classmethod
    def _positive(cls, v):
        if any(s <= 0 for s in v):
            raise ValueError("scales must be > 0")
        return v

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, v):
        if any(r < 1 for r in v):
            raise ValueError("repeat entries must be >= 1")
        return v

    @field_validator("displacement_directions")
    @classmethod
    def _directions(cls, v):
        for uvw in v:
            if uvw == (0, 0, 0) or uvw[2] < 0:
                raise ValueError(f"direction {list(uvw)}: must be non-zero with w >= 0 (no overlap of the halves)")
        return v

    @model_validator(mode="after")
    def _range(self):
        if self.displacement_min > self.displacement_max:
            raise ValueError(f"displacement_min {self.displacement_min} > displacement_max {self.displacement_max}")
        return self

    def displaced_kinds(self) -> list[str]:
        """The lattices that get displaced-halves structures, in the order of ``lattices``."""
        chosen = self.lattices if self.displaced_lattices is None else self.displaced_lattices
        return [lat for lat in self.lattices if lat in chosen]


# --------------------------------------------------------------------------- helpers


def _weights(composition: dict[str, float] | None, elements) -> np.ndarray:
    """Normalised weights aligned with ``elements``; ValueError on unknown/mismatched keys."""
    elements = list(elements)
    if not elements or len(set(elements)) != len(elements):
        raise ValueError(f"elements must be a non-empty list without repeats, got {elements}")
    unknown = [e for e in elements if e not in atomic_numbers]
    if unknown:
        raise ValueError(f"unknown element symbol(s) {unknown}")
    if composition is None:
        return np.full(len(elements), 1.0 / len(elements))
    if set(composition) != set(elements):
        raise ValueError(f"composition keys {sorted(composition)} must be exactly the elements {sorted(elements)}")
    w = np.array([composition[e] for e in elements], dtype=float)
    if (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"composition weights must be >= 0 with a positive sum, got {composition}")
    return w / w.sum()


def _info(explorer: str, structure_id: str, **extra) -> dict:
    return {
        "round": -1,
        "explorer": explorer,
        "parent_id": "",
        "model_id": "",
        "deviation": float("nan"),
        "structure_id": structure_id,
        **extra,
    }


def _species(elements, weights: np.ndarray, n: int, rng) -> np.ndarray:
    numbers = np.array([atomic_numbers[e] for e in elements])
    return numbers[rng.choice(len(elements), size=n, p=weights)]


# --------------------------------------------------------------------------- random cells


def _place(rng, lengths: np.ndarray, n: int, dmin: float, max_tries: int) -> np.ndarray | None:
    """Random sequential placement of ``n`` points in an orthorhombic box (Angstrom) with
    minimum-image distances >= ``dmin``; None if an atom found no spot in ``max_tries``."""
    pos = np.empty((n, 3))
    for i in range(n):
        tries = 0
        while True:
            m = min(_BATCH, max_tries - tries)
            if m <= 0:
                return None
            cand = rng.uniform(0.0, 1.0, (m, 3)) * lengths
            if i == 0 or dmin == 0:
                pos[i] = cand[0]
                break
            d = cand[:, None, :] - pos[None, :i, :]
            d -= lengths * np.rint(d / lengths)
            ok = np.flatnonzero((np.einsum("ijk,ijk->ij", d, d) >= dmin * dmin).all(axis=1))
            if ok.size:
                pos[i] = cand[ok[0]]
                break
            tries += m
    return pos


def random_cells(settings: RandomCellSettings, elements: list[str], seed: int) -> list[Atoms]:
    """``settings.n_cells`` random periodic orthorhombic cells (ANI-Al).

    Per cell: edges uniform in [edge_min, edge_max] (Angstrom), target density rho uniform in
    [density_min, density_max] (g/cm^3), n = round(rho * V / mean mass) atoms (mean mass
    composition-weighted, so for alloys the realised density fluctuates with the drawn
    species), species drawn independently with the composition weights, positions uniform
    at random, a candidate rejected if closer than min_distance to a placed atom (minimum
    image). If one atom finds no spot in max_tries candidates the whole cell is redrawn
    (new edges and density), at most max_restarts times, then RuntimeError.
    Info: explorer "random_cell", structure_id "random-{k}", target_density, density (g/cm^3).
    """
    w = _weights(settings.composition, elements)
    mean_mass = float(w @ atomic_masses[[atomic_numbers[e] for e in elements]])
    n_max = int(np.rint(settings.density_max * settings.edge_max**3 * AMU_PER_A3 / mean_mass))
    if settings.max_atoms is not None and n_max > settings.max_atoms:
        raise ValueError(
            f"density_max {settings.density_max} g/cm^3 with edge_max {settings.edge_max} A gives up to {n_max} atoms "
            f"> max_atoms {settings.max_atoms}; lower edge_max or density_max, or raise max_atoms"
        )
    rng = np.random.default_rng(seed)
    cells = []
    for k in range(settings.n_cells):
        for _ in range(settings.max_restarts + 1):
            lengths = rng.uniform(settings.edge_min, settings.edge_max, 3)
            rho = float(rng.uniform(settings.density_min, settings.density_max))
            n = max(1, int(np.rint(rho * np.prod(lengths) * AMU_PER_A3 / mean_mass)))
            pos = _place(rng, lengths, n, settings.min_distance, settings.max_tries)
            if pos is not None:
                break
        else:
            raise RuntimeError(
                f"cell {k}: could not place atoms {settings.min_distance} A apart after "
                f"{settings.max_restarts + 1} draws; lower min_distance or density_max"
            )
        atoms = Atoms(numbers=_species(elements, w, n, rng), positions=pos, cell=np.diag(lengths), pbc=True)
        density = float(atoms.get_masses().sum() / atoms.get_volume() / AMU_PER_A3)
        atoms.info = _info("random_cell", f"random-{k}", target_density=rho, density=density)
        atoms.info["frame_id"] = frame_id(atoms)
        cells.append(atoms)
    return cells


# --------------------------------------------------------------------------- DP-GEN initial sets


def reference_nn_distance(symbol: str) -> float:
    """Nearest-neighbour distance (Angstrom) of the element's ase.data.reference_states crystal
    (fcc, hcp, bcc, sc, diamond); otherwise twice its covalent radius."""
    z = atomic_numbers[symbol]
    ref: dict[str, Any] = reference_states[z] or {}
    sym = ref.get("symmetry")
    if sym == "hcp" and "a" in ref:
        a, c = ref["a"], ref["a"] * ref.get("c/a", math.sqrt(8.0 / 3.0))
        return float(min(a, math.sqrt(a * a / 3.0 + c * c / 4.0)))
    if sym in A_OVER_NN and "a" in ref:
        return float(ref["a"] / A_OVER_NN[sym])
    return float(2.0 * covalent_radii[z])


def lattice_supercell(lattice: str, nn_distance: float, repeat=(2, 2, 2), symbol: str = "Al") -> Atoms:
    """Ideal ``repeat`` supercell of the conventional cubic cell (hcp: 2-atom hexagonal cell,
    ideal c/a) with nearest-neighbour distance ``nn_distance`` (Angstrom)."""
    a = nn_distance * A_OVER_NN[lattice]
    if lattice == "hcp":
        unit = bulk(symbol, "hcp", a=a, c=a * math.sqrt(8.0 / 3.0))
    else:
        unit = bulk(symbol, lattice, a=a, cubic=True)
    return unit.repeat(tuple(repeat))


def dpgen_initial_sets(settings: DPGenInitSettings, elements: list[str], seed: int) -> list[Atoms]:
    """DP-GEN style initial structures (Zhang et al.) for every lattice in ``settings.lattices``.

    Perturbed frames (per lattice, scale s, copy k): every site gets a random element
    (composition weights), cell = s * cell0 @ (I + eps) with eps symmetric, entries uniform
    in [-cell_pert_fraction, cell_pert_fraction] (off-diagonals the mean of two such draws),
    atoms scaled with the cell, then N(0, atom_sigma^2) added to every coordinate.
    Displaced frames (per lattice of ``displaced_kinds()``):

    - mode ``planes`` (default): per plane (``displacement_planes`` for cubic lattices,
      ``displacement_planes_hcp`` for hcp) and per distance d (``n_displaced`` of them, uniform
      in [displacement_min, displacement_max]), the :func:`~al_flows.structures.displaced_halves.oriented_cell`
      of that plane is cut into halves and the upper one pulled away by d along the plane normal
      (:func:`~al_flows.structures.displaced_halves.displaced_halves`); with ``dilate_displaced``
      that structure is then dilated by every scale with its own cell strain, decoration and atom
      noise, exactly as the perturbed frames (else: decoration and atom noise once, scale 1);
    - mode ``directions`` (the earlier construction): ``n_displaced`` per lattice, the decorated
      unscaled ``repeat`` supercell split at half of its third vector c; atoms with fractional
      coordinate >= 0.5 along c move rigidly by d * u (u the unit vector of a random [uvw] of
      displacement_directions in conventional-cell vectors) and c becomes c + d * u (w = 0 gives a
      stacking-fault shear, w > 0 also opens a gap); dilated as above when ``dilate_displaced``.

    Info: explorer "dpgen_init", kind (lattice), scale, displaced, structure_id; displaced
    frames also distance (Angstrom), displacement (the shift vector of the undilated structure,
    Angstrom) and plane "(hkl)" (mode planes) or direction "[uvw]" (mode directions).
    """
    w = _weights(settings.composition, elements)
    nn_map = dict(settings.nn_distances or {})
    extra = sorted(set(nn_map) - set(elements))
    if extra:
        raise ValueError(f"nn_distances has element(s) {extra} not in elements {list(elements)}")
    nn = float(sum(wi * nn_map.get(e, reference_nn_distance(e)) for wi, e in zip(w, elements)))
    rng = np.random.default_rng(seed)
    f, sigma = settings.cell_pert_fraction, settings.atom_sigma
    frames: list[Atoms] = []

    def finish(atoms: Atoms, sid: str, **extra_info) -> None:
        atoms.positions = atoms.positions + rng.normal(0.0, sigma, (len(atoms), 3))
        atoms.info = _info("dpgen_init", sid, **extra_info)
        atoms.info["frame_id"] = frame_id(atoms)
        frames.append(atoms)

    def dilated(base: Atoms, scale: float) -> Atoms:  # decorated, cell = s * cell0 @ (I + eps), atoms follow
        eps = rng.uniform(-f, f, (3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms = base.copy()
        atoms.numbers = _species(elements, w, len(atoms), rng)
        atoms.set_cell(scale * base.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        return atoms

    def displaced(atoms: Atoms, sid: str, **extra_info) -> None:  # the dilated copies of one displaced structure
        if not settings.dilate_displaced:
            atoms = atoms.copy()
            atoms.numbers = _species(elements, w, len(atoms), rng)
            finish(atoms, sid, scale=1.0, displaced=True, **extra_info)
            return
        for scale in settings.scales:
            finish(dilated(atoms, scale), f"{sid}-s{scale:g}", scale=float(scale), displaced=True, **extra_info)

    displaced_kinds = settings.displaced_kinds()
    for lat in settings.lattices:
        base = lattice_supercell(lat, nn, settings.repeat, elements[0])
        for scale in settings.scales:
            for k in range(settings.n_perturbed):
                atoms = dilated(base, scale)
                finish(atoms, f"dpgen-{lat}-s{scale:g}-{k}", kind=lat, scale=float(scale), displaced=False)
        if lat not in displaced_kinds:
            continue
        for sid, atoms, info in _displaced_structures(settings, lat, nn, base, elements[0], rng):
            displaced(atoms, sid, kind=lat, **info)
    return frames


def _displaced_structures(settings: DPGenInitSettings, lat: str, nn: float, base: Atoms, symbol: str, rng):
    """(structure_id, undilated displaced structure, info) of one lattice, in the order of the random draws."""
    if settings.displacement_mode == "planes":
        planes = settings.displacement_planes_hcp if lat == "hcp" else settings.displacement_planes
        for plane in planes:
            cell = oriented_cell(lat, plane, nn, settings.displaced_min_layers, settings.displaced_min_width, symbol)
            for k in range(settings.n_displaced):
                dist = float(rng.uniform(settings.displacement_min, settings.displacement_max))
                atoms, _, shift = displaced_halves(cell, dist)
                info = {"plane": f"({plane})", "distance": dist, "displacement": tuple(float(x) for x in shift)}
                yield f"dpgen-{lat}-{plane}-disp-{k}", atoms, info
        return
    conv = base.cell[:] / np.asarray(settings.repeat, dtype=float)[:, None]
    top = base.get_scaled_positions(wrap=False)[:, 2] >= 0.5 - 1e-6
    for k in range(settings.n_displaced):
        uvw = settings.displacement_directions[rng.integers(len(settings.displacement_directions))]
        u = np.asarray(uvw, dtype=float) @ conv
        dist = float(rng.uniform(settings.displacement_min, settings.displacement_max))
        shift = dist * u / np.linalg.norm(u)
        atoms = base.copy()
        pos = atoms.positions.copy()
        pos[top] += shift
        cell = base.cell[:].copy()
        cell[2] += shift
        atoms.set_cell(cell, scale_atoms=False)
        atoms.positions = pos
        direction = "[" + "".join(map(str, uvw)) + "]"
        info = {"direction": direction, "distance": dist, "displacement": tuple(float(x) for x in shift)}
        yield f"dpgen-{lat}-disp-{k}", atoms, info
