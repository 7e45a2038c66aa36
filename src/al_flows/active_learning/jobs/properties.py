"""Jobs of property convergence (``convergence.properties``): the labeller's reference values,
computed once per campaign and kept in the store, and each round's values computed with every
ensemble member (:mod:`al_flows.validation.properties`, which runs the autotest's own functions)."""

from __future__ import annotations

import time

from al_flows.active_learning.schemas import PropertiesDocument, PropertyReferenceDocument
from al_flows.labelling.ase import calculator_factory
from al_flows.potential.ensemble import Ensemble
from al_flows.validation.properties import (
    PropertyConvergence,
    available_properties,
    property_result,
    property_values,
)
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, field, load_ensemble, model_ids_of

__all__ = ["property_reference", "reference_document", "member_properties"]


@al_job(output_schema=PropertyReferenceDocument)
def property_reference(
    calculator: str, calculator_kwargs: dict, convergence: PropertyConvergence, campaign: str
) -> PropertyReferenceDocument:
    """The labeller's values of the listed properties (computed once: the job's uuid is fixed by
    what it computes, and every round reads this output)."""
    start = time.perf_counter()
    make = calculator_factory(calculator, calculator_kwargs)
    values = {
        element: property_values(element, make, convergence.settings, names)
        for element, names in convergence.names_by_element().items()
    }
    progress.report("property reference", -1, reference=calculator, properties=len(convergence.targets))
    return reference_document(convergence, campaign, calculator, values, time.perf_counter() - start)


def reference_document(
    convergence: PropertyConvergence, campaign: str, reference: str, values: dict, wall_time: float
) -> PropertyReferenceDocument:
    """The PropertyReferenceDocument of ``values`` (``values[element][name]``) computed by ``reference``
    (the labeller's name), keyed and given units by ``convergence``."""
    return PropertyReferenceDocument(
        campaign=campaign,
        reference=reference,
        key=convergence.reference_key(),
        values=values,
        units=available_properties(convergence.settings),
        wall_time=wall_time,
    )


@al_job(output_schema=PropertiesDocument)
def member_properties(
    models: list, reference, convergence: PropertyConvergence, campaign: str, round: int
) -> PropertiesDocument:
    """The listed properties of every member of the round's ensemble (``models``: TrainingDocuments),
    their mean and spread against ``reference`` (the PropertyReferenceDocument)."""
    start = time.perf_counter()
    ensemble = load_ensemble(models)
    members = [Ensemble([m], ensemble.settings, device=str(ensemble.device)) for m in ensemble.members]
    by_element = convergence.names_by_element()
    per_member = [
        {el: property_values(el, member.calculator, convergence.settings, names) for el, names in by_element.items()}
        for member in members
    ]
    ref_values, units = field(reference, "values"), field(reference, "units")
    results = [
        property_result(
            t,
            units[t.name],
            [values[str(t.element)][t.name] for values in per_member],
            ref_values[str(t.element)][t.name],
            convergence.settings,
        )
        for t in convergence.targets
    ]
    within = all(r["within"] for r in results)
    shown = {str(r["property"]): f"{r['mean']:.4g}+-{r['spread']:.2g} (ref {r['reference']:.4g})" for r in results}
    progress.report("properties", round, **shown)
    return PropertiesDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        device=str(ensemble.device),
        results=results,
        within=within,
        reference_key=field(reference, "key"),
        wall_time=time.perf_counter() - start,
    )
