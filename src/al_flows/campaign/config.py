"""Campaign configuration: one YAML file, validated with pydantic.

Every model forbids unknown keys. :func:`load_campaign` turns any validation
problem into a :class:`ConfigError` whose message is one line per problem,
naming the field (dotted path) and what to do about it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from al_flows.pool_study.active_sampling import ActiveSamplingSettings
from al_flows.validation.autotest import AutotestSettings
from al_flows.structures.generators import DPGenInitSettings, RandomCellSettings
from al_flows.exploration.md import NVTSettings, ScheduleSettings
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.structures.multilayer import VARIANTS
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.settings import Settings
from al_flows.exploration.shear import ShearSettings


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message says which field and how to fix it."""


class _Strict(Settings):
    """Campaign settings: unknown keys forbidden (al_flows.settings.Settings)."""


class MultilayerSource(_Strict):
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


class FileSource(_Strict):
    """Structures read with ase.io.read (every frame of the file), path relative to the YAML file."""

    kind: Literal["file"] = "file"
    path: str
    index: str = ":"


class RandomCellSource(RandomCellSettings):
    """ANI-Al (Smith et al.): random disordered orthorhombic cells of the campaign's elements."""

    kind: Literal["random_cells"] = "random_cells"


class DPGenSource(DPGenInitSettings):
    """DP-GEN (Zhang et al.): scaled, perturbed, alloy-decorated fcc/hcp/bcc/sc/diamond cells and
    rigidly displaced halves, of the campaign's elements."""

    kind: Literal["dpgen"] = "dpgen"


StructureSource = Annotated[Union[MultilayerSource, FileSource, RandomCellSource, DPGenSource], Field(discriminator="kind")]


class InitialData(_Strict):
    """Starting structures and how the initial training labels are made from them."""

    structures: list[StructureSource] = Field(min_length=1)
    n_rattled: int = Field(8, ge=0, description="rattled copies labelled per structure")
    label_structures: bool = Field(False, description="also label the starting structures themselves (random cells, DP-GEN sets)")

    @model_validator(mode="after")
    def _some_labels(self):
        if self.n_rattled == 0 and not self.label_structures:
            raise ValueError("initial: n_rattled is 0 and label_structures is false, so nothing would be labelled; set one of them")
        return self
    rattle_sigma: float = Field(0.05, ge=0, description="Angstrom, std of the random displacement")
    strain_max: float = Field(0.02, ge=0, lt=0.5, description="max random isotropic strain of the copies")


class ShearExplorer(ShearSettings):
    """Perturbed stochastic shear (Sprueill et al.) from every starting structure."""

    kind: Literal["shear"] = "shear"
    name: str = "shear"


class LangevinScheduleExplorer(ScheduleSettings):
    """ANI-Al (Smith et al.): Langevin MD from the starting structures with a randomised temperature
    schedule; each trajectory stops when the deviation reaches stop_deviation."""

    kind: Literal["langevin_schedule"] = "langevin_schedule"
    name: str = "langevin"


class MDExplorer(NVTSettings):
    """DP-GEN (Zhang et al.): NVT Langevin MD from every starting structure, temperature raised per round."""

    kind: Literal["md"] = "md"
    name: str = "md"


ExplorerConfig = Annotated[Union[ShearExplorer, LangevinScheduleExplorer, MDExplorer], Field(discriminator="kind")]


class _LabellerBase(_Strict):
    max_force: float = Field(50.0, gt=0, description="eV/Angstrom; larger forces make a label fail")
    min_success_fraction: float = Field(
        0.5, ge=0, le=1, description="a round stops unless at least this fraction of its labels succeeded"
    )


class AseLabeller(_LabellerBase):
    """Label with any ASE calculator: 'emt' or an import path 'package.module.Class'."""

    kind: Literal["ase"] = "ase"
    calculator: str = "emt"
    kwargs: dict[str, Any] = {}


class KpointsOverride(_Strict):
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


class TestSetConfig(_Strict):
    """Fixed test frames, never trained on (each frame's subset: relaxed or nonequilibrium).

    ``mixed`` (default, ASE labellers): shear paths relaxed with the labeller (relaxed) plus
    labeller MD snapshots at ``md_temperatures_K`` and unrelaxed sheared and rattled copies of
    the starting structures (nonequilibrium). ``labeller_shear``: the relaxed shear paths only.
    ``perturbed`` (any labeller, VASP included): single-point labels of rattled and strained
    copies of the starting structures (nonequilibrium)."""

    kind: Literal["mixed", "labeller_shear", "perturbed"] = "mixed"
    n_per_structure: int = Field(4, ge=1, description="perturbed: copies per starting structure")
    rattle_sigma: float = Field(0.05, ge=0, description="perturbed: Angstrom")
    strain_max: float = Field(0.02, ge=0, lt=0.5, description="perturbed: max isotropic strain")
    n_runs: int = Field(1, ge=1, description="mixed, labeller_shear: shear runs per starting structure")
    sigma: float = Field(0.02, ge=0, description="mixed, labeller_shear: Angstrom, perturbation per shear step")
    shear_step: float = Field(0.5, gt=0, description="mixed, labeller_shear: Angstrom per shear step")
    gamma_max: float = Field(0.2, gt=0, description="mixed, labeller_shear: shear strain of the last step")
    fmax: float = Field(0.05, gt=0, description="mixed, labeller_shear: eV/Angstrom, relaxation tolerance")
    max_frames: int = Field(40, ge=1, description="relaxed frames kept at most (drawn at random)")
    md_temperatures_K: list[float] = Field([300.0, 600.0], min_length=1, description="mixed: labeller MD temperatures (K)")
    md_steps: int = Field(200, ge=2, description="mixed: steps per MD run; snapshots come from its second half")
    md_timestep_fs: float = Field(2.0, gt=0, description="mixed: fs")
    md_interval: int = Field(25, ge=1, description="mixed: keep every md_interval-th step")
    n_sheared: int = Field(4, ge=0, description="mixed: unrelaxed sheared and rattled copies per starting structure")
    sheared_sigma: float = Field(0.05, ge=0, description="mixed: Angstrom, rattle of the sheared copies")
    max_nonequilibrium: int = Field(60, ge=1, description="mixed: nonequilibrium frames kept at most (drawn at random)")

    @field_validator("md_temperatures_K")
    @classmethod
    def _positive_temperatures(cls, v):
        if min(v) <= 0:
            raise ValueError("temperatures must be positive (Kelvin)")
        return v


class EmbeddedStore(_Strict):
    """On-disk store (maggma MontyStore, sqlite) in WORKDIR/store."""

    kind: Literal["embedded"] = "embedded"


class MongoStoreConfig(_Strict):
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
            raise ValueError("store: give password or password_env, not both (password_env keeps the password out of files)")
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


class QueuesConfig(_Strict):
    """FireWorks categories (``_category``) of the campaign's jobs, for ``al-flows submit``:
    each worker pulls only its category. Ignored by ``al-flows run``."""

    train: str = "gpu"
    explore: str = "gpu"
    evaluate: str = "gpu"
    label: str = "vasp"
    default: str = "cpu"


class AutotestConfig(AutotestSettings):
    """Judge the final potential against a reference ASE calculator (default: the labeller, when it
    is one): EOS, structure energies vs fcc, elastic constants, vacancy, stacking fault."""

    reference: str | None = Field(None, description="ASE calculator ('emt' or 'pkg.module.Class'); default: the labeller")
    reference_kwargs: dict[str, Any] = {}
    elements: list[str] | None = Field(None, description="elements to test (default: the campaign's)")


class Convergence(_Strict):
    """Stop when the fraction of explored frames that are 'accurate' reaches this."""

    accurate_ratio: float = Field(0.95, gt=0, le=1)


def _check_labeller_elements(field: str, calculator: str, elements: list[str], fix: str | None = None) -> None:
    """ValueError naming ``field`` when the ASE calculator has no parameters for some of ``elements``."""
    from al_flows.frames.checks import labeller_elements, uncovered_elements

    missing = uncovered_elements(calculator, elements)
    if missing:
        covered = ", ".join(sorted(labeller_elements(calculator)))
        names = ", ".join(repr(e) for e in missing)
        fix = fix or (
            f"remove {names} from elements or pick another labeller "
            "(labeller.calculator: an ASE calculator import path such as 'pkg.module.Class', or labeller kind: vasp)"
        )
        raise ValueError(
            f"{field}: {calculator.rpartition('.')[2].upper()} has no parameters for element{'s' if len(missing) > 1 else ''} {names} "
            f"(it covers {covered}); {fix}"
        )


class _CampaignBase(_Strict):
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
        """The settings that define the results, as JSON data: everything but the keys listed
        in :data:`NOT_FINGERPRINTED` (where to store, where and how fast to run, how to handle
        failures, when to stop)."""
        fields = type(self).model_fields
        exclude: dict = {}
        for key, sub in NOT_FINGERPRINTED.items():
            if key not in fields:
                continue
            if sub is True:
                exclude[key] = True
            elif key == "explorers":
                exclude[key] = {"__all__": set(sub)}
            else:
                exclude[key] = set(sub)
        return self.model_dump(mode="json", exclude=exclude)

    def fingerprint(self) -> str:
        """Hash of :meth:`fingerprint_settings`; it names the campaign's jobs and results."""
        return hashlib.sha1(json.dumps(self.fingerprint_settings(), sort_keys=True).encode()).hexdigest()[:16]


# Keys left out of the fingerprint (docs/configuration.md lists them): changing them on an
# existing work directory continues the same campaign. Storage and routing; the device and
# speed settings; failure handling; the VASP command; and when to stop (raising max_rounds or
# changing the convergence target extends a campaign).
NOT_FINGERPRINTED: dict[str, object] = {
    "store": True,
    "queues": True,
    "max_rounds": True,
    "convergence": True,
    "training": ("device", "amp", "divergence_factor", "max_retries", "retry_lr_factor"),
    "explorers": ("batched",),
    "labeller": ("min_success_fraction", "vasp_cmd", "vasp_gamma_cmd", "max_errors", "custodian"),
}


def settings_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key.path: old -> new`` for every value that differs between two settings mappings."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, path)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                out += settings_diff(x, y, f"{path}[{i}]")
        elif a != b:
            out.append(f"{path}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


class CampaignConfig(_CampaignBase):
    """A whole active-learning campaign."""

    initial: InitialData
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    ensemble_size: int = Field(4, ge=2, description="members; deviation needs at least 2")
    explorers: list[ExplorerConfig] = Field(min_length=1)
    selection: SelectionSettings = SelectionSettings()
    labeller: LabellerConfig = AseLabeller()
    test_set: TestSetConfig = TestSetConfig()
    store: StoreConfig = EmbeddedStore()
    queues: QueuesConfig = QueuesConfig()
    max_rounds: int = Field(5, ge=1)
    convergence: Convergence = Convergence()
    autotest: AutotestConfig | None = None

    @model_validator(mode="after")
    def _autotest_reference(self):
        if self.autotest is not None and self.autotest.reference is None and self.labeller.kind != "ase":
            raise ValueError(
                "autotest.reference: the labeller is VASP, which the autotest cannot drive; name an ASE calculator as the reference"
            )
        return self

    @model_validator(mode="after")
    def _test_set_fits_labeller(self):
        if self.test_set.kind in ("mixed", "labeller_shear") and self.labeller.kind != "ase":
            raise ValueError(
                f"test_set: kind {self.test_set.kind} relaxes and runs MD with the labeller, which only ASE labellers can "
                "afford; use test_set: {kind: perturbed}"
            )
        return self

    @model_validator(mode="after")
    def _labeller_covers_elements(self):
        if self.labeller.kind == "ase":
            _check_labeller_elements("labeller.calculator", self.labeller.calculator, self.elements)
        if self.autotest is not None:
            tested = self.autotest.elements or self.elements
            unknown = [e for e in tested if e not in self.elements]
            if unknown:
                raise ValueError(
                    f"autotest.elements: {unknown} not in elements {self.elements}; the potential only knows the campaign's elements: "
                    "remove them from autotest.elements or add them to elements"
                )
            reference = self.autotest.reference or (self.labeller.calculator if self.labeller.kind == "ase" else None)
            if reference is not None:
                field = "autotest.reference" if self.autotest.reference else "labeller.calculator"
                _check_labeller_elements(
                    field, reference, tested,
                    fix="set autotest.reference to a calculator that covers them or list the covered ones in autotest.elements",
                )
        return self

    @model_validator(mode="after")
    def _names_unique(self):
        names = [e.name for e in self.explorers]
        if len(set(names)) != len(names):
            raise ValueError(f"explorers: names must be unique, got {names}")
        return self



# Cu-Ni defect variants of Sprueill et al. (see docs/methods.md).
CUNI_DEFECT_VARIANTS = ["pristine", "VNi(N1)", "VNi(N3)", "VCu(C1)", "VCu(C3)", "2VNi(N1)", "2VCu(C1)"]


class ImportSource(_Strict):
    """Existing labelled frames: a VASP run directory (vasprun.xml / OUTCAR, every ionic step a
    frame; XDATCAR checked against them), a tree of such directories and extxyz files, or one
    file (OUTCAR, vasprun.xml, extxyz). Path relative to the YAML file."""

    kind: Literal["import"] = "import"
    path: str
    stride: int = Field(1, ge=1, description="keep every stride-th ionic step")


class MDSource(_Strict):
    """Frames from NVT molecular dynamics with the labeller (an ASE calculator), as the AIMD set of
    Sprueill et al.: one run per structure and temperature, every interval-th step kept."""

    kind: Literal["md"] = "md"
    structures: list[StructureSource] = Field(min_length=1)
    temperatures_K: list[float] = Field([1000.0, 1500.0], min_length=1)
    n_steps: int = Field(400, ge=1)
    timestep_fs: float = Field(1.0, gt=0)
    interval: int = Field(1, ge=1)

    @field_validator("temperatures_K")
    @classmethod
    def _positive_t(cls, v):
        if min(v) <= 0:
            raise ValueError("temperatures must be positive (Kelvin)")
        return v


class LabellerShearPoolSource(ShearSettings):
    """Frames made the way of Sprueill et al.'s pool: stochastic shear paths relaxed by the labeller
    (an ASE calculator), every optimiser step a frame, plus labeller NVT MD from the relaxed
    structure of every shear step at each of ``md_temperatures_K`` (al_flows.pool_study.shear_pool)."""

    kind: Literal["labeller_shear"] = "labeller_shear"
    structures: list[StructureSource] = Field(min_length=1)
    n_runs: int = Field(1, gt=0, description="labeller shear runs per structure")
    fmax: float = Field(0.01, gt=0, description="eV/Angstrom, relaxation tolerance of the labeller's shear runs")
    md_temperatures_K: list[float] = Field([1000.0, 1500.0], description="MD at each strain (the paper: 1000 K and 1500 K); [] for none")
    md_steps: int = Field(100, ge=0, description="steps of each MD run (0: none)")
    md_timestep_fs: float = Field(1.0, gt=0)
    md_interval: int = Field(10, ge=1, description="keep every md_interval-th MD step")

    @field_validator("md_temperatures_K")
    @classmethod
    def _positive_md_t(cls, v):
        if v and min(v) <= 0:
            raise ValueError("temperatures must be positive (Kelvin)")
        return v


PoolSource = Annotated[Union[ImportSource, MDSource, LabellerShearPoolSource], Field(discriminator="kind")]


class PoolConfig(_Strict):
    """The labelled pool active sampling draws from, and the share held out for testing."""

    sources: list[PoolSource] = Field(min_length=1)
    test_fraction: float = Field(0.1, ge=0, lt=0.5, description="held-out test frames, never trained on")


class BaselinesConfig(_Strict):
    """Static-training baselines of Table I of Sprueill et al., trained with the active run's budget."""

    uniform: bool = True
    active_set: bool = True
    budget: Literal["steps", "epochs"] = "steps"
    validation: Literal["common", "own"] = Field(
        "common", description="common: the uniform baseline is validated on the active run's validation frames (the "
        "paper's 5,000), so every strategy's validation loss is on the same frames; own: its own uniform 8:1 split")


class ShearStudyConfig(ShearSettings):
    """Stochastic shear study (Sprueill et al.) with the active-sampling model: n_runs independent runs
    per system, runs_per_job runs in each job."""

    structures: list[StructureSource] = Field(default_factory=lambda: [MultilayerSource(variants=list(CUNI_DEFECT_VARIANTS))], min_length=1)
    n_runs: int = Field(100, gt=0, description="independent runs per system")
    runs_per_job: int = Field(10, gt=0)
    merge_tol: float = Field(1e-3, ge=0, description="eV; runs whose energies agree this well at every step share a pathway")
    defect_threshold: float = Field(0.1, gt=0, le=1, description="drop of the FCC fraction below the first step's that marks a defect/HCP pathway")


class ValidationConfig(_Strict):
    """Re-check the highest-energy gamma_max NNP minima with the labeller (Fig. 6 of Sprueill et al.)."""

    n_minima: int = Field(21, ge=1)
    fmax: float = Field(0.01, gt=0, description="eV/Angstrom, relaxations with the labeller and the NNP")
    max_steps: int = Field(500, ge=1)
    spurious_tol: float = Field(0.005, gt=0, description="eV/atom; a larger drop on relaxing with the labeller marks a spurious minimum")
    agree_tol: float = Field(0.005, gt=0, description="eV/atom; NNP and labeller single points agree within this")


class PoolStudyConfig(_CampaignBase):
    """Sprueill et al. in full: active sampling over a labelled pool, static baselines, the
    stochastic shear study with the resulting model, and the validation of its minima."""

    workflow: Literal["pool_study"] = "pool_study"
    pool: PoolConfig
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    active_sampling: ActiveSamplingSettings = ActiveSamplingSettings()
    baselines: BaselinesConfig = BaselinesConfig()
    shear_study: ShearStudyConfig | None = None
    validation: ValidationConfig | None = None
    labeller: LabellerConfig = AseLabeller()
    store: StoreConfig = EmbeddedStore()
    queues: QueuesConfig = QueuesConfig()


    @model_validator(mode="after")
    def _md_needs_ase(self):
        md = [i for i, src in enumerate(self.pool.sources) if src.kind in ("md", "labeller_shear")]
        if md and self.labeller.kind != "ase":
            kind = self.pool.sources[md[0]].kind
            raise ValueError(
                f"pool.sources[{md[0]}]: kind {kind} runs the labeller itself (relaxations, molecular dynamics), which must be "
                "an ASE calculator; import VASP runs with kind: import instead"
            )
        return self

    @model_validator(mode="after")
    def _labeller_covers_elements(self):
        # the labeller runs only for MD pool sources and the validation of minima
        uses = any(src.kind in ("md", "labeller_shear") for src in self.pool.sources) or self.validation is not None
        if uses and self.labeller.kind == "ase":
            _check_labeller_elements("labeller.calculator", self.labeller.calculator, self.elements)
        return self

    @model_validator(mode="after")
    def _validation_needs_shear(self):
        if self.validation is not None and self.shear_study is None:
            raise ValueError("validation: checks the shear study's minima; add a shear_study section or remove validation")
        return self



AnyConfig = Union[CampaignConfig, PoolStudyConfig]

_KINDS = ("multilayer", "file", "random_cells", "dpgen", "shear", "langevin_schedule", "ase", "vasp", "embedded", "mongodb", "import", "md",
          "labeller_shear")


def _format_error(err: dict) -> str:
    loc = ""
    for p in err["loc"]:
        if isinstance(p, int):
            loc += f"[{p}]"
        elif not (p in _KINDS or p.startswith("function-")):
            loc += f".{p}" if loc else p
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling (see docs/configuration.md)"
    elif err["type"] == "missing":
        msg = "required; add it (see docs/configuration.md)"
    msg = msg.removeprefix("Value error, ")
    if not loc and re.match(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: ", msg):
        return msg  # a whole-campaign check that names its field itself
    return f"{loc or '<top level>'}: {msg}"


WORKFLOWS = {"active_learning": CampaignConfig, "pool_study": PoolStudyConfig}


def check_imports(config: AnyConfig, source: str = "campaign") -> None:
    """Import every ASE calculator the campaign names (labeller, autotest reference), so that a
    wrong import path fails at validation with one line, not in a job."""
    from al_flows.labelling.ase import calculator_factory

    named = []
    if config.labeller.kind == "ase":
        named.append(("labeller.calculator", config.labeller.calculator))
    autotest = getattr(config, "autotest", None)
    if autotest is not None and autotest.reference is not None:
        named.append(("autotest.reference", autotest.reference))
    for field, spec in named:
        try:
            calculator_factory(spec)
        except ValueError as exc:
            raise ConfigError(f"{source}: {field}: {str(exc).split(': ', 1)[-1]}") from None


def validate_campaign(data: dict, source: str = "campaign", imports: bool = True) -> AnyConfig:
    """Validate a mapping (``workflow:`` active_learning, the default, or pool_study); raise
    ConfigError with one line per problem. ``imports``: also import the named calculators
    (:func:`check_imports`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a mapping of campaign settings, got {type(data).__name__}")
    workflow = data.get("workflow", "active_learning")
    if workflow not in WORKFLOWS:
        raise ConfigError(f"{source}: workflow: unknown workflow {workflow!r}; choose one of {list(WORKFLOWS)}")
    if workflow == "active_learning":
        data = {k: v for k, v in data.items() if k != "workflow"}
    try:
        config = WORKFLOWS[workflow].model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_format_error(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    if imports:
        check_imports(config, source)
    return config


def load_campaign(path: str | Path) -> tuple[AnyConfig, Path]:
    """Read and validate a campaign YAML; return the config and the file's directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such campaign file; pass the path of a campaign YAML (e.g. flows/demo_cuni_emt.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}; fix the file's syntax") from None
    return validate_campaign(data, source=path.name), path.parent.resolve()
