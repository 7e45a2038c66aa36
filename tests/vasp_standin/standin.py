"""A stand-in for the ``vasp_std`` executable whose "DFT" is ASE's EMT.

Run it (no arguments) in a VASP run directory holding INCAR, POSCAR, optionally
KPOINTS, and POTCAR or POTCAR.spec. It writes VASP-format outputs (vasprun.xml,
OUTCAR, OSZICAR, CONTCAR) that real pymatgen, custodian and emmet parse, so that
atomate2's ``StaticMaker`` runs end to end without VASP.

Energies, forces and stress come from :func:`reference_results`, which tests use
as the single source of truth:

* energy (eV): EMT energy + sum of per-element :data:`REFERENCE_SHIFTS`
  (EMT energies of rattled cells are positive, which custodian's
  ``PositiveEnergyErrorHandler`` would treat as an error);
* forces (eV/Å): EMT forces as they are;
* stress: ASE Voigt order (xx, yy, zz, yz, xz, xy) in eV/Å^3. VASP files get
  ``-stress / (0.1 * ase.units.GPa)`` in kBar (VASP's sign is opposite to ASE's),
  as a full 3x3 in vasprun.xml and as XX YY ZZ XY YZ ZX in OUTCAR's ``in kB`` line.

Environment variables:

``VASP_STANDIN_FAIL``
    Comma-separated ``SELECTOR:MODE`` items. SELECTOR is the INCAR ``SYSTEM`` tag
    (exact match, preferred) or ``*`` (every run). MODE is one of

    * ``unconverged``: normal outputs, but exactly NELM electronic steps whose
      energy changes stay above EDIFF (pymatgen ``converged_electronic`` is
      False); the reported energy is off the reference by >= 20*EDIFF;
    * ``crash``: message on stderr, no output files, exit code 1;
    * ``garbage``: all outputs written, but vasprun.xml is truncated (invalid XML).
``VASP_STANDIN_LOG``
    A file to which one tab-separated line ``SYSTEM  cwd  mode`` is appended per run.
``VASP_STANDIN_MD_SEED``
    Seed (int, default 0) of the initial velocities in MD mode.
``VASP_STANDIN_ELAPSED``
    Seconds that OUTCAR reports as the run's CPU and elapsed time (on 1 core), instead of the
    measured ones: a fixed cost per run, for tests of core-hour budgets.

Static mode: any INCAR that is neither MD nor relaxation (e.g. NSW = 0 or IBRION = -1) gives
one ionic step.

MD mode: an INCAR with ``IBRION = 0`` and ``NSW > 0`` runs NSW steps of NVE
velocity-Verlet molecular dynamics on the same energy surface (POTIM fs time step,
Maxwell-Boltzmann velocities at TEBEG K from a seeded RNG, centre-of-mass motion
removed) and writes one ionic step per MD step to vasprun.xml (one ``<calculation>``
each), OUTCAR (the blocks ASE's ``vasp-out`` reader and pymatgen's ``Outcar`` parse),
XDATCAR (VASP's fixed-cell layout) and OSZICAR. Step k's structure is the one whose
forces are reported in step k (positions wrapped into the cell, as VASP writes them).
So that the three VASP energies differ as in a smeared metallic run, an electronic
entropy term TS = :data:`MD_ENTROPY_PER_ATOM` x N is added (Gaussian-smearing
relation): ``energy(sigma->0) = reference energy``, ``energy without entropy = E0 + TS/2``,
``free energy TOTEN = E0 - TS/2``. :func:`write_vasp_md_run` writes the inputs and these
outputs in one call and returns the frames it wrote. ``garbage`` truncates vasprun.xml
as in static runs; ``unconverged`` has no effect in MD mode.

Relaxation mode: an INCAR with ``IBRION`` in (1, 2, 3) and ``NSW > 0`` relaxes the ionic
positions at fixed cell with ASE's ``BFGS`` (maxstep :data:`RELAX_MAXSTEP` Å, whatever the
IBRION; POTIM is ignored) on the same energy surface, one ionic step per force evaluation, at
most NSW (:func:`relax_trajectory`). It stops after the first ionic step that meets VASP's
EDIFFG criterion: EDIFFG < 0, every atom's force norm <= |EDIFFG| eV/Å; EDIFFG >= 0 (absent:
10 x EDIFF), the energy changed by less than EDIFFG since the previous ionic step (so
EDIFFG = 0 runs NSW steps). Only ISIF = 2 (its default) is supported: any other ISIF is refused
(ValueError; the executable exits 2 with the message on stderr and writes no outputs). The
files are written by the MD mode's writer (every ionic step in vasprun.xml, OUTCAR, XDATCAR,
OSZICAR), without kinetic energies; OSZICAR's ionic lines are ``N F= E0= d E =`` as in static
runs; vasprun.xml's parameters carry EDIFFG; a converged run ends OUTCAR (and stdout) with
VASP's :data:`RELAX_CONVERGED_LINE`. CONTCAR is the last ionic step's structure. So pymatgen's
``Vasprun.converged_ionic`` is True exactly when VASP's would be (fewer than NSW ionic steps,
or EDIFFG = 0 with NSW steps). TS = :data:`RELAX_ENTROPY_PER_ATOM` x N, below custodian's
``LargeSigmaHandler`` tolerance of 1 meV/atom. ``garbage`` truncates vasprun.xml;
``unconverged`` has no effect.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import time
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

#: eV/atom added to EMT energies so that total energies are negative.
REFERENCE_SHIFTS: dict[str, float] = {
    "Cu": -3.7,
    "Ni": -5.5,
    "Al": -3.7,
    "Ag": -2.9,
    "Au": -3.8,
    "Pd": -3.9,
    "Pt": -5.8,
    "H": -3.4,
    "C": -7.4,
    "N": -8.3,
    "O": -4.9,
}

#: Valence electrons of the usual PBE POTCARs (only used to make NELECT/NBANDS look sane).
_VALENCE = {"H": 1, "C": 4, "N": 5, "O": 6, "Al": 3, "Ni": 10, "Cu": 11, "Pd": 10, "Ag": 11, "Pt": 10, "Au": 11}

FAIL_ENV = "VASP_STANDIN_FAIL"
LOG_ENV = "VASP_STANDIN_LOG"
MODES = ("unconverged", "crash", "garbage")
EFERMI = 5.0
VASP_VERSION = "6.4.2"


# ----------------------------------------------------------------------------------------
# the "DFT"
# ----------------------------------------------------------------------------------------
def reference_results(atoms) -> dict:
    """EMT energy (shifted), forces and stress of ``atoms`` (an ase.Atoms; not modified).

    Returns {"energy": float eV, "forces": (N, 3) eV/Å, "stress": (6,) ASE Voigt eV/Å^3}.
    """
    from ase.calculators.emt import EMT

    work = atoms.copy()
    work.calc = EMT()
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(), dtype=float)
    stress = np.array(work.get_stress(voigt=True), dtype=float)
    symbols = work.get_chemical_symbols()
    missing = sorted(set(symbols) - set(REFERENCE_SHIFTS))
    if missing:
        raise ValueError(f"no reference shift for {missing}")
    energy += float(sum(REFERENCE_SHIFTS[s] for s in symbols))
    return {"energy": energy, "forces": forces, "stress": stress}


def ase_stress_to_vasp_kbar(stress_voigt) -> np.ndarray:
    """ASE Voigt stress (eV/Å^3, xx yy zz yz xz xy) -> VASP 3x3 stress (kBar, VASP sign)."""
    from ase.units import GPa

    xx, yy, zz, yz, xz, xy = np.asarray(stress_voigt, dtype=float)
    full = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return -full / (0.1 * GPa)


def vasp_kbar_to_ase_stress(stress_3x3) -> np.ndarray:
    """VASP 3x3 stress (kBar) -> ASE Voigt stress (eV/Å^3, xx yy zz yz xz xy)."""
    from ase.units import GPa

    s = -np.asarray(stress_3x3, dtype=float) * 0.1 * GPa
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def install_wrapper(directory) -> Path:
    """Write executables ``vasp_std`` (returned) and ``vasp_gam`` into ``directory``.

    Each is ``#!/bin/sh`` + ``exec <this python> <this file> "$@"``. ``vasp_gam`` is
    written too because custodian swaps in ``vasp_gam`` for Gamma-only k-point runs
    whenever one is on PATH: the stand-in must win over any real one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    script = f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n'
    paths = []
    for name in ("vasp_std", "vasp_gam"):
        path = directory / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        paths.append(path)
    return paths[0]


def failure_mode(system: str, spec: str | None = None) -> str | None:
    """The failure mode that ``VASP_STANDIN_FAIL`` (or ``spec``) selects for ``system``."""
    spec = os.environ.get(FAIL_ENV, "") if spec is None else spec
    exact = wildcard = None
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        selector, sep, mode = item.rpartition(":")
        if not sep or mode not in MODES:
            raise ValueError(f"bad {FAIL_ENV} item {item!r}: want SELECTOR:MODE with MODE in {MODES}")
        if selector == system and exact is None:
            exact = mode
        elif selector == "*" and wildcard is None:
            wildcard = mode
    return exact or wildcard


def _potcar_titles(directory: Path, n_types: int) -> list[str]:
    """POTCAR titles from POTCAR (TITEL lines) or POTCAR.spec (one symbol a line)."""
    potcar = directory / "POTCAR"
    spec = directory / "POTCAR.spec"
    titles: list[str] = []
    if potcar.is_file():
        for line in potcar.read_text(errors="replace").splitlines():
            if "TITEL" in line and "=" in line:
                titles.append(line.split("=", 1)[1].strip())
    elif spec.is_file():
        titles = [f"PAW_PBE {s.strip()} 06Sep2000" for s in spec.read_text().splitlines() if s.strip()]
    if len(titles) != n_types:
        raise RuntimeError(f"expected {n_types} POTCAR entries, found {len(titles)} (need POTCAR or POTCAR.spec)")
    return titles


def _kpoints(directory: Path, incar, structure):
    """(generation style or None, divisions or None, usershift, list of k (frac), weights)."""
    from pymatgen.io.vasp import Kpoints

    path = directory / "KPOINTS"
    if path.is_file():
        kp = Kpoints.from_file(path)
        style = kp.style.name  # Gamma, Monkhorst, Automatic, Reciprocal, Cartesian, Line_mode
        if style in ("Gamma", "Monkhorst") and kp.kpts:
            divisions = [int(x) for x in kp.kpts[0]]
            shift = [float(x) for x in (kp.kpts_shift or (0, 0, 0))]
        elif style == "Automatic":  # fully automatic: length parameter
            length = float(kp.kpts[0][0])
            recip = structure.lattice.reciprocal_lattice_crystallographic.abc
            divisions = [max(1, int(length * r + 0.5)) for r in recip]
            style, shift = "Gamma", [0.0, 0.0, 0.0]
        else:  # explicit list (or line mode): use the points as given, reciprocal coords
            pts = np.array(kp.kpts, dtype=float)
            if style == "Cartesian":
                pts = structure.lattice.reciprocal_lattice.get_fractional_coords(pts * 2 * np.pi)
            weights = np.array(kp.kpts_weights or [1.0] * len(pts), dtype=float)
            return None, None, None, pts, weights / weights.sum()
    else:  # KSPACING
        kspacing = float(incar.get("KSPACING", 0.5))
        recip = structure.lattice.reciprocal_lattice.abc  # includes 2*pi
        divisions = [max(1, math.ceil(r / kspacing)) for r in recip]
        style = "Gamma" if incar.get("KGAMMA", True) else "Monkhorst"
        shift = [0.0, 0.0, 0.0]
    grids = []
    for n, s in zip(divisions, shift):
        if style == "Gamma":
            k = (np.arange(n) + s) / n
        else:
            k = (np.arange(n) + 0.5 * (1 - n % 2) + s) / n  # MP: shift by half for even n
        k = k - np.round(k)
        grids.append(k)
    pts = np.array([[a, b, c] for a in grids[0] for b in grids[1] for c in grids[2]])
    weights = np.full(len(pts), 1.0 / len(pts))
    return style, divisions, shift, pts, weights


def _fmt_param(name: str, value) -> str:
    """One vasprun <i>/<v> element for a parameter."""
    name = escape(str(name), {'"': "&quot;"})
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        if vals and all(isinstance(v, bool) for v in vals):
            return f'<v type="logical" name="{name}">{" ".join("T" if v else "F" for v in vals)}</v>'
        if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return f'<v type="int" name="{name}">{" ".join(str(v) for v in vals)}</v>'
        try:
            return f'<v name="{name}">{" ".join(f"{float(v):.8f}" for v in vals)}</v>'
        except (TypeError, ValueError):
            return f'<v type="string" name="{name}">{escape(" ".join(str(v) for v in vals))}</v>'
    if isinstance(value, bool):
        return f'<i type="logical" name="{name}">{"T" if value else "F"}</i>'
    if isinstance(value, int):
        return f'<i type="int" name="{name}">{value}</i>'
    if isinstance(value, float):
        return f'<i name="{name}">{value:.8f}</i>'
    return f'<i type="string" name="{name}">{escape(str(value))}</i>'


def _varray(name: str, rows, fmt: str = "{:22.14f}", indent: str = "  ") -> str:
    out = [f'{indent}<varray name="{name}" >']
    for row in rows:
        out.append(f"{indent} <v>" + " ".join(fmt.format(float(x)) for x in np.atleast_1d(row)) + " </v>")
    out.append(f"{indent}</varray>")
    return "\n".join(out)


def _structure_xml(structure, name: str | None, indent: str = " ") -> str:
    attr = f' name="{name}"' if name else ""
    lat = structure.lattice
    return "\n".join(
        [
            f"{indent}<structure{attr} >",
            f"{indent} <crystal>",
            _varray("basis", lat.matrix, indent=indent + "  "),
            f'{indent}  <i name="volume">{lat.volume:22.14f} </i>',
            _varray("rec_basis", lat.reciprocal_lattice_crystallographic.matrix, indent=indent + "  "),
            f"{indent} </crystal>",
            _varray("positions", structure.frac_coords, fmt="{:20.16f}", indent=indent + " "),
            f"{indent}</structure>",
        ]
    )


def _energy_xml(e0: float, indent: str, ts: float = 0.0, ekin: float | None = None) -> str:
    """<energy> block: free (TOTEN = e0 - ts/2), without entropy (e0 + ts/2), sigma->0 (e0).

    ``ts`` is the electronic entropy term T*S (0 in static runs: the three energies coincide);
    with ``ekin`` (MD) the kinetic and total terms follow.
    """
    rows = [
        f"{indent}<energy>",
        f'{indent} <i name="e_fr_energy">{e0 - ts / 2:20.10f} </i>',
        f'{indent} <i name="e_wo_entrp">{e0 + ts / 2:20.10f} </i>',
        f'{indent} <i name="e_0_energy">{e0:20.10f} </i>',
    ]
    if ekin is not None:
        rows += [
            f'{indent} <i name="kinetic">{ekin:20.10f} </i>',
            f'{indent} <i name="lattice kinetic">{0.0:20.10f} </i>',
            f'{indent} <i name="nosekinetic">{0.0:20.10f} </i>',
            f'{indent} <i name="nosepot">{0.0:20.10f} </i>',
            f'{indent} <i name="total">{e0 - ts / 2 + ekin:20.10f} </i>',
        ]
    rows.append(f"{indent}</energy>")
    return "\n".join(rows)


def _scf_energies(energy: float, nelm: int, ediff: float, unconverged: bool) -> list[float]:
    """Energies of the electronic steps; the last one is the reported energy."""
    if unconverged:
        # NELM steps, alternating about the reference, every change >= 40*EDIFF
        return [energy + (-1) ** k * (0.5 * 0.8**k + 20.0 * ediff) for k in range(nelm)]
    n = max(1, min(5, nelm - 1))
    if n == 1:
        return [energy]
    amp = 10.0 if n > 2 else 0.1 * ediff
    q = (0.1 * ediff / amp) ** (1.0 / (n - 2)) if n > 2 else 1.0  # amp*q**(n-2) == 0.1*EDIFF
    return [energy + amp * q**k for k in range(n - 1)] + [energy]


# ----------------------------------------------------------------------------------------
# writers shared by the static, the MD and the relaxation mode
# ----------------------------------------------------------------------------------------
#: program names in the generator block of vasprun.xml and the first line of OUTCAR
_PROGRAM = "EMT stand-in"
_PROGRAM_MD = "EMT stand-in MD"
_PROGRAM_RELAX = "EMT stand-in relax"

#: VASP's last word in OUTCAR (and stdout) when a relaxation meets its EDIFFG criterion
RELAX_CONVERGED_LINE = " reached required accuracy - stopping structural energy minimisation"

_OSZICAR_HEADER = "       N       E                     dE             d eps       ncg     rms          rms(c)"


def _banner(program: str) -> str:
    """First line of OUTCAR (and of stdout)."""
    return f" vasp.{VASP_VERSION} {program} (tests/vasp_standin)"


def _electronic_setup(incar, site_symbols, natoms, nions: int) -> tuple[list[float], float, int, int]:
    """(valence per species, NELECT, NBANDS, NEDOS) as VASP derives them from INCAR and POTCARs."""
    valence = [float(_VALENCE.get(s, 8)) for s in site_symbols]
    nelect = float(sum(v * n for v, n in zip(valence, natoms)))
    nbands = int(incar.get("NBANDS", max(8, math.ceil(nelect / 2 + nions / 2))))
    nedos = int(incar.get("NEDOS", 301))
    return valence, nelect, nbands, nedos


def _override_params(params: dict, incar, nions: int) -> dict:
    """``params`` (VASP's defaults) updated in place by the INCAR values; returns ``params``.

    ENCUT is reported as ENMAX; LORBIT stays 0 (no projections are written, so nothing asks
    for them); ALGO stays in <incar> (VASP reports IALGO in <parameters>). A MAGMOM that
    does not have NIONS entries becomes NIONS x 1.0.
    """
    for key, value in incar.items():
        if key in ("ENCUT", "LORBIT", "ALGO"):
            continue
        params[key] = value
    if isinstance(params.get("MAGMOM"), list) and len(params["MAGMOM"]) != nions:
        params["MAGMOM"] = [1.0] * nions
    return params


def _vasprun_header(
    program: str, now, incar, kpoints, params: dict, site_symbols, natoms, valence, titles, ind: str = " "
) -> list[str]:
    """vasprun.xml from the XML declaration to </atominfo>: generator, incar, kpoints, parameters, atominfo.

    ``kpoints`` is what :func:`_kpoints` returns.
    """
    from pymatgen.core import Element

    kstyle, divisions, kshift, kpts, kweights = kpoints
    x: list[str] = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>"]
    x += [
        f"{ind}<generator>",
        f'{ind} <i name="program" type="string">vasp </i>',
        f'{ind} <i name="version" type="string">{VASP_VERSION}  </i>',
        f'{ind} <i name="subversion" type="string">{program} (tests/vasp_standin) </i>',
        f'{ind} <i name="platform" type="string">LinuxGNU </i>',
        f'{ind} <i name="date" type="string">{now:%Y %m %d} </i>',
        f'{ind} <i name="time" type="string">{now:%H:%M:%S} </i>',
        f"{ind}</generator>",
        f"{ind}<incar>",
    ]
    x += [f"{ind} {_fmt_param(k, v)}" for k, v in incar.items()]
    x += [f"{ind}</incar>", f"{ind}<kpoints>"]
    if kstyle is not None:
        param = "Gamma" if kstyle == "Gamma" else "Monkhorst-Pack"
        x += [
            f'{ind} <generation param="{param}">',
            f'{ind}  <v type="int" name="divisions">' + " ".join(f"{d:8d}" for d in divisions) + " </v>",
            f'{ind}  <v name="usershift">' + " ".join(f"{s:16.8f}" for s in kshift) + " </v>",
            f"{ind} </generation>",
        ]
    x += [_varray("kpointlist", kpts, fmt="{:16.8f}", indent=ind + " ")]
    x += [_varray("weights", kweights, fmt="{:16.8f}", indent=ind + " ")]
    x += [f"{ind}</kpoints>", f"{ind}<parameters>"]
    x += [f"{ind} {_fmt_param(k, v)}" for k, v in params.items()]
    x += [f"{ind}</parameters>"]

    species = [s for s, n in zip(site_symbols, natoms) for _ in range(n)]
    types = [i + 1 for i, n in enumerate(natoms) for _ in range(n)]
    x += [
        f"{ind}<atominfo>",
        f"{ind} <atoms>{len(species):8d} </atoms>",
        f"{ind} <types>{len(site_symbols):8d} </types>",
        f'{ind} <array name="atoms" >',
        f'{ind}  <dimension dim="1">ion</dimension>',
        f'{ind}  <field type="string">element</field>',
        f'{ind}  <field type="int">atomtype</field>',
        f"{ind}  <set>",
    ]
    x += [f"{ind}   <rc><c>{s:2s}</c><c>{t:4d}</c></rc>" for s, t in zip(species, types)]
    x += [
        f"{ind}  </set>",
        f"{ind} </array>",
        f'{ind} <array name="atomtypes" >',
        f'{ind}  <dimension dim="1">type</dimension>',
        f'{ind}  <field type="int">atomspertype</field>',
        f'{ind}  <field type="string">element</field>',
        f"{ind}  <field>mass</field>",
        f"{ind}  <field>valence</field>",
        f'{ind}  <field type="string">pseudopotential</field>',
        f"{ind}  <set>",
    ]
    for s, n, v, title in zip(site_symbols, natoms, valence, titles):
        mass = float(Element(s).atomic_mass)
        x.append(
            f"{ind}   <rc><c>{n:4d}</c><c>{s:2s}</c><c>{mass:16.8f}</c><c>{v:16.8f}</c><c>  {escape(title)}</c></rc>"
        )
    x += [f"{ind}  </set>", f"{ind} </array>", f"{ind}</atominfo>"]
    return x


def _calculation_xml(scstep_energies, structure, forces, stress_kb, energy: str, extra=(), ind: str = " ") -> list[str]:
    """One ionic step's <calculation>: electronic steps (their <energy> blocks as given),
    structure, forces, stress (kBar), the step's <energy> block, then ``extra`` lines."""
    x = [f"{ind}<calculation>"]
    for block in scstep_energies:
        x += [
            f"{ind} <scstep>",
            f'{ind}  <time name="dav">    0.01    0.01</time>',
            f'{ind}  <time name="total">    0.01    0.01</time>',
            block,
            f"{ind} </scstep>",
        ]
    x.append(_structure_xml(structure, None, indent=ind + " "))
    x.append(_varray("forces", forces, fmt="{:20.12f}", indent=ind + " "))
    x.append(_varray("stress", stress_kb, fmt="{:24.12f}", indent=ind + " "))
    x.append(energy)
    x.append(f'{ind} <time name="totalsc">    0.05    0.05</time>')
    x += extra
    x.append(f"{ind}</calculation>")
    return x


def _eigen_dos_xml(nbands: int, nelect: float, nkpts: int, nedos: int, ind: str, ispin: int = 1) -> list[str]:
    """<eigenvalues> and <dos>: NBANDS levels spread around E-fermi, one band straddling it
    (a metal), the same for every spin channel; total DOS of Gaussian-broadened levels."""
    nocc = nelect / 2.0  # occupied bands per spin channel
    band_e = EFERMI + (np.arange(nbands) - nocc + 0.5) * (12.0 / max(nbands, 1))
    x = [
        f"{ind}<eigenvalues>",
        f"{ind} <array>",
        f'{ind}  <dimension dim="1">band</dimension>',
        f'{ind}  <dimension dim="2">kpoint</dimension>',
        f'{ind}  <dimension dim="3">spin</dimension>',
        f"{ind}  <field>eigene</field>",
        f"{ind}  <field>occ</field>",
        f"{ind}  <set>",
    ]
    for sp in range(ispin):
        x.append(f'{ind}   <set comment="spin {sp + 1}">')
        for ik in range(nkpts):
            x.append(f'{ind}    <set comment="kpoint {ik + 1}">')
            for b in range(nbands):
                occ = float(np.clip(nocc - b, 0.0, 1.0))
                x.append(f"{ind}     <r>{band_e[b] + 0.01 * ik:12.4f}{occ:12.4f} </r>")
            x.append(f"{ind}    </set>")
        x.append(f"{ind}   </set>")
    x += [f"{ind}  </set>", f"{ind} </array>", f"{ind}</eigenvalues>"]

    grid = np.linspace(EFERMI - 15.0, EFERMI + 10.0, nedos)
    sig = 0.2
    dos = np.exp(-(((grid[:, None] - band_e[None, :]) / sig) ** 2) / 2).sum(axis=1) / (sig * np.sqrt(2 * np.pi))
    dos *= 2.0 / ispin
    integ = np.concatenate([[0.0], np.cumsum(0.5 * (dos[1:] + dos[:-1]) * np.diff(grid))])
    x += [
        f"{ind}<dos>",
        f'{ind} <i name="efermi">{EFERMI:16.8f} </i>',
        f"{ind} <total>",
        f"{ind}  <array>",
        f'{ind}   <dimension dim="1">gridpoints</dimension>',
        f'{ind}   <dimension dim="2">spin</dimension>',
        f"{ind}   <field>energy</field>",
        f"{ind}   <field>total</field>",
        f"{ind}   <field>integrated</field>",
        f"{ind}   <set>",
    ]
    for sp in range(ispin):
        x.append(f'{ind}    <set comment="spin {sp + 1}">')
        x += [f"{ind}     <r>{g:12.4f}{d:12.4f}{i:12.4f} </r>" for g, d, i in zip(grid, dos, integ)]
        x.append(f"{ind}    </set>")
    x += [f"{ind}   </set>", f"{ind}  </array>", f"{ind} </total>", f"{ind}</dos>"]
    return x


def _write_vasprun(directory: Path, x: list[str], final_structure, garbage: bool) -> None:
    """Close the document (finalpos) and write vasprun.xml; ``garbage`` keeps only its first half."""
    x = x + [_structure_xml(final_structure, "finalpos"), "</modeling>"]
    vasprun = "\n".join(x) + "\n"
    if garbage:
        vasprun = vasprun[: len(vasprun) // 2]
    (directory / "vasprun.xml").write_text(vasprun, encoding="ISO-8859-1")


def _oszicar_dav(energies, nbands: int) -> list[str]:
    """OSZICAR's column header and one DAV line per electronic step (``energies``: as printed, eV)."""
    osz = [_OSZICAR_HEADER]
    prev = 0.0
    for k, e in enumerate(energies, start=1):
        osz.append(
            f"DAV: {k:3d}    {e: .12E}   {e - prev: .5E}   {-0.1 * abs(e - prev): .5E}  {16 * nbands:5d}   0.100E+00"
        )
        prev = e
    return osz


def _oszicar_ionic_line(step: int, free_energy: float, e0: float, d_e: float, ispin: int = 1) -> str:
    """OSZICAR's line closing ionic step ``step`` of a static or relaxation run (``d_e``: change of
    F since the previous ionic step, F itself for the first); ISPIN = 2 adds the magnetisation."""
    line = f"{step:4d} F= {free_energy: .8E} E0= {e0: .8E}  d E ={d_e: .6E}"
    return line + "  mag=     0.0000" if ispin == 2 else line


def _outcar_banner(program: str, now) -> list[str]:
    return [
        _banner(program),
        f" executed on             LinuxGNU date {now:%Y.%m.%d}  {now:%H:%M:%S}",
        " running on    1 total cores",
        " distrk:  each k-point on    1 cores,    1 groups",
        "",
    ]


def _outcar_dimensions(nkpts: int, nbands: int, nedos: int, nions: int, nplwv: int) -> list[str]:
    return [
        " Dimension of arrays:",
        f"   k-points           NKPTS = {nkpts:6d}   k-points in BZ     NKDIM = {nkpts:6d}   number of bands    "
        f"NBANDS= {nbands:6d}",
        f"   number of dos      NEDOS = {nedos:6d}   number of ions     NIONS = {nions:6d}",
        f"   total plane-waves  NPLWV = {nplwv:6d}",
        "",
    ]


def _outcar_parameters(
    system: str,
    nelm: int,
    ediff: float,
    nsw: int,
    ibrion: int,
    isif: int,
    ispin: int,
    nelect: float,
    *,
    ediffg: float | None = None,
    after_nsw=(),
    before_nelect=(),
) -> list[str]:
    """OUTCAR's start parameters (``after_nsw``/``before_nelect``: the MD and relaxation modes'
    extra lines; ``ediffg``: the relaxation mode's EDIFFG line)."""
    return [
        f"   SYSTEM =  {system}",
        f"   NELM   = {nelm:6d};   NELMIN=  2; NELMDL= -5     # of ELM steps",
        f"   EDIFF  = {ediff:.1E}   stopping-criterion for ELM",
        *([f"   EDIFFG = {ediffg:.1E}   stopping-criterion for IOM"] if ediffg is not None else []),
        f"   NSW    = {nsw:6d}    number of steps for IOM",
        *after_nsw,
        f"   IBRION = {ibrion:6d}    ionic relax: 0-MD 1-quasi-New 2-CG",
        f"   ISIF   = {isif:6d}    stress and relaxation",
        f"   ISPIN  = {ispin:6d}    spin polarized calculation?",
        "   LNONCOLLINEAR =      F non collinear calculations",
        *before_nelect,
        f"   NELECT = {nelect:12.4f}    total number of electrons",
        "",
    ]


def _outcar_scf_step(ionic: int, elec: int, e0: float, ts: float = 0.0, detailed: bool = False) -> list[str]:
    """One electronic step in OUTCAR (``detailed``: the MD mode's fuller block, as VASP prints it)."""
    head = f"{'-' * 41} Iteration {ionic:6d}({elec:4d})  {'-' * 39}"
    toten = [f"  entropy T*S    EENTRO = {-ts:18.8f}", f"  free energy    TOTEN  = {e0 - ts / 2:18.8f} eV", ""]
    if not detailed:
        return [head, "  Free energy of the ion-electron system (eV)", *toten]
    return [
        head,
        "",
        "  Free energy of the ion-electron system (eV)",
        "  ---------------------------------------------------",
        *toten,
        f"  energy without entropy = {e0 + ts / 2:18.8f}  energy(sigma->0) = {e0:18.8f}",
        "",
    ]


def _outcar_stress(stress_kb, kb_fmt: str, pressure_fmt: str) -> list[str]:
    """E-fermi line and the ``in kB`` stress block (XX YY ZZ XY YZ ZX) of OUTCAR."""
    voigt_kb = [stress_kb[0, 0], stress_kb[1, 1], stress_kb[2, 2], stress_kb[0, 1], stress_kb[1, 2], stress_kb[0, 2]]
    return [
        f" E-fermi : {EFERMI:10.4f}     XC(G=0):  -9.0000     alpha+bet : -5.0000",
        "",
        "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
        "  Direction    XX          YY          ZZ          XY          YZ          ZX",
        "  " + "-" * 86,
        f"  in kB  {''.join(format(v, kb_fmt) for v in voigt_kb)}",
        f"  external pressure = {np.trace(stress_kb) / 3:{pressure_fmt}} kB  Pullay stress =        0.00 kB",
        "",
    ]


def _outcar_forces(cart_coords, forces, force_fmt: str, drift_fmt: str, drift_column: int) -> list[str]:
    """OUTCAR's POSITION / TOTAL-FORCE table and total drift (its numbers from ``drift_column`` on)."""
    o = [" POSITION                                       TOTAL-FORCE (eV/Angst)", " " + "-" * 83]
    for (px, py, pz), (fx, fy, fz) in zip(cart_coords, forces):
        o.append(f" {px:12.5f} {py:12.5f} {pz:12.5f}   {fx:{force_fmt}} {fy:{force_fmt}} {fz:{force_fmt}}")
    drift = forces.sum(axis=0)
    o += [" " + "-" * 83, "    total drift:".ljust(drift_column) + " ".join(format(d, drift_fmt) for d in drift)]
    return o


def _outcar_free_energy(toten: float, e_wo_entropy: float, e0: float, fmt: str) -> list[str]:
    return [
        "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
        "  ---------------------------------------------------",
        f"  free  energy   TOTEN  = {toten:{fmt}} eV",
        "",
        f"  energy  without entropy= {e_wo_entropy:{fmt}}  energy(sigma->0) = {e0:{fmt}}",
        "",
    ]


def _outcar_magnetization(nions: int) -> list[str]:
    """OUTCAR's (zero) ``magnetization (x)`` table of a spin-polarised (ISPIN = 2) run."""
    o = [" magnetization (x)", "", "# of ion       s       p       d       tot", "-" * 41]
    o += [f"{i + 1:4d}        0.000   0.000   0.000   0.000" for i in range(nions)]
    return o + ["-" * 41, "tot          0.000   0.000   0.000   0.000", ""]


def _outcar_tail(nelect: float, t0: float) -> list[str]:
    """Electron count and the timing block that ends OUTCAR (elapsed time since ``t0``)."""
    elapsed = float(os.environ.get(ELAPSED_ENV) or time.time() - t0)
    return [
        f" number of electron {nelect:15.7f} magnetization {0.0:15.7f}",
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "",
        f"                  Total CPU time used (sec): {elapsed:12.3f}",
        f"                            User time (sec): {elapsed:12.3f}",
        f"                          System time (sec): {0.0:12.3f}",
        f"                         Elapsed time (sec): {elapsed:12.3f}",
        "",
        f"                   Maximum memory used (kb): {100000.0:12.0f}.",
        f"                   Average memory used (kb): {0.0:12.0f}.",
        "",
    ]


# ----------------------------------------------------------------------------------------
# the program
# ----------------------------------------------------------------------------------------
def _static_params(
    incar, system: str, nions: int, nelect: float, nbands: int, nedos: int, ispin: int, nelm: int, ediff: float
) -> dict:
    """<parameters> of a static run as VASP reports them (INCAR values override the defaults)."""
    params = {
        "SYSTEM": system,
        "PREC": "normal",
        "ENMAX": float(incar.get("ENCUT", 400.0)),
        "EDIFF": ediff,
        "IALGO": 38,
        "NBANDS": nbands,
        "NELECT": nelect,
        "ISMEAR": 1,
        "SIGMA": 0.2,
        "LREAL": False,
        "ISTART": 0,
        "ICHARG": 2,
        "ISPIN": ispin,
        "LNONCOLLINEAR": False,
        "MAGMOM": [1.0] * nions,
        "NUPDOWN": -1.0,
        "LSORBIT": False,
        "LASPH": False,
        "LMETAGGA": False,
        "NELM": nelm,
        "NELMDL": -5,
        "NELMIN": 2,
        "AMIX": 0.4,
        "BMIX": 1.0,
        "AMIN": 0.1,
        "NSW": 0,
        "IBRION": -1,
        "ISIF": 2,
        "PSTRESS": 0.0,
        "EDIFFG": ediff * 10,
        "POTIM": 0.5,
        "ISYM": 2,
        "SYMPREC": 1e-5,
        "LORBIT": 0,
        "NEDOS": nedos,
        "EMIN": EFERMI - 15.0,
        "EMAX": EFERMI + 10.0,
        "EFERMI": 0.0,
        "NWRITE": 2,
        "LWAVE": True,
        "LCHARG": True,
        "LVTOT": False,
        "LVHAR": False,
        "LELF": False,
        "LOPTICS": False,
        "NPAR": 1,
        "GGA_COMPAT": True,
        "LBERRY": False,
        "ICORELEVEL": 0,
        "LDAU": False,
        "GGA": "PE",
        "LHFCALC": False,
        "AEXX": 0.0,
        "AGGAX": 1.0,
        "AGGAC": 1.0,
        "ALDAC": 1.0,
        "HFSCREEN": 0.0,
        "LUSE_VDW": False,
        "LEPSILON": False,
        "LRPA": False,
        "LCHIMAG": False,
    }
    return _override_params(params, incar, nions)


def run(directory=".") -> int:
    """Run the stand-in in ``directory``; returns the exit code."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Incar, Poscar

    t0 = time.time()
    directory = Path(directory).resolve()
    incar = Incar.from_file(directory / "INCAR")
    system = str(incar.get("SYSTEM", "unknown system")).strip()
    mode = failure_mode(system)

    if log := os.environ.get(LOG_ENV):
        with open(log, "a") as fh:
            fh.write(f"{system}\t{directory}\t{mode or 'ok'}\n")

    print(_banner(_PROGRAM))
    print(" running on    1 total cores")
    if mode == "crash":
        print("standin: simulated crash requested by " + FAIL_ENV, file=sys.stderr)
        return 1

    poscar = Poscar.from_file(directory / "POSCAR", check_for_potcar=False)
    structure = poscar.structure
    site_symbols = poscar.site_symbols
    natoms = poscar.natoms
    titles = _potcar_titles(directory, len(site_symbols))
    if is_md_incar(incar):  # AIMD (IBRION = 0, NSW > 0): multi-step outputs, see write_md_outputs
        seed = int(os.environ.get(MD_SEED_ENV, "0") or 0)
        frames = write_md_outputs(
            directory, incar, structure, site_symbols, natoms, titles, seed=seed, garbage=mode == "garbage", t0=t0
        )
        return _echo_ionic_steps(directory, frames)
    if is_relax_incar(incar):  # IBRION = 1, 2, 3 and NSW > 0: fixed-cell BFGS, see write_relax_outputs
        frames = write_relax_outputs(
            directory, incar, structure, site_symbols, natoms, titles, garbage=mode == "garbage", t0=t0
        )
        return _echo_ionic_steps(directory, frames)

    res = reference_results(AseAtomsAdaptor.get_atoms(structure))
    forces = res["forces"]
    stress_kb = ase_stress_to_vasp_kbar(res["stress"])

    nions = len(structure)
    ispin = int(incar.get("ISPIN", 1))
    nelm = int(incar.get("NELM", 60))
    ediff = float(incar.get("EDIFF", 1e-4))
    energies = _scf_energies(res["energy"], nelm, ediff, mode == "unconverged")
    energy = energies[-1]
    valence, nelect, nbands, nedos = _electronic_setup(incar, site_symbols, natoms, nions)
    kpoints = _kpoints(directory, incar, structure)
    nkpts = len(kpoints[3])
    params = _static_params(incar, system, nions, nelect, nbands, nedos, ispin, nelm, ediff)

    # vasprun.xml: one ionic step, with eigenvalues and DOS
    now = datetime.now()
    ind = " "
    x = _vasprun_header(_PROGRAM, now, incar, kpoints, params, site_symbols, natoms, valence, titles, ind=ind)
    x.append(_structure_xml(structure, "initialpos"))
    x += _calculation_xml(
        [_energy_xml(e, ind + "  ") for e in energies],
        structure,
        forces,
        stress_kb,
        _energy_xml(energy, ind + " "),
        extra=_eigen_dos_xml(nbands, nelect, nkpts, nedos, ind + " ", ispin=ispin),
        ind=ind,
    )
    _write_vasprun(directory, x, structure, garbage=mode == "garbage")

    # OSZICAR (and the same lines on stdout, as VASP does)
    osz = _oszicar_dav(energies, nbands)
    osz.append(_oszicar_ionic_line(1, energy, energy, energy, ispin))
    (directory / "OSZICAR").write_text("\n".join(osz) + "\n")
    print("\n".join(osz[1:]))

    Poscar(structure, comment=system).write_file(directory / "CONTCAR")

    # OUTCAR
    nplwv = 32 * 32 * 32
    o = _outcar_banner(_PROGRAM, now)
    o += [f"   POTCAR:    {t}" for t in titles]
    o += [""]
    o += _outcar_dimensions(nkpts, nbands, nedos, nions, nplwv)
    o += _outcar_parameters(system, nelm, ediff, nsw=0, ibrion=-1, isif=2, ispin=ispin, nelect=nelect)
    for k, e in enumerate(energies, start=1):
        o += _outcar_scf_step(1, k, e)
    o += [""]
    o += _outcar_stress(stress_kb, "16.8f", "12.4f")
    o += _outcar_forces(structure.cart_coords, forces, "16.8f", "12.6f", drift_column=47)
    o += [""]
    o += _outcar_free_energy(energy, energy, energy, "20.10f")
    if ispin == 2:
        o += _outcar_magnetization(nions)
    o += _outcar_tail(nelect, t0)
    (directory / "OUTCAR").write_text("\n".join(o) + "\n")
    return 0


# ----------------------------------------------------------------------------------------
# MD mode (IBRION = 0, NSW > 0): multi-step vasprun.xml, OUTCAR, XDATCAR, OSZICAR
# ----------------------------------------------------------------------------------------
MD_SEED_ENV = "VASP_STANDIN_MD_SEED"
ELAPSED_ENV = "VASP_STANDIN_ELAPSED"

#: electronic entropy term T*S (eV per atom) reported in MD mode (see the module docstring)
MD_ENTROPY_PER_ATOM = 0.002

#: INCAR written by :func:`write_vasp_md_run` (``incar=`` entries override these)
MD_INCAR_DEFAULTS: dict = {
    "PREC": "Normal",
    "ENCUT": 400.0,
    "EDIFF": 1e-5,
    "NELM": 60,
    "ISPIN": 1,
    "ISMEAR": 0,
    "SIGMA": 0.1,
    "ISYM": 0,
    "IBRION": 0,
    "SMASS": -3,
    "ISIF": 2,
    "LWAVE": False,
    "LCHARG": False,
}


def is_md_incar(incar) -> bool:
    """True for an AIMD INCAR: IBRION = 0 and NSW > 0."""
    try:
        return int(incar.get("IBRION", -1)) == 0 and int(incar.get("NSW", 0)) > 0
    except (TypeError, ValueError):
        return False


def md_trajectory(atoms, n_steps: int, potim: float = 1.0, tebeg: float = 300.0, seed: int = 0) -> list:
    """NVE velocity-Verlet MD on :func:`reference_results` (``atoms`` is not modified).

    Initial velocities: Maxwell-Boltzmann at ``tebeg`` K from ``np.random.default_rng(seed)``,
    centre-of-mass velocity removed; time step ``potim`` fs; ASE masses. Returns ``n_steps``
    frames (ase.Atoms, positions wrapped into the cell) whose SinglePointCalculator holds
    ``energy`` (= energy(sigma->0), the reference energy), ``free_energy`` (TOTEN = energy - TS/2),
    ``forces`` and ``stress`` (ASE convention) of that step; ``info`` has ``md_step`` (0-based),
    ``ekin`` (eV), ``temperature`` (K, 3N-3 degrees of freedom) and ``entropy_ts`` (TS, eV).
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.units import fs, kB

    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    work = atoms.copy()
    work.calc = None
    masses = work.get_masses()[:, None]
    rng = np.random.default_rng(seed)
    vel = rng.standard_normal((len(work), 3)) * np.sqrt(kB * float(tebeg) / masses)
    vel -= (masses * vel).sum(axis=0) / masses.sum()
    dt = float(potim) * fs
    ts = MD_ENTROPY_PER_ATOM * len(work)
    ndof = max(3 * len(work) - 3, 1)
    frames = []
    res = reference_results(work)
    for k in range(n_steps):
        ekin = float(0.5 * (masses * vel**2).sum())
        frame = work.copy()
        frame.set_scaled_positions(work.get_scaled_positions(wrap=True))
        frame.info = {"md_step": k, "ekin": ekin, "temperature": 2.0 * ekin / (ndof * kB), "entropy_ts": ts}
        frame.calc = SinglePointCalculator(
            frame,
            energy=res["energy"],
            free_energy=res["energy"] - ts / 2,
            forces=res["forces"].copy(),
            stress=res["stress"].copy(),
        )
        frames.append(frame)
        if k == n_steps - 1:
            break
        acc = res["forces"] / masses
        work.positions = work.positions + vel * dt + 0.5 * acc * dt**2
        res = reference_results(work)
        vel = vel + 0.5 * (acc + res["forces"] / masses) * dt
    return frames


def _species_groups(symbols) -> tuple[list[str], list[int]]:
    """VASP species blocks: runs of equal consecutive symbols (as pymatgen's Poscar groups them)."""
    names: list[str] = []
    counts: list[int] = []
    for s in symbols:
        if names and names[-1] == s:
            counts[-1] += 1
        else:
            names.append(s)
            counts.append(1)
    return names, counts


def write_vasp_md_run(
    directory,
    atoms,
    n_steps: int = 5,
    potim: float = 1.0,
    tebeg: float = 300.0,
    seed: int = 0,
    *,
    system: str = "md",
    incar: dict | None = None,
    garbage: bool = False,
) -> list:
    """Write a complete AIMD run directory without the executable; return its frames.

    Inputs: INCAR (:data:`MD_INCAR_DEFAULTS` + SYSTEM/NSW/POTIM/TEBEG/TEEND + ``incar``),
    POSCAR, KPOINTS (Gamma 1x1x1), POTCAR.spec. Outputs exactly as the stand-in's MD mode
    (``run`` in the same directory with ``VASP_STANDIN_MD_SEED=seed`` writes the same
    numbers): vasprun.xml, OUTCAR, XDATCAR, OSZICAR, CONTCAR. ``garbage`` truncates
    vasprun.xml. The frames are those of :func:`md_trajectory`.
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Incar, Kpoints, Poscar

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = dict(MD_INCAR_DEFAULTS)
    settings.update(
        {"SYSTEM": system, "NSW": int(n_steps), "POTIM": float(potim), "TEBEG": float(tebeg), "TEEND": float(tebeg)}
    )
    settings.update(incar or {})
    Incar(settings).write_file(directory / "INCAR")
    structure = AseAtomsAdaptor.get_structure(atoms)
    Poscar(structure, comment=system).write_file(directory / "POSCAR")
    Kpoints.gamma_automatic((1, 1, 1)).write_file(directory / "KPOINTS")
    names, _ = _species_groups(atoms.get_chemical_symbols())
    (directory / "POTCAR.spec").write_text("\n".join(names) + "\n")

    incar_obj = Incar.from_file(directory / "INCAR")
    poscar = Poscar.from_file(directory / "POSCAR", check_for_potcar=False)
    titles = _potcar_titles(directory, len(poscar.site_symbols))
    return write_md_outputs(
        directory,
        incar_obj,
        poscar.structure,
        poscar.site_symbols,
        poscar.natoms,
        titles,
        seed=seed,
        garbage=garbage,
    )


def _echo_ionic_steps(directory: Path, frames) -> int:
    """After an MD or relaxation run: OSZICAR's lines, and a converged relaxation's "reached required
    accuracy" line, on stdout as VASP prints them; returns the exit code 0."""
    print(
        "\n".join(line for line in (directory / "OSZICAR").read_text().splitlines() if not line.startswith("       N"))
    )
    if frames[-1].info.get("relax_converged"):
        print(RELAX_CONVERGED_LINE)
    return 0


def _ionic_params(incar, nions: int, nelect: float, nbands: int, nedos: int, relax: bool = False) -> dict:
    """<parameters> of an MD or (``relax``) relaxation run as VASP reports them (INCAR values override
    the defaults). A relaxation reports EDIFFG (default 10 x EDIFF), which pymatgen's
    ``Vasprun.converged_ionic`` reads."""
    params = {
        "SYSTEM": str(incar.get("SYSTEM", "unknown system")),
        "PREC": "normal",
        "ENMAX": float(incar.get("ENCUT", 400.0)),
        "EDIFF": float(incar.get("EDIFF", 1e-4)),
        "IALGO": 38,
        "NBANDS": nbands,
        "NELECT": nelect,
        "ISMEAR": 1,
        "SIGMA": 0.2,
        "ISTART": 0,
        "ICHARG": 2,
        "ISPIN": 1,
        "LNONCOLLINEAR": False,
        "MAGMOM": [1.0] * nions,
        "LSORBIT": False,
        "NELM": 60,
        "NELMDL": -5,
        "NELMIN": 2,
        "NSW": 0,
        "IBRION": 0,
        "ISIF": 2,
        "PSTRESS": 0.0,
        **({"EDIFFG": 10.0 * float(incar.get("EDIFF", 1e-4))} if relax else {}),
        "POTIM": 0.5,
        "TEBEG": 0.0,
        "TEEND": 0.0,
        "SMASS": -3.0,
        "NBLOCK": 1,
        "KBLOCK": 1,
        "ISYM": 0,
        "LORBIT": 0,
        "NEDOS": nedos,
        "EMIN": EFERMI - 15.0,
        "EMAX": EFERMI + 10.0,
        "EFERMI": 0.0,
        "LWAVE": False,
        "LCHARG": False,
        "LDAU": False,
        "GGA": "PE",
        "LHFCALC": False,
        "LEPSILON": False,
        "LUSE_VDW": False,
    }
    _override_params(params, incar, nions)
    params["KBLOCK"] = int(params.get("NSW", 1)) or 1
    return params


def write_md_outputs(
    directory,
    incar,
    structure,
    site_symbols,
    natoms,
    titles,
    *,
    seed: int = 0,
    garbage: bool = False,
    t0: float | None = None,
) -> list:
    """The MD-mode outputs for the run in ``directory`` (inputs already read); returns the frames
    (:func:`md_trajectory` of NSW steps, POTIM, TEBEG and ``seed``).

    Numbers in the files: vasprun.xml positions (fractional) %.16f, forces %.12f, energies and
    stress %.10f; OUTCAR as VASP prints them (positions %.5f Angstrom, forces %.6f eV/Angstrom,
    energies %.8f eV, stress %.5f kB); XDATCAR fractional %.8f.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.time() if t0 is None else t0
    nsw = int(incar.get("NSW", 0))
    potim = float(incar.get("POTIM", 0.5))
    tebeg = float(incar.get("TEBEG", 0.0))
    frames = md_trajectory(AseAtomsAdaptor.get_atoms(structure), nsw, potim=potim, tebeg=tebeg, seed=seed)
    _write_ionic_outputs(directory, incar, site_symbols, natoms, titles, frames, relax=False, garbage=garbage, t0=t0)
    return frames


def _write_ionic_outputs(
    directory, incar, site_symbols, natoms, titles, frames, *, relax: bool, garbage: bool, t0: float
) -> None:
    """vasprun.xml, XDATCAR, OSZICAR, CONTCAR and OUTCAR of a multi-step run: one ionic step per
    frame (an ase.Atoms with a SinglePointCalculator: energy = energy(sigma->0), forces, stress;
    ``info["entropy_ts"]`` = TS). MD frames (``relax`` False) also carry ``info["ekin"]`` and
    ``info["temperature"]``; relaxation frames ``info["relax_converged"]`` (last frame: the EDIFFG
    criterion was met, so OUTCAR says "reached required accuracy"). CONTCAR is the last frame.
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp import Poscar

    directory = Path(directory)
    system = str(incar.get("SYSTEM", "unknown system")).strip()
    nsw = int(incar.get("NSW", 0))
    potim = float(incar.get("POTIM", 0.5))
    tebeg = float(incar.get("TEBEG", 0.0))
    cell = np.asarray(frames[0].cell[:], dtype=float)
    program = _PROGRAM_RELAX if relax else _PROGRAM_MD

    nions = len(frames[0])
    nelm = int(incar.get("NELM", 60))
    ediff = float(incar.get("EDIFF", 1e-4))
    sigma = float(incar.get("SIGMA", 0.2))
    ismear = int(incar.get("ISMEAR", 1))
    ispin = int(incar.get("ISPIN", 1))
    valence, nelect, nbands, nedos = _electronic_setup(incar, site_symbols, natoms, nions)
    lattice = Lattice(cell)
    species = [s for s, n in zip(site_symbols, natoms) for _ in range(n)]
    structures = [Structure(lattice, species, f.get_scaled_positions(wrap=False)) for f in frames]
    kpoints = _kpoints(directory, incar, structures[0])
    kpts, kweights = kpoints[3], kpoints[4]
    nkpts = len(kpts)
    params = _ionic_params(incar, nions, nelect, nbands, nedos, relax=relax)
    ts = frames[0].info["entropy_ts"]

    now = datetime.now()
    ind = " "
    x = _vasprun_header(program, now, incar, kpoints, params, site_symbols, natoms, valence, titles, ind=ind)
    x.append(_structure_xml(structures[0], "initialpos"))

    scf = []  # electronic steps of every ionic step: energies converging onto E0 (last change < EDIFF)
    for k, (frame, struct) in enumerate(zip(frames, structures)):
        e0 = float(frame.calc.results["energy"])
        steps = [e0 + 0.5 * 0.05**j for j in range(3)] + [e0 + 0.1 * ediff, e0]
        steps = steps[-min(len(steps), max(nelm, 2)) :]
        scf.append(steps)
        x += _calculation_xml(
            [_energy_xml(e, ind + "  ", ts) for e in steps],
            struct,
            frame.calc.results["forces"],
            ase_stress_to_vasp_kbar(frame.calc.results["stress"]),
            _energy_xml(e0, ind + " ", ts, ekin=frame.info.get("ekin")),
            extra=_eigen_dos_xml(nbands, nelect, nkpts, nedos, ind + " ", ispin=ispin) if k == len(frames) - 1 else (),
            ind=ind,
        )
    _write_vasprun(directory, x, structures[-1], garbage)

    # XDATCAR: VASP's fixed-cell layout, header once, a block every NBLOCK ionic steps
    # ("Direct configuration=" + the 1-based number of the step)
    nblock = max(1, int(incar.get("NBLOCK", 1)))
    xd = [system, "           1"]
    xd += [f"    {a:12.6f}{b:12.6f}{c:12.6f}" for a, b, c in cell]
    xd += ["".join(f"   {s:2s}" for s in site_symbols), "".join(f"{n:6d}" for n in natoms)]
    for k, struct in enumerate(structures, start=1):
        if k % nblock:
            continue
        xd.append(f"Direct configuration={k:6d}")
        xd += [f"  {a:11.8f} {b:11.8f} {c:11.8f}" for a, b, c in struct.frac_coords]
    (directory / "XDATCAR").write_text("\n".join(xd) + "\n")

    # OSZICAR: electronic steps, then one line per ionic step (MD: T, E, F, E0, EK; relaxation:
    # F, E0 and the change of F)
    osz = []
    f_prev = 0.0
    for k, (frame, steps) in enumerate(zip(frames, scf), start=1):
        osz += _oszicar_dav([e - ts / 2 for e in steps], nbands)
        e0 = float(frame.calc.results["energy"])
        f_ = e0 - ts / 2
        if relax:
            osz.append(_oszicar_ionic_line(k, f_, e0, f_ - f_prev, ispin))
            f_prev = f_
            continue
        ek = frame.info["ekin"]
        osz.append(
            f"{k:5d} T= {frame.info['temperature']:6.0f}. E= {f_ + ek: .8E} F= {f_: .8E} E0= {e0: .8E}"
            f"  EK= {ek: .5E} SP=  0.00E+00 SK=  0.00E+00" + ("  mag=     0.0000" if ispin == 2 else "")
        )
    (directory / "OSZICAR").write_text("\n".join(osz) + "\n")
    Poscar(structures[-1], comment=system).write_file(directory / "CONTCAR")

    # OUTCAR
    nplwv = 32 * 32 * 32
    encut = float(incar.get("ENCUT", 400.0))
    recip = np.linalg.inv(cell).T
    cell_lines = [
        f"  energy-cutoff  :  {encut:10.2f}",
        f"  volume of cell :  {abs(np.linalg.det(cell)):10.2f}",
        "      direct lattice vectors                 reciprocal lattice vectors",
    ]
    cell_lines += [
        f"    {a[0]:12.9f}{a[1]:13.9f}{a[2]:13.9f}    {b[0]:13.9f}{b[1]:13.9f}{b[2]:13.9f}" for a, b in zip(cell, recip)
    ]
    o = _outcar_banner(program, now)
    o += ["", " INCAR:"]
    o += [f" POTCAR:    {t}" for t in titles]
    o += [""]
    for t in titles:  # VASP lists the POTCARs twice, the second time with their details
        o += [f" POTCAR:    {t}", f"   VRHFIN ={t.split()[1]}:", f"   TITEL  = {t}", ""]
    o += _outcar_dimensions(nkpts, nbands, nedos, nions, nplwv)
    o += ["   ions per type =      " + "".join(f"{n:5d}" for n in natoms), "", " Startparameter for this run:"]
    o += _outcar_parameters(
        system,
        nelm,
        ediff,
        nsw=nsw,
        ibrion=int(incar.get("IBRION", 0)),
        isif=int(incar.get("ISIF", 2)),
        ispin=ispin,
        nelect=nelect,
        ediffg=float(params["EDIFFG"]) if relax else None,
        after_nsw=[f"   NBLOCK = {nblock:6d};   KBLOCK = {nsw:6d}    inner block; outer block"],
        before_nelect=[
            f"   POTIM  = {potim:8.4f}    time-step for ionic-motion",
            f"   TEIN   = {0.0:8.1f}    initial temperature",
            f"   TEBEG  = {tebeg:8.1f};   TEEND  = {float(incar.get('TEEND', tebeg)):8.1f} temperature during run",
            f"   SMASS  = {float(incar.get('SMASS', -3)):6.2f}    Nose mass-parameter (am)",
            f"   ISMEAR = {ismear:6d};   SIGMA  = {sigma:6.2f}  broadening in eV -4-tet -1-fermi 0-gaus",
            f"   ENCUT  = {encut:8.1f} eV",
        ],
    )
    o += cell_lines
    o += ["", " k-points in reciprocal lattice and weights: stand-in"]
    o += [f"   {k[0]:11.8f} {k[1]:11.8f} {k[2]:11.8f}   {w:12.3f}" for k, w in zip(kpts, kweights)]
    o += ["", " position of ions in fractional coordinates (direct lattice)"]
    o += [f"   {a:11.8f} {b:11.8f} {c:11.8f}" for a, b, c in structures[0].frac_coords]
    o += ["", "", "-" * 104, "", ""]
    o += [
        f" k-point {i + 1:3d} :   {k[0]:6.4f}{k[1]:7.4f}{k[2]:7.4f}  plane waves:  {nplwv // 16:6d}"
        for i, k in enumerate(kpts)
    ]
    o += ["", f" maximum and minimum number of plane-waves per node :  {nplwv // 16:8d} {nplwv // 16:8d}", ""]
    for k, (frame, struct, steps) in enumerate(zip(frames, structures, scf), start=1):
        e0 = float(frame.calc.results["energy"])
        f_ = e0 - ts / 2
        for j, e in enumerate(steps, start=1):
            o += _outcar_scf_step(k, j, e, ts, detailed=True)
        o += [
            "",
            "------------------------ aborting loop because EDIFF is reached ----------------------------------------",
            "",
        ]
        o += _outcar_stress(ase_stress_to_vasp_kbar(frame.calc.results["stress"]), "12.5f", "12.2f")
        o += ["", " VOLUME and BASIS-vectors are now :", " " + "-" * 77, *cell_lines, "", ""]
        o += _outcar_forces(struct.cart_coords, frame.calc.results["forces"], "14.6f", "14.6f", drift_column=41)
        o += ["", "", "-" * 104, "", ""]
        o += _outcar_free_energy(f_, e0 + ts / 2, e0, "18.8f")
        if relax:
            continue
        ek = frame.info["ekin"]
        o += [
            "",
            "  ENERGY OF THE ELECTRON-ION-THERMOSTAT SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"% ion-electron   TOTEN  = {f_:18.8f}  see above",
            f"  kinetic energy EKIN   = {ek:18.8f}  (temperature {frame.info['temperature']:8.2f} K)",
            f"  total energy   ETOTAL = {f_ + ek:18.8f} eV",
            "",
        ]
    if relax and frames[-1].info["relax_converged"]:
        o += [RELAX_CONVERGED_LINE, ""]
    if ispin == 2:
        o += _outcar_magnetization(nions)
    o += _outcar_tail(nelect, t0)
    (directory / "OUTCAR").write_text("\n".join(o) + "\n")


# ----------------------------------------------------------------------------------------
# relaxation mode (IBRION = 1, 2 or 3, NSW > 0, ISIF = 2): ASE BFGS at fixed cell
# ----------------------------------------------------------------------------------------
#: electronic entropy term T*S (eV per atom) reported in relaxation mode: below custodian's
#: LargeSigmaHandler tolerance (1 meV/atom), which monitors relaxations with ISMEAR >= 0
RELAX_ENTROPY_PER_ATOM = 0.0005

#: largest atomic displacement (Å) of one BFGS step (ASE's default)
RELAX_MAXSTEP = 0.2


def is_relax_incar(incar) -> bool:
    """True for an ionic-relaxation INCAR: IBRION in (1, 2, 3) and NSW > 0."""
    try:
        return int(incar.get("IBRION", -1)) in (1, 2, 3) and int(incar.get("NSW", 0)) > 0
    except (TypeError, ValueError):
        return False


def standin_calculator():
    """An ASE calculator whose energy, free energy, forces and stress are :func:`reference_results`."""
    from ase.calculators.calculator import Calculator, all_changes

    class StandinCalculator(Calculator):
        implemented_properties = ("energy", "free_energy", "forces", "stress")

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            res = reference_results(self.atoms)
            self.results = {
                "energy": res["energy"],
                "free_energy": res["energy"],
                "forces": res["forces"],
                "stress": res["stress"],
            }

    return StandinCalculator()


def relax_trajectory(
    atoms, nsw: int, ediffg: float | None = None, ediff: float = 1e-4, maxstep: float = RELAX_MAXSTEP
) -> list:
    """Relax the positions of ``atoms`` (not modified) at fixed cell with ASE's BFGS on
    :func:`reference_results`; one frame per ionic step (energy and force evaluation), at most ``nsw``.

    Stops after the first ionic step that meets VASP's EDIFFG criterion (``ediffg`` None: the
    VASP default 10 x ``ediff``):

    * ``ediffg < 0``: every atom's force norm <= |ediffg| (eV/Å);
    * ``ediffg >= 0``: the energy changed by less than ``ediffg`` (eV) since the previous ionic
      step (never on the first; so ``ediffg = 0`` runs all ``nsw`` steps).

    Between steps: one ``BFGS(maxstep=maxstep).step()``. So a run that converges in ASE's
    ``BFGS.run(fmax=|ediffg|)`` after ``opt.nsteps`` updates has ``opt.nsteps + 1`` frames. Frames
    are ase.Atoms (positions wrapped into the cell) whose SinglePointCalculator holds ``energy``
    (= energy(sigma->0), the reference energy), ``free_energy`` (TOTEN = energy - TS/2), ``forces``
    and ``stress``; ``info`` has ``relax_step`` (0-based), ``fmax`` (eV/Å), ``delta_e`` (eV, None on
    the first step), ``relax_converged`` (the criterion is met at this step) and ``entropy_ts``
    (TS = :data:`RELAX_ENTROPY_PER_ATOM` x N, eV).
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import BFGS

    if nsw < 1:
        raise ValueError("nsw must be >= 1")
    ediffg = 10.0 * float(ediff) if ediffg is None else float(ediffg)
    work = atoms.copy()
    work.calc = standin_calculator()
    opt = BFGS(work, logfile=None, maxstep=maxstep)
    ts = RELAX_ENTROPY_PER_ATOM * len(work)
    frames = []
    e_prev = None
    for k in range(nsw):
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(), dtype=float)
        stress = np.array(work.get_stress(voigt=True), dtype=float)
        fmax = float(np.linalg.norm(forces, axis=1).max()) if len(work) else 0.0
        delta_e = None if e_prev is None else energy - e_prev
        if ediffg < 0:
            converged = fmax <= abs(ediffg)
        else:
            converged = delta_e is not None and abs(delta_e) < ediffg
        frame = work.copy()
        frame.set_scaled_positions(work.get_scaled_positions(wrap=True))
        frame.info = {"relax_step": k, "fmax": fmax, "delta_e": delta_e, "relax_converged": converged, "entropy_ts": ts}
        frame.calc = SinglePointCalculator(
            frame, energy=energy, free_energy=energy - ts / 2, forces=forces, stress=stress
        )
        frames.append(frame)
        if converged or k == nsw - 1:
            break
        e_prev = energy
        opt.step()
    return frames


def write_relax_outputs(
    directory,
    incar,
    structure,
    site_symbols,
    natoms,
    titles,
    *,
    garbage: bool = False,
    t0: float | None = None,
) -> list:
    """The relaxation-mode outputs for the run in ``directory`` (inputs already read); returns the
    frames (:func:`relax_trajectory` with NSW, EDIFFG and EDIFF of ``incar``).

    Files and number formats as in MD mode (:func:`write_md_outputs`), one ionic step per frame,
    without MD's kinetic energies; OSZICAR's ionic lines are ``N F= E0= d E =``; when the EDIFFG
    criterion is met OUTCAR ends its last ionic step with :data:`RELAX_CONVERGED_LINE`. CONTCAR
    is the last frame. Raises ValueError (nothing written) unless ISIF is 2 (its default).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.time() if t0 is None else t0
    isif = int(incar.get("ISIF", 2))
    if isif != 2:
        raise ValueError(
            f"the VASP stand-in only relaxes ionic positions at fixed cell (ISIF = 2); got ISIF = {isif}: "
            "relaxations of cell shape or volume (ISIF = 3-8) are not implemented"
        )
    ediffg = incar.get("EDIFFG")
    frames = relax_trajectory(
        AseAtomsAdaptor.get_atoms(structure),
        int(incar.get("NSW", 0)),
        ediffg=None if ediffg is None else float(ediffg),
        ediff=float(incar.get("EDIFF", 1e-4)),
    )
    _write_ionic_outputs(directory, incar, site_symbols, natoms, titles, frames, relax=True, garbage=garbage, t0=t0)
    return frames


def main() -> int:
    """Entry point: run in the current directory."""
    try:
        return run(".")
    except Exception as exc:  # noqa: BLE001 - a real VASP dies loudly too
        print(f"standin: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
