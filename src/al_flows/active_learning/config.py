"""The sections of an active-learning campaign file (``workflow: active_learning``, the default):
initial data, explorers, test set, autotest, convergence, and the whole :class:`CampaignConfig`
(shared keys: :mod:`al_flows.workflow.config`). Every model forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from al_flows.active_learning.stop_policy import (
    DEFAULT_ACCURATE_RATIO,
    DEFAULT_MAX_ROUNDS,
    ErrorBoundTarget,
    StopPolicy,
)
from al_flows.exploration.md import NVTSettings, ScheduleSettings, stage_count
from al_flows.exploration.shear import ShearSettings
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.settings import Settings, Temperatures
from al_flows.structures.initial_data import StructureSource
from al_flows.validation.autotest import AutotestSettings
from al_flows.validation.properties import (
    PropertyConvergence,
    PropertyTarget,
    available_properties,
    check_vasp_properties,
)
from al_flows.workflow.config import (
    AseLabeller,
    CampaignBase,
    EmbeddedStore,
    KpointsOverride,
    LabellerConfig,
    QueuesConfig,
    StoreConfig,
    check_labeller_elements,
)

DEFAULT_ENSEMBLE_SIZE = 4  # members of the ensemble, unless a campaign sets ensemble_size


class InitialCopies(Settings):
    """How the initial training labels are made from the starting structures (rattled, strained
    copies and optionally the structures themselves); the structures come from elsewhere (the
    structures given to ``ActiveLearningMaker.make``)."""

    n_rattled: int = Field(8, ge=0, description="rattled copies labelled per structure")
    label_structures: bool = Field(
        False, description="also label the starting structures themselves (random cells, DP-GEN sets)"
    )

    @model_validator(mode="after")
    def _some_labels(self):
        if self.n_rattled == 0 and not self.label_structures:
            raise ValueError(
                "initial: n_rattled is 0 and label_structures is false, so nothing would be labelled; set one of them"
            )
        return self

    rattle_sigma: float = Field(0.05, ge=0, description="Angstrom, std of the random displacement")
    strain_max: float = Field(0.02, ge=0, lt=0.5, description="max random isotropic strain of the copies")


class InitialData(InitialCopies):
    """Starting structures (the ``initial.structures`` sources of a campaign file) and how the
    initial training labels are made from them."""

    structures: list[StructureSource] = Field(min_length=1)


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


class TestSetConfig(Settings):
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
    md_temperatures_K: Temperatures = Field(
        [300.0, 600.0], min_length=1, description="mixed: labeller MD temperatures (K)"
    )
    md_steps: int = Field(200, ge=2, description="mixed: steps per MD run; snapshots come from its second half")
    md_timestep_fs: float = Field(2.0, gt=0, description="mixed: fs")
    md_interval: int = Field(25, ge=1, description="mixed: keep every md_interval-th step")
    n_sheared: int = Field(4, ge=0, description="mixed: unrelaxed sheared and rattled copies per starting structure")
    sheared_sigma: float = Field(0.05, ge=0, description="mixed: Angstrom, rattle of the sheared copies")
    max_nonequilibrium: int = Field(60, ge=1, description="mixed: nonequilibrium frames kept at most (drawn at random)")

    @model_validator(mode="after")
    def _perturbed_copies_differ(self):
        if self.kind == "perturbed" and self.rattle_sigma == 0 and self.strain_max == 0:
            raise ValueError(
                "with kind perturbed, rattle_sigma and strain_max are both 0, so every test frame would be "
                "a starting structure itself (which may be trained on); set rattle_sigma > 0 (e.g. 0.05 Angstrom)"
            )
        return self


class AutotestConfig(AutotestSettings):
    """Judge the final potential against a reference ASE calculator (default: the labeller, when it
    is one): EOS, structure energies vs fcc, elastic constants, vacancy, stacking fault."""

    reference: str | None = Field(
        None, description="ASE calculator ('emt' or 'pkg.module.Class'); default: the labeller"
    )
    reference_kwargs: dict[str, Any] = {}
    elements: list[str] | None = Field(None, description="elements to test (default: the campaign's)")


class Convergence(Settings):
    """When a campaign has converged: every target that is set is met in a round (at least one set);
    with ``mode: properties`` the listed properties alone decide."""

    accurate_ratio: float | None = Field(
        DEFAULT_ACCURATE_RATIO,
        gt=0,
        le=1,
        description="fraction of a round's explored frames that are accurate; null: no such target",
    )
    survival_time_ps: float | None = Field(
        None,
        gt=0,
        description="ps; the median time a round's langevin_schedule trajectories run before they stop (ANI-Al's "
        "test: trajectories survive long without tripping the threshold)",
    )
    properties: list[PropertyTarget] = Field(
        [],
        description="autotest properties computed with every member each round; each must be within its tolerance "
        "of the labeller's value (ensemble mean) with a spread over the members below it",
    )
    mode: Literal["all", "properties"] = Field(
        "all", description="all: the properties and the other targets; properties: the properties alone"
    )
    error_bound: ErrorBoundTarget | None = Field(
        None,
        description="the calibrated error bound of the explored frames below a target (target eV/Angstrom, fraction, "
        "rounds in a row, coverage); with accurate_ratio: null it replaces the deviation count",
    )
    reference_kpoints: KpointsOverride | None = Field(
        None,
        description="VASP labeller: k-points of the properties' reference (atomate2's EOS and elastic flows on a "
        "one-atom cell); default reciprocal_density 300",
    )

    @model_validator(mode="after")
    def _some_target(self):
        if self.mode == "properties" and not self.properties:
            raise ValueError("mode: properties needs a list of properties; list some or use mode: all")
        targets = (self.accurate_ratio, self.survival_time_ps, self.error_bound)
        if all(t is None for t in targets) and not self.properties:
            raise ValueError(
                "convergence: accurate_ratio and survival_time_ps are both null, no properties are listed and no "
                "error_bound is set; set at least one"
            )
        return self


class CampaignConfig(CampaignBase):
    """A whole active-learning campaign."""

    initial: InitialData
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    ensemble_size: int = Field(DEFAULT_ENSEMBLE_SIZE, ge=2, description="members; deviation needs at least 2")
    explorers: list[ExplorerConfig] = Field(min_length=1)
    selection: SelectionSettings = SelectionSettings()
    labeller: LabellerConfig = AseLabeller()
    test_set: TestSetConfig = TestSetConfig()
    store: StoreConfig = EmbeddedStore()
    queues: QueuesConfig = QueuesConfig()
    max_rounds: int = Field(DEFAULT_MAX_ROUNDS, ge=1)
    convergence: Convergence = Convergence()
    autotest: AutotestConfig | None = None

    @model_validator(mode="after")
    def _autotest_reference(self):
        if self.autotest is not None and self.autotest.reference is None and self.labeller.kind != "ase":
            raise ValueError(
                "autotest.reference: the labeller is VASP, which the autotest cannot drive; name an ASE calculator as "
                "the reference"
            )
        return self

    @model_validator(mode="after")
    def _core_hours_need_vasp(self):
        budget = self.labeller.budget
        if budget is not None and budget.limits_core_hours and self.labeller.kind != "vasp":
            name = "core_hours_per_round" if budget.core_hours_per_round is not None else "core_hours_total"
            raise ValueError(
                f"labeller.budget.{name}: core-hours are counted from VASP runs' timings, and this labeller is "
                f"{self.labeller.kind}; limit labels_per_round / labels_total instead"
            )
        return self

    @model_validator(mode="after")
    def _test_set_fits_labeller(self):
        if self.test_set.kind in ("mixed", "labeller_shear") and self.labeller.kind != "ase":
            raise ValueError(
                f"test_set: kind {self.test_set.kind} relaxes and runs MD with the labeller, which only ASE labellers "
                "can afford; use test_set: {kind: perturbed}"
            )
        return self

    @model_validator(mode="after")
    def _labeller_covers_elements(self):
        lab = self.labeller
        lab_kwargs = None
        if lab.kind == "ase":
            lab_kwargs = {"potential": lab.potential_path} if lab.potential_path else dict(lab.kwargs)
            field = "labeller.potential" if lab.potential is not None else "labeller.calculator"
            check_labeller_elements(field, lab.calculator, self.elements, kwargs=lab_kwargs)
        if self.autotest is not None:
            tested = self.autotest.elements or self.elements
            unknown = [e for e in tested if e not in self.elements]
            if unknown:
                raise ValueError(
                    f"autotest.elements: {unknown} not in elements {self.elements}; the potential only knows the "
                    "campaign's elements: remove them from autotest.elements or add them to elements"
                )
            reference = self.autotest.reference or (lab.calculator if lab.kind == "ase" else None)
            if reference is not None:
                if self.autotest.reference:
                    is_eam = reference.lower() == "eam"
                    field = "autotest.reference_kwargs.potential" if is_eam else "autotest.reference"
                    kwargs = self.autotest.reference_kwargs
                else:
                    field = "labeller.potential" if lab.kind == "ase" and lab.potential else "labeller.calculator"
                    kwargs = lab_kwargs
                check_labeller_elements(
                    field,
                    reference,
                    tested,
                    fix="set autotest.reference to a calculator that covers them or list the covered ones in "
                    "autotest.elements",
                    kwargs=kwargs,
                )
        return self

    def stop_policy(self) -> StopPolicy:
        """The campaign's when-to-stop settings (``max_rounds``, ``convergence``, ``labeller.budget``) as
        its stop policy; the Maker adds the explorers' stages."""
        return StopPolicy(
            max_rounds=self.max_rounds,
            accurate_ratio=self.convergence.accurate_ratio,
            survival_time_ps=self.convergence.survival_time_ps,
            properties=self.property_convergence(),
            budget=self.labeller.budget,
            error_bound=self.convergence.error_bound,
        )

    def property_settings(self) -> AutotestSettings:
        """The autotest settings that compute ``convergence.properties`` (the ``autotest`` section's, else the
        defaults)."""
        if self.autotest is None:
            return AutotestSettings()
        return AutotestSettings(**self.autotest.model_dump(include=set(AutotestSettings.model_fields)))

    def property_convergence(self) -> PropertyConvergence | None:
        """``convergence.properties`` resolved (element: the campaign's when it has one), with the autotest
        settings that compute and judge them; None when none are listed."""
        c = self.convergence
        if not c.properties:
            return None
        # a target without its own tolerance is judged as the autotest judges its row (absolute or
        # relative, whichever is tighter, and the sign): al_flows.validation.properties.verdict
        targets = [t.model_copy(update={"element": t.element or self.elements[0]}) for t in c.properties]
        return PropertyConvergence(targets=targets, mode=c.mode, settings=self.property_settings())

    @model_validator(mode="after")
    def _convergence_properties(self):
        props = self.convergence.properties
        if self.convergence.reference_kpoints is not None and not (props and self.labeller.kind == "vasp"):
            raise ValueError(
                "convergence.reference_kpoints: only the VASP reference of convergence.properties uses k-points; "
                "remove it"
            )
        if not props:
            return self
        if self.labeller.kind == "vasp":
            check_vasp_properties([t.name for t in props], self.property_settings().lattice)
        known = available_properties(self.property_settings())
        for i, t in enumerate(props):
            if t.name not in known:
                raise ValueError(
                    f"convergence.properties[{i}].name: {t.name!r} is not an autotest property with this campaign's "
                    f"autotest settings; use one of {list(known)}"
                )
            if t.element is None and len(self.elements) > 1:
                raise ValueError(
                    f"convergence.properties[{i}].element: not set and the campaign has elements {self.elements}; "
                    "name one"
                )
            if t.element is not None and t.element not in self.elements:
                raise ValueError(
                    f"convergence.properties[{i}].element: {t.element!r} is not in elements {self.elements}; the "
                    "potential only knows the campaign's elements"
                )
        keys = [(t.element or self.elements[0], t.name) for t in props]
        twice = sorted({f"{el} {name}" for el, name in keys if keys.count((el, name)) > 1})
        if twice:
            raise ValueError(f"convergence.properties: {twice} listed twice; list each property of an element once")
        return self

    @model_validator(mode="after")
    def _survival_target_reachable(self):
        target = self.convergence.survival_time_ps
        if target is None:
            return self
        runs = [e for e in self.explorers if isinstance(e, LangevinScheduleExplorer)]
        if not runs:
            raise ValueError(
                "convergence.survival_time_ps: no langevin_schedule explorer measures survival times; add one or "
                "remove survival_time_ps"
            )
        t_max = max(e.t_max_ps for e in runs)
        if target > t_max:
            raise ValueError(
                f"convergence.survival_time_ps ({target}) exceeds every langevin_schedule explorer's t_max_ps "
                f"({t_max}), so it can never be met; lower it or raise t_max_ps"
            )
        return self

    @model_validator(mode="after")
    def _one_staged_explorer(self):
        staged = [e.name for e in self.explorers if stage_count(e) > 1]
        if len(staged) > 1:
            raise ValueError(
                f"explorers: {staged} all have stages or a schedule, but the campaign moves through one list of "
                "stages; give stages or a schedule to one explorer"
            )
        return self

    @model_validator(mode="after")
    def _names_unique(self):
        names = [e.name for e in self.explorers]
        if len(set(names)) != len(names):
            raise ValueError(f"explorers: names must be unique, got {names}")
        return self
