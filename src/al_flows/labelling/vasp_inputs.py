"""VASP input presets for labelling, built on atomate2's own StaticMaker.

Presets (any INCAR tag, the k-points and POTCARs can be overridden from the campaign):

- ``pnnl-cuni``: the DFT settings of Sprueill et al. -- PBE, PAW (standard ``Cu`` and ``Ni`` POTCARs:
  ENCUT 295.4 eV is the ENMAX of the standard Cu PAW), Gamma point only, ISPIN 1,
  EDIFF 1e-4 eV. Smearing is not given in the paper: Methfessel-Paxton order 1 with
  SIGMA 0.1 eV, a common choice for these metals.
- ``mp``: Materials Project compatible GGA static settings (atomate2's
  ``MPGGAStaticMaker`` input set).

Structures are never re-sorted (``sort_structure=False``) so the atoms of a TaskDoc are
in the order of the frame that was labelled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pymatgen.io.vasp import Kpoints

PNNL_CUNI_INCAR = {
    "GGA": "PE",
    "ENCUT": 295.4,
    "PREC": "Accurate",
    "ISPIN": 1,
    "EDIFF": 1e-4,
    "ISMEAR": 1,
    "SIGMA": 0.1,
    "NELM": 100,
    "ALGO": "Normal",
    "LREAL": False,
    "LASPH": False,
    "LWAVE": False,
    "LCHARG": False,
    "IBRION": -1,
    "NSW": 0,
    "MAGMOM": None,
    "LORBIT": None,
    "KSPACING": None,
    "LAECHG": False,  # atomate2's static set writes AECCAR/LOCPOT files; labels need neither
    "LVTOT": False,
    "LELF": False,
}
PNNL_CUNI_POTCARS = {"Cu": "Cu", "Ni": "Ni"}

# Settings that change what a label means; everything else (commands, retries) does not.
_OPERATIONAL = {
    "vasp_cmd",
    "vasp_gamma_cmd",
    "max_errors",
    "custodian",
    "min_success_fraction",
    "allow_mixed_settings",
    "max_force",
    "potcar_spec",
    "budget",
}


def label_settings_id(labeller) -> str:
    """Fingerprint of the settings that define a label (``vasp:``/``ase:`` + 12 hex chars). An EAM
    labeller's potential file counts by its name and sha256 (not where it lies)."""
    d = labeller.model_dump(mode="json", exclude=_OPERATIONAL | {"potential_path"})
    for key in ("potential", "potential_sha256"):  # absent before EAM labellers: EMT ids unchanged
        if key in d and d[key] is None:
            del d[key]
    file = labeller.label_file() if labeller.kind == "ase" else None
    if file is not None:
        d["potential"], d["potential_sha256"] = file["name"], file["sha256"]
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    name = labeller.preset if labeller.kind == "vasp" else labeller.calculator
    return f"{labeller.kind}:{name}:{digest}"


@dataclass(frozen=True)
class VaspInputSettings:
    """What the VASP Makers of a labeller are built from: the fields of a campaign file's VASP
    labeller (``labeller: {kind: vasp, ...}``) that say what VASP is given and how it is run.

    ``preset``: ``pnnl-cuni`` or ``mp`` (module doc); ``incar`` / ``potcar``: tags and POTCARs over
    the preset's; ``kpoints``: ``{"grid": (a, b, c)}`` (Gamma-centred) or ``{"reciprocal_density": x}``
    (None: the preset's); ``potcar_functional``: None for the preset's; ``potcar_spec``: write
    POTCAR.spec instead of POTCARs; ``vasp_cmd`` / ``vasp_gamma_cmd``: None for atomate2's;
    ``max_errors`` and ``custodian``: custodian's error budget and keyword arguments."""

    preset: str = "pnnl-cuni"
    incar: Mapping[str, Any] = field(default_factory=dict)
    kpoints: Mapping[str, Any] | None = None
    potcar: Mapping[str, str] = field(default_factory=dict)
    potcar_functional: str | None = None
    potcar_spec: bool = False
    vasp_cmd: str | None = None
    vasp_gamma_cmd: str | None = None
    max_errors: int = 5
    custodian: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> VaspInputSettings:
        """The settings named in ``values`` (e.g. a VASP labeller's ``model_dump()``); other keys
        (``kind``, ``max_force``, ...) are not VASP inputs and are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _kpoints(override: Mapping[str, Any] | None) -> Kpoints | dict | None:
    """A Gamma-centred Kpoints of ``override["grid"]``, else atomate2's ``{"reciprocal_density": x}``."""
    if override is None:
        return None
    if override.get("grid") is not None:
        return Kpoints.gamma_automatic(tuple(override["grid"]))
    return {"reciprocal_density": override["reciprocal_density"]}


def static_maker(settings: VaspInputSettings):
    """atomate2 StaticMaker with the labeller's VASP ``settings`` (preset + overrides)."""
    return _vasp_maker(settings, relax=None)


def relax_maker(settings: VaspInputSettings, fmax: float, max_steps: int):
    """atomate2 RelaxMaker with the labeller's VASP ``settings``, relaxing the ionic positions at
    fixed cell (IBRION 2, ISIF 2, EDIFFG = -fmax eV/Angstrom, NSW = max_steps)."""
    return _vasp_maker(settings, relax={"IBRION": 2, "ISIF": 2, "EDIFFG": -abs(float(fmax)), "NSW": int(max_steps)})


def _vasp_maker(settings: VaspInputSettings, relax: dict | None):
    from atomate2.vasp.jobs.base import BaseVaspMaker
    from atomate2.vasp.jobs.core import RelaxMaker, StaticMaker
    from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
    from atomate2.vasp.sets.core import RelaxSetGenerator, StaticSetGenerator

    name = "vasp relax" if relax else "vasp static"
    maker: BaseVaspMaker
    if settings.preset == "pnnl-cuni":
        incar = {**PNNL_CUNI_INCAR, **settings.incar, **(relax or {})}
        kpoints = _kpoints(settings.kpoints) or Kpoints.gamma_automatic((1, 1, 1))
        generator = (RelaxSetGenerator if relax else StaticSetGenerator)(
            user_incar_settings=incar,
            # atomate2 annotates ``user_kpoints_settings: dict`` but takes a Kpoints as well (its docstring)
            user_kpoints_settings=kpoints,  # type: ignore[arg-type]
            user_potcar_settings={**PNNL_CUNI_POTCARS, **settings.potcar},
            # a str here (the campaign file's); pymatgen checks it against the functionals it names
            user_potcar_functional=settings.potcar_functional or "PBE_54",  # type: ignore[arg-type]
            sort_structure=False,
            auto_ispin=False,
            auto_ismear=False,
        )
        maker = (RelaxMaker if relax else StaticMaker)(name=name, input_set_generator=generator)
    else:
        base = MPGGARelaxMaker() if relax else MPGGAStaticMaker()
        gen = base.input_set_generator
        kwargs: dict[str, Any] = dict(
            user_incar_settings={**gen.user_incar_settings, **settings.incar, **(relax or {})},
            user_potcar_settings={**gen.user_potcar_settings, **settings.potcar},
            sort_structure=False,
        )
        if settings.kpoints is not None:
            kwargs["user_kpoints_settings"] = _kpoints(settings.kpoints)
        if settings.potcar_functional:
            kwargs["user_potcar_functional"] = settings.potcar_functional
        maker = replace(base, name=name, input_set_generator=replace(gen, **kwargs))

    run_vasp_kwargs = {"max_errors": settings.max_errors, "custodian_kwargs": dict(settings.custodian)}
    if settings.vasp_cmd:
        run_vasp_kwargs["vasp_cmd"] = settings.vasp_cmd
    if settings.vasp_gamma_cmd:
        run_vasp_kwargs["vasp_gamma_cmd"] = settings.vasp_gamma_cmd
    return replace(
        maker,
        run_vasp_kwargs=run_vasp_kwargs,
        write_input_set_kwargs={"potcar_spec": True} if settings.potcar_spec else {},
        # an unconverged or otherwise unsuccessful calculation completes with its TaskDoc
        # (state "unsuccessful") so the label is recorded as failed with its reason
        stop_children_kwargs={"handle_unsuccessful": False},
    )


def with_system_tag(maker, system: str):
    """Copy of a VASP Maker whose INCAR carries ``SYSTEM = system`` (the frame id)."""
    gen = maker.input_set_generator
    return replace(
        maker, input_set_generator=replace(gen, user_incar_settings={**gen.user_incar_settings, "SYSTEM": system})
    )


# INCAR tags that say how the ions move; a labeller's static tags never override a relaxation's.
_IONIC_TAGS = frozenset({"IBRION", "ISIF", "NSW", "EDIFFG", "POTIM"})

#: k-points of the property reference when the campaign names none: 300 k-points per reciprocal
#: Angstrom^3 (about 18x18x18 for a one-atom fcc Cu cell; atomate2's elastic relaxations use
#: 7000 k-points per reciprocal atom, about 19x19x19 for the same cell).
REFERENCE_KPOINTS = {"reciprocal_density": 300}


def property_reference_makers(static, kpoints: Mapping[str, Any] | Kpoints | None = None):
    """atomate2's EOS and elastic Makers (``EosMaker`` without its initial relaxation, ``ElasticMaker``
    without its bulk relaxation) with the DFT settings of the labeller's StaticMaker ``static``
    (functional, cutoff, smearing, POTCARs, commands, custodian), so the reference values of the
    convergence properties mean what the labels mean. Each deformed cell relaxes its ions at fixed
    cell (ISIF 2, atomate2's own ionic tags). ``kpoints``: a dict with ``grid`` or
    ``reciprocal_density`` (as :class:`VaspInputSettings`' ``kpoints``), or a pymatgen Kpoints
    (default :data:`REFERENCE_KPOINTS`: the labels' k-points suit large cells, not the one-atom
    cells here)."""
    from atomate2.vasp.flows.elastic import ElasticMaker
    from atomate2.vasp.flows.eos import EosMaker

    if isinstance(kpoints, Mapping):
        kpoints = _kpoints(kpoints)
    # atomate2 annotates ``initial_relax_maker: Maker`` but documents None (no initial relaxation)
    eos = EosMaker(initial_relax_maker=None)  # type: ignore[arg-type]
    elastic = ElasticMaker(bulk_relax_maker=None)
    return (
        replace(eos, eos_relax_maker=_with_static_settings(eos.eos_relax_maker, static, kpoints)),
        replace(elastic, elastic_relax_maker=_with_static_settings(elastic.elastic_relax_maker, static, kpoints)),
    )


def _with_static_settings(relax, static, kpoints):
    """The relaxation Maker ``relax`` with ``static``'s electronic settings, POTCARs and run settings,
    its own ionic tags, and ``kpoints``."""
    own, lab = relax.input_set_generator, static.input_set_generator
    incar = {k: v for k, v in lab.user_incar_settings.items() if k not in _IONIC_TAGS and k != "SYSTEM"}
    ionic = {k: v for k, v in own.user_incar_settings.items() if k in _IONIC_TAGS}
    generator = replace(
        own,
        user_incar_settings={**own.user_incar_settings, **incar, **ionic},
        user_kpoints_settings=kpoints if kpoints is not None else dict(REFERENCE_KPOINTS),
        user_potcar_settings=dict(lab.user_potcar_settings),
        user_potcar_functional=lab.user_potcar_functional,
        sort_structure=False,
        auto_ispin=getattr(lab, "auto_ispin", False),
        auto_ismear=getattr(lab, "auto_ismear", False),
    )
    return replace(
        relax,
        input_set_generator=generator,
        run_vasp_kwargs=dict(static.run_vasp_kwargs),
        write_input_set_kwargs=dict(static.write_input_set_kwargs),
        stop_children_kwargs={},
    )
