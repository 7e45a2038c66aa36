"""The sections of a pool-study campaign file (``workflow: pool_study``; Sprueill et al.): the
pool and its sources, the static baselines, the shear study, the validation of its minima,
and the whole :class:`PoolStudyConfig` (shared keys: :mod:`al_flows.workflow.config`).
Every model forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from al_flows.exploration.shear import ShearSettings
from al_flows.pool_study.active_sampling import ActiveSamplingSettings
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.settings import Settings, Temperatures
from al_flows.structures.initial_data import MultilayerSource, StructureSource
from al_flows.workflow.config import (
    AseLabeller,
    CampaignBase,
    EmbeddedStore,
    LabellerConfig,
    QueuesConfig,
    StoreConfig,
    check_labeller_elements,
)

# Cu-Ni defect variants of Sprueill et al. (see docs/methods.md).
CUNI_DEFECT_VARIANTS = ["pristine", "VNi(N1)", "VNi(N3)", "VCu(C1)", "VCu(C3)", "2VNi(N1)", "2VCu(C1)"]


class ImportSource(Settings):
    """Existing labelled frames: a VASP run directory (vasprun.xml / OUTCAR, every ionic step a
    frame; XDATCAR checked against them), a tree of such directories and extxyz files, or one
    file (OUTCAR, vasprun.xml, extxyz). Path relative to the YAML file."""

    kind: Literal["import"] = "import"
    path: str
    stride: int = Field(1, ge=1, description="keep every stride-th ionic step")


class MDSource(Settings):
    """Frames from NVT molecular dynamics with the labeller (an ASE calculator), as the AIMD set of
    Sprueill et al.: one run per structure and temperature, every interval-th step kept."""

    kind: Literal["md"] = "md"
    structures: list[StructureSource] = Field(min_length=1)
    temperatures_K: Temperatures = Field([1000.0, 1500.0], min_length=1)
    n_steps: int = Field(400, ge=1)
    timestep_fs: float = Field(1.0, gt=0)
    interval: int = Field(1, ge=1)


class LabellerShearPoolSource(ShearSettings):
    """Frames made the way of Sprueill et al.'s pool: stochastic shear paths relaxed by the labeller
    (an ASE calculator), every optimiser step a frame, plus labeller NVT MD from the relaxed
    structure of every shear step at each of ``md_temperatures_K`` (al_flows.pool_study.shear_pool)."""

    kind: Literal["labeller_shear"] = "labeller_shear"
    structures: list[StructureSource] = Field(min_length=1)
    n_runs: int = Field(1, gt=0, description="labeller shear runs per structure")
    fmax: float = Field(0.01, gt=0, description="eV/Angstrom, relaxation tolerance of the labeller's shear runs")
    md_temperatures_K: Temperatures = Field(
        [1000.0, 1500.0], description="MD at each strain (the paper: 1000 K and 1500 K); [] for none"
    )
    md_steps: int = Field(100, ge=0, description="steps of each MD run (0: none)")
    md_timestep_fs: float = Field(1.0, gt=0)
    md_interval: int = Field(10, ge=1, description="keep every md_interval-th MD step")


PoolSource = Annotated[Union[ImportSource, MDSource, LabellerShearPoolSource], Field(discriminator="kind")]


class PoolConfig(Settings):
    """The labelled pool active sampling draws from, and the share held out for testing."""

    sources: list[PoolSource] = Field(min_length=1)
    test_fraction: float = Field(0.1, ge=0, lt=0.5, description="held-out test frames, never trained on")


class BaselinesConfig(Settings):
    """Static-training baselines of Table I of Sprueill et al., trained with the active run's budget."""

    uniform: bool = True
    active_set: bool = True
    budget: Literal["steps", "epochs"] = "steps"
    validation: Literal["common", "own"] = Field(
        "common",
        description="common: the uniform baseline is validated on the active run's validation frames (the "
        "paper's 5,000), so every strategy's validation loss is on the same frames; own: its own uniform 8:1 split",
    )


def _cuni_multilayers() -> list[StructureSource]:
    """The default structures of a shear study: the Cu-Ni multilayer in every defect variant."""
    return [MultilayerSource(variants=list(CUNI_DEFECT_VARIANTS))]


class ShearStudyConfig(ShearSettings):
    """Stochastic shear study (Sprueill et al.) with the active-sampling model: n_runs independent runs
    per system, runs_per_job runs in each job."""

    structures: list[StructureSource] = Field(default_factory=_cuni_multilayers, min_length=1)
    n_runs: int = Field(100, gt=0, description="independent runs per system")
    runs_per_job: int = Field(10, gt=0)
    merge_tol: float = Field(
        1e-3, ge=0, description="eV; runs whose energies agree this well at every step share a pathway"
    )
    defect_threshold: float = Field(
        0.1, gt=0, le=1, description="drop of the FCC fraction below the first step's that marks a defect/HCP pathway"
    )


class ValidationConfig(Settings):
    """Re-check the highest-energy gamma_max NNP minima with the labeller (Fig. 6 of Sprueill et al.)."""

    n_minima: int = Field(21, ge=1)
    fmax: float = Field(0.01, gt=0, description="eV/Angstrom, relaxations with the labeller and the NNP")
    max_steps: int = Field(500, ge=1)
    spurious_tol: float = Field(
        0.005, gt=0, description="eV/atom; a larger drop on relaxing with the labeller marks a spurious minimum"
    )
    agree_tol: float = Field(0.005, gt=0, description="eV/atom; NNP and labeller single points agree within this")


class PoolStudyConfig(CampaignBase):
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
                f"pool.sources[{md[0]}]: kind {kind} runs the labeller itself (relaxations, molecular dynamics), which "
                "must be an ASE calculator; import VASP runs with kind: import instead"
            )
        return self

    @model_validator(mode="after")
    def _no_warm_start(self):
        if self.training.warm_start:
            raise ValueError(
                "training.warm_start: starts active-learning rounds from the round before; a pool study's active "
                "sampling trains its one model on already, remove warm_start"
            )
        return self

    @model_validator(mode="after")
    def _no_budget(self):
        if self.labeller.budget is not None:
            raise ValueError(
                "labeller.budget: limits the labels of active-learning rounds; a pool study labels its pool as "
                "configured, remove budget"
            )
        return self

    @model_validator(mode="after")
    def _labeller_covers_elements(self):
        # the labeller runs only for MD pool sources and the validation of minima
        uses = any(src.kind in ("md", "labeller_shear") for src in self.pool.sources) or self.validation is not None
        lab = self.labeller
        if uses and lab.kind == "ase":
            field = "labeller.potential" if lab.potential is not None else "labeller.calculator"
            kwargs = {"potential": lab.potential_path} if lab.potential_path else None
            check_labeller_elements(field, lab.calculator, self.elements, kwargs=kwargs)
        return self

    @model_validator(mode="after")
    def _validation_needs_shear(self):
        if self.validation is not None and self.shear_study is None:
            raise ValueError(
                "validation: checks the shear study's minima; add a shear_study section or remove validation"
            )
        return self
