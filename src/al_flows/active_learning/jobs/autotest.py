"""Autotest of a campaign's final potential: the last trained round's ensemble (mean energy and
forces) against a reference ASE calculator, per element (:mod:`al_flows.validation.autotest`)."""

from __future__ import annotations

import time

from jobflow import CURRENT_JOB

from al_flows.active_learning.schemas import AutotestDocument
from al_flows.labelling.ase import calculator_factory
from al_flows.validation.autotest import autotest, autotest_table_markdown
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, latest_outputs, load_ensemble, model_ids_of


def final_models(store, campaign: str, round_: int) -> list[dict]:
    """TrainingDocuments (with weights) of the members trained in round ``round_``, by member."""
    docs = latest_outputs(store, campaign, "train", {"metadata.round": round_}, load=True)
    by_member = {d["output"]["member"]: d["output"] for d in docs}
    return [by_member[m] for m in sorted(by_member)]


@al_job(output_schema=AutotestDocument)
def autotest_job(campaign: str, final_round: int, settings, elements: list[str]) -> AutotestDocument:
    """Run the autotest on the ensemble of ``final_round`` (read from the store)."""
    start = time.perf_counter()
    models = final_models(CURRENT_JOB.store, campaign, final_round)
    if not models:
        raise RuntimeError(f"autotest: no trained models of round {final_round} in the store")
    ensemble = load_ensemble(models)
    make_model = ensemble.calculator
    make_reference = calculator_factory(settings.reference, settings.reference_kwargs)
    results, rows = {}, []
    for element in settings.elements or elements:
        progress.report("autotest", final_round, element=element)
        res = autotest(element, make_reference, make_model, settings)
        results[element] = res
        rows += [{**r, "property": f"{element} {r['property']}"} for r in res["rows"]]
    doc = AutotestDocument(
        campaign=campaign,
        round=final_round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        device=str(ensemble.device),
        reference=settings.reference,
        results=results,
        table=autotest_table_markdown(rows),
        passed=all(r["passed"] for r in results.values()),
        wall_time=time.perf_counter() - start,
    )
    progress.report("autotest done", final_round, passed=doc.passed, failed_rows=sum(not r["passed"] for r in rows))
    return doc
