"""Sprueill et al. as one jobflow Flow: pool -> active sampling -> static baselines -> comparison,
and shear runs (parallel jobs) -> pathways -> validation of the minima (the jobs are
:mod:`al_flows.pool_study.pool_jobs`, :mod:`al_flows.pool_study.sampling_jobs`,
:mod:`al_flows.pool_study.shear_jobs` and :mod:`al_flows.pool_study.vasp_validation`).

Every job carries ``metadata = {"campaign": study name, "fingerprint", "round": -1, "stage"}``;
stages: pool, active_sampling, baseline, compare, shear, pathways, validation (VASP: validation_dispatch,
vasp_validation per static/relax job, validation for the collect job).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as dc_field

from jobflow import Flow, Job, Maker

from al_flows.pool_study.config import BaselinesConfig, PoolStudyConfig
from al_flows.pool_study.pool_jobs import PoolMaker
from al_flows.pool_study.sampling_jobs import ActiveSamplingMaker, StaticBaselineMaker, compare_strategies
from al_flows.pool_study.shear_jobs import MinimaValidationMaker, ShearRunsMaker, shear_pathways
from al_flows.pool_study.vasp_validation import VaspMinimaValidationMaker
from al_flows.structures.initial_data import build_structures, given_source
from al_flows.workflow.config import AseLabeller
from al_flows.workflow.jobs import route, stable_uuid

__all__ = ["PoolStudyMaker"]


@dataclass
class PoolStudyMaker(Maker):
    """The whole seed-000 study from a :class:`~al_flows.pool_study.config.PoolStudyConfig`."""

    name: str = "pool study"
    config: PoolStudyConfig | None = None
    base_dir: str = "."
    counts: dict[str, int] = dc_field(default_factory=dict, init=False, repr=False)  # jobs tagged per stage

    def study(self) -> PoolStudyConfig:
        """The study's settings (an error naming the field when missing)."""
        if self.config is None:
            raise ValueError("PoolStudyMaker.config: give the study's PoolStudyConfig")
        return self.config

    def ase_labeller(self) -> AseLabeller:
        """The study's labeller where the labeller itself must run (pool making, ASE validation)."""
        lab = self.study().labeller
        if not isinstance(lab, AseLabeller):
            raise ValueError("labeller: this stage runs the labeller itself; use an ASE labeller (kind: ase)")
        return lab

    def pool_labeller(self) -> AseLabeller:
        """The labeller the pool's MD and labeller-shear sources run. The study's own when it is an
        ASE calculator; with VASP (the config then allows imported sources only) the default, never called."""
        lab = self.study().labeller
        return lab if isinstance(lab, AseLabeller) else AseLabeller()

    def _tag(self, j: Job, stage: str, category: str) -> Job:
        """Metadata, FireWorks category, and a uuid fixed by the job's place in the study (the
        n-th job of its stage), so a run after a crash finds the jobs that had finished."""
        c = self.study()
        n = self.counts.get(stage, 0)
        self.counts[stage] = n + 1
        j.set_uuid(stable_uuid(c.name, c.fingerprint(), -1, stage, n))
        j.update_metadata(
            {"campaign": c.name, "fingerprint": c.fingerprint(), "round": -1, "stage": stage}, dynamic=False
        )
        return route(j, category)

    def make(self, structures=None) -> Flow:
        """The whole study as one Flow; ``structures`` (ASE Atoms or pymatgen Structures), when
        given, replace the structures of the pool source (where it has some) and of the shear study."""
        maker = self.with_structures(structures) if structures is not None else self
        return Flow(list(maker.jobs()), name=f"pool study {maker.study().name}")

    def with_structures(self, structures) -> PoolStudyMaker:
        """A copy whose pool and shear study start from ``structures`` (checked now)."""
        c = self.study()
        source = [given_source(structures, list(c.elements) or None, where="make(structures)")]
        update: dict = {}
        sources = [
            src.model_copy(update={"structures": source}) if "structures" in type(src).model_fields else src
            for src in c.pool.sources
        ]
        if sources != c.pool.sources:
            update["pool"] = c.pool.model_copy(update={"sources": sources})
        if c.shear_study is not None:
            update["shear_study"] = c.shear_study.model_copy(update={"structures": source})
        if not update:
            raise ValueError(
                "make(structures): the pool's sources take no structures (kind import) and there is no shear study"
            )
        return replace(self, config=c.model_copy(update=update))

    def jobs(self) -> list[Job]:
        """All jobs of the study, each tagged before anything refers to its output."""
        c = self.study()
        q = c.queues
        self.counts.clear()
        elements = list(c.elements)
        pool = self._tag(
            PoolMaker(pool=c.pool, labeller=self.pool_labeller(), base_dir=self.base_dir).make(c.name, c.seed),
            "pool",
            q.default,
        )
        active = ActiveSamplingMaker(
            model=c.model, training=c.training, settings=c.active_sampling, elements=elements
        ).make(pool.output, c.name, c.seed)
        self._tag(active, "active_sampling", q.train)  # before active.output is used
        jobs = [pool, active]
        runs = [active.output]
        b: BaselinesConfig = c.baselines
        for strategy in [s for s in ("uniform", "active_set") if getattr(b, s)]:
            maker = StaticBaselineMaker(
                name=f"baseline {strategy}",
                model=c.model,
                training=c.training,
                elements=elements,
                budget=b.budget,
                validation=b.validation,
            )
            base = self._tag(maker.make(pool.output, active.output, strategy, c.name, c.seed), "baseline", q.train)
            jobs.append(base)
            runs.append(base.output)
        jobs.append(self._tag(compare_strategies(c.name, runs), "compare", q.default))
        if c.shear_study is not None:
            s = c.shear_study
            n_systems = len(build_structures(s.structures, self.base_dir, where="shear_study.structures"))
            shear_jobs = []
            for system in range(n_systems):
                for first in range(0, s.n_runs, s.runs_per_job):
                    chunk = list(range(first, min(first + s.runs_per_job, s.n_runs)))
                    sj = ShearRunsMaker(settings=s, base_dir=self.base_dir).make(
                        active.output, system, chunk, c.name, c.seed
                    )
                    shear_jobs.append(self._tag(sj, "shear", q.explore))
            paths = self._tag(
                shear_pathways(c.name, [j.output for j in shear_jobs], s.merge_tol, s.defect_threshold, s.gamma_max),
                "pathways",
                q.default,
            )
            jobs += shear_jobs + [paths]
            if c.validation is not None and c.labeller.kind == "vasp":
                from al_flows.labelling.vasp_inputs import VaspInputSettings, relax_maker, static_maker

                v, lab = c.validation, c.labeller
                vasp = VaspInputSettings.from_mapping(lab.model_dump())
                val = VaspMinimaValidationMaker(
                    settings=v,
                    static_maker=static_maker(vasp),
                    relax_maker=relax_maker(vasp, v.fmax, v.max_steps),
                    labeller_name=f"vasp:{lab.preset}",
                    metadata={"fingerprint": c.fingerprint()},
                    vasp_category=q.label,
                    collect_category=q.default,
                ).make(paths.output, active.output, c.name)
                jobs.append(self._tag(val, "validation_dispatch", q.default))
            elif c.validation is not None:
                val = MinimaValidationMaker(settings=c.validation, labeller=self.ase_labeller()).make(
                    paths.output, active.output, c.name
                )
                jobs.append(self._tag(val, "validation", q.label))
        return jobs
