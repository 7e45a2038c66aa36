"""Read a campaign's record from its JobStore: status per round, lineage of a label or
a model, the datasets and models to export (written to files by :mod:`al_flows.campaign.export`).
Only ``find`` queries with filters and projections are used, so the same code runs on the
embedded store (montydb, which has no aggregation) and on MongoDB.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from jobflow import JobStore

from al_flows.frames.dataset import Dataset
from al_flows.selection.budget import BudgetSpent, spend
from al_flows.workflow.jobs import completed_uuids, latest_outputs
from al_flows.workflow.store_queries import failure_records, job_document, timing_records
from al_flows.workflow.timing import stage_times

ROUND_COUNTS = ("n_labels_total", "n_explored", "n_accurate", "n_candidate", "n_failed", "n_labelled")
ROUND_ERRORS = ("accurate_ratio", "val_force_rmse", "test_force_rmse", "test_energy_rmse_per_atom")
BUDGET_KEYS = ("labels_spent", "core_hours_spent", "n_budget_skipped")  # None without labeller.budget
# the round's calibration figures (RoundSummary.calibration; None before calibration records) and, with
# convergence.error_bound, the share of explored frames whose bound is below the target and the streak
CALIBRATION_KEYS = ("calibration", "bound_share", "bound_streak")
STATUS_KEYS = (  # status() rows
    "ensemble_id",
    "model_ids",
    *ROUND_COUNTS,
    "n_label_failures",
    *ROUND_ERRORS,
    "stage",
    "median_survival_ps",
    *BUDGET_KEYS,
    *CALIBRATION_KEYS,
)
REPORT_KEYS = (  # of a round in report.json
    "round",
    *ROUND_COUNTS,
    *ROUND_ERRORS,
    "test_force_r2",
    "test_force_rel_rmse",
    "test_force_rmse_relaxed",
    "test_force_rmse_nonequilibrium",
    "test_energy_rmse_per_atom_relaxed",
    "test_energy_rmse_per_atom_nonequilibrium",
    "median_survival_ps",
    "stage",
    *BUDGET_KEYS,
    *CALIBRATION_KEYS,
    "member_disagreement",
)
# a round's convergence properties (rows of mean, spread, reference, tolerance, within) and whether all
# were within: in status rows and report.json rounds only where the campaign lists properties
PROPERTY_KEYS = ("properties", "properties_met")
# the adaptive lower trust level of a round (eV/Angstrom), the levels compared for convergence and
# whether they settled: in status rows and report.json rounds only where selection.trust_lo is adaptive
ADAPTIVE_KEYS = ("trust_lo", "trust_lo_levels", "levels_settled")


def round_row(summary: dict, keys: tuple[str, ...]) -> dict:
    """``keys`` of a RoundSummary (None where it lacks one), plus :data:`PROPERTY_KEYS` when it has properties
    and :data:`ADAPTIVE_KEYS` when its lower trust level was adaptive."""
    row = {k: summary.get(k) for k in keys}
    if summary.get("properties"):
        row |= {k: summary.get(k) for k in PROPERTY_KEYS}
    if summary.get("trust_lo_levels"):
        row |= {k: summary.get(k) for k in ADAPTIVE_KEYS}
    return row


def summaries_by_round(docs: list[dict]) -> dict[int, dict]:
    """The RoundSummary of each round from summary job documents, rounds in order: the latest run of
    each round, and, for a round that stopped the campaign and whose selection a later run labelled
    when it extended the campaign, the summary that counts those labels (``labelled_on_extension``)."""
    ordered = sorted(
        docs, key=lambda d: (d["output"]["round"], bool(d["output"].get("labelled_on_extension")), d["index"])
    )
    return {d["output"]["round"]: d["output"] for d in ordered}


def largest_merge(merges: list[dict]) -> dict:
    """Of merge job documents (``metadata.round``, ``output.n_frames``), the last round's largest:
    datasets only grow, and a round whose selection an extension labelled has two merges, its own
    and the extension's after it."""
    return max(merges, key=lambda d: (d["metadata"]["round"], d["output"].get("n_frames", 0), d["index"]))


STATE_WORDS = {"converged": "converged", "budget": "finished (budget)"}  # other stop reasons: the round limit


def outcome_of(result: dict | None) -> dict:
    """``state`` (the words of run and status: 'converged', 'finished (budget)', 'finished (round
    limit)' or 'not finished'), ``finished``, ``converged`` and ``stop_reason`` of a campaign from
    its CampaignResult (None while it runs): what status and report.json say of its end."""
    if result is None:
        return {"state": "not finished", "finished": False, "converged": False, "stop_reason": None}
    state = (
        "converged"
        if result["converged"]
        else STATE_WORDS.get(result.get("stop_reason") or "", "finished (round limit)")
    )
    return {
        "state": state,
        "finished": True,
        "converged": bool(result["converged"]),
        "stop_reason": result.get("stop_reason") or None,
    }


class CampaignRecord:
    """Query helper for one campaign in a connected JobStore."""

    def __init__(self, store: JobStore, campaign: str):
        self.store = store
        self.campaign = campaign

    def outputs(
        self, stage: str, round_: int | None = None, properties: list[str] | None = None, load: bool = False
    ) -> list[dict]:
        """Latest documents of a stage (see :func:`latest_outputs`), optionally of one round."""
        criteria = None if round_ is None else {"metadata.round": round_}
        return latest_outputs(self.store, self.campaign, stage, criteria, properties, load)

    # -- rounds ---------------------------------------------------------------------------------
    def summaries(self) -> dict[int, dict]:
        """RoundSummary outputs by round (the latest run of each round)."""
        return summaries_by_round(self.outputs("summary"))

    def label_documents(self) -> list[dict]:
        """LabelDocuments (ASE labelling jobs and VASP collect jobs), rounds -1 .. k."""
        docs = []
        for stage in ("label", "vasp_collect"):
            for d in self.outputs(
                stage,
                properties=[
                    "output.round",
                    "output.n_requested",
                    "output.n_labelled",
                    "output.n_failed",
                    "output.failures",
                    "output.records",
                    "output.labeller",
                    "output.core_hours",
                    "output.n_timed",
                ],
            ):
                out = d["output"]
                if "records" in out:  # a VASP dispatch's document only points to its collect job
                    docs.append(d)
        return docs

    def result(self) -> dict | None:
        """The CampaignResult that ends the campaign as it stands, or None while it runs.

        A result older than the last round summary is stale: the campaign was extended
        (a larger ``max_rounds`` or another convergence target) and is running again."""
        results = [
            d["output"] for d in self.outputs("round", properties=["output"]) if d["output"].get("n_rounds") is not None
        ]
        if not results:
            return None
        last = max(results, key=lambda r: r["final_round"])
        summaries = self.summaries()
        if summaries and max(summaries) > last["final_round"]:
            return None
        return last

    def last_summary(self) -> dict | None:
        """The RoundSummary of the last finished round, or None before round 0 has finished."""
        summaries = self.summaries()
        return summaries[max(summaries)] if summaries else None

    def outcome(self) -> dict:
        """State words, finished, converged and stop reason of the campaign as it stands (:func:`outcome_of`)."""
        return outcome_of(self.result())

    def finished(self) -> bool:
        """Whether the campaign has finished (a CampaignResult newer than every round summary)."""
        return self.result() is not None

    def state_words(self) -> str:
        """'converged', 'finished (budget)', 'finished (round limit)' or 'not finished': the words
        of run and status."""
        return self.outcome()["state"]

    def failures(self, current_only: bool = True) -> list[dict]:
        """Failure records of this campaign's jobs (stage, round, job name, one-line reason),
        oldest first; ``current_only``: only jobs that have not finished since."""
        docs = failure_records(self.store, self.campaign)
        docs.sort(key=lambda f: f["time"])
        if current_only and docs:
            done = completed_uuids(self.store, {f["job_uuid"] for f in docs})
            docs = [f for f in docs if f["job_uuid"] not in done]
        return docs

    def stage_times(self) -> dict[int, dict]:
        """Per round (the initial labels: round -1): wall and CPU seconds per stage of every job that
        ran, the span and the overhead between jobs (:func:`al_flows.workflow.timing.stage_times`);
        rounds whose jobs left no timing record are absent."""
        by_round: dict[int, list] = defaultdict(list)
        for r in timing_records(self.store, self.campaign):
            by_round[int(r["round"])].append(r)
        return {k: stage_times(v) for k, v in sorted(by_round.items())}

    def status(self) -> dict:
        """One row per round (labels, explored, classes, errors, wall time per stage) plus
        what is in progress or failed now."""
        summaries = self.summaries()
        timed = self.stage_times()
        times: dict[int, dict] = defaultdict(lambda: defaultdict(float))
        for stage in ("train", "evaluate", "properties", "explore", "select", "label"):  # campaigns without timings
            for d in self.outputs(stage, properties=["output.wall_time"]):
                if d["output"].get("wall_time") is not None:
                    times[d["metadata"]["round"]][stage] += float(d["output"]["wall_time"])
        rounds_started = {d["metadata"]["round"] for d in self.outputs("train", properties=["output.round"])}
        rows = []
        for k in sorted(set(summaries) | rounds_started):
            s = summaries.get(k)
            row = {"round": k, "state": "done" if s else "in progress or stopped"}
            if s:
                row.update(round_row(s, STATUS_KEYS))
            else:
                done = Counter(
                    d["metadata"]["stage"]
                    for stage in ("train", "evaluate", "explore", "select")
                    for d in self.outputs(stage, k, properties=["output.round"])
                )
                row["stages_done"] = dict(done)
            if k in timed:
                row["stage_times"] = timed[k]
                row["wall_time_s"] = {stage: round(t["wall_s"], 2) for stage, t in timed[k]["stages"].items()}
            else:
                row["wall_time_s"] = {stage: round(t, 2) for stage, t in times[k].items()}
            rows.append(row)
        failures = [
            {"round": d["output"]["round"], **f}
            for d in self.label_documents()
            for f in d["output"].get("failures", [])
        ]
        job_failures = [
            {k: f[k] for k in ("round", "stage", "job_name", "job_uuid", "reason")} for f in self.failures()
        ]
        return {
            "campaign": self.campaign,
            **self.outcome(),
            "rounds": rows,
            "label_failures": failures,
            "job_failures": job_failures,
        }

    def with_budget_spent(self, summary: dict) -> dict:
        """``summary`` (a RoundSummary) with ``spent_before``/``spent_after`` filled in from the
        stored label documents when its round ran without a labelling budget (a budget added on
        a later run counts the labels of every round; core-hours as measured, where the label
        documents recorded them)."""
        if summary.get("spent_after") is not None:
            return summary
        k = summary["round"]
        before = after = BudgetSpent()
        for d in sorted(self.label_documents(), key=lambda d: d["output"]["round"]):
            out = d["output"]
            if out["round"] > k:
                continue
            timed, hours = out.get("n_timed") or 0, out.get("core_hours")
            if out["round"] < 0:  # the initial labels: their timings only, they are not spent of the budget
                update = {
                    "timed_runs": after.timed_runs + timed,
                    "timed_core_hours": after.timed_core_hours + (hours or 0),
                }
                after = after.model_copy(update=update)
            else:
                after = spend(after, out["n_requested"], hours, timed, None)
            if out["round"] < k:
                before = after
        return {**summary, "spent_before": before.model_dump(), "spent_after": after.model_dump()}

    # -- labels -----------------------------------------------------------------------------------
    def labels(self) -> dict[str, dict]:
        """Every label's provenance record, by frame id (initial data included)."""
        out: dict[str, dict] = {}
        for d in self.label_documents():
            for rec in d["output"]["records"]:
                out[rec["frame_id"]] = rec
        return out

    def models(self) -> dict[str, dict]:
        """Training documents (without weights) by model id."""
        props = [
            "output.model_id",
            "output.round",
            "output.member",
            "output.seed",
            "output.n_train",
            "output.n_val",
            "output.train_ids",
            "output.val_ids",
            "output.best_epoch",
            "output.val_force_rmse",
            "output.model_settings",
            "output.training_settings",
            "output.start",
            "output.warm_start_from",
            "output.warm_start_uuid",
            "output.scratch_reason",
        ]
        return {
            d["output"]["model_id"]: {**d["output"], "uuid": d["uuid"]} for d in self.outputs("train", properties=props)
        }

    def ensembles(self) -> dict[str, list[dict]]:
        """Members of each round's ensemble, by ensemble id (from the round summaries)."""
        models = self.models()
        return {s["ensemble_id"]: [models[m] for m in s["model_ids"] if m in models] for s in self.summaries().values()}

    # -- exports ----------------------------------------------------------------------------------
    def final_dataset(self) -> Dataset:
        """The latest dataset (all labels) with provenance."""
        merges = self.outputs("merge", properties=["output.round", "output.n_frames"])
        if not merges:
            raise KeyError(f"campaign {self.campaign!r} has no dataset yet")
        return self._dataset_of(largest_merge(merges))

    def trained_rounds(self) -> list[int]:
        """The rounds whose ensemble (some member) has been trained, in order."""
        return sorted({d["metadata"]["round"] for d in self.outputs("train", properties=["output.round"])})

    def round_dataset(self, round_: int) -> Dataset:
        """The labels round ``round_``'s members trained on: the dataset its train jobs read, i.e. what
        the merge job of the round before stored (the initial data's merge for round 0; of a round
        whose selection an extension labelled, the extension's merge): the initial labels and those
        of rounds < ``round_``. KeyError naming the trained rounds for another round."""
        rounds = self.trained_rounds()
        if round_ not in rounds:
            have = f"rounds with trained models: {rounds}" if rounds else "no round has trained models yet"
            raise KeyError(f"--round: no models were trained in round {round_}; {have}")
        merges = self.outputs("merge", round_ - 1, properties=["output.round", "output.n_frames"])
        if not merges:
            raise KeyError(f"--round: the dataset round {round_} trained on is not stored")
        return self._dataset_of(largest_merge(merges))

    def _dataset_of(self, merge: dict) -> Dataset:
        doc = job_document(self.store, merge["uuid"], merge["index"])
        assert doc is not None  # the document just listed
        return Dataset.from_bytes(doc["output"]["dataset_blob"])

    def ensemble_blobs(self, round_: int | None = None) -> tuple[int, list[bytes]]:
        """Weights files of a round's ensemble members (default: the last trained round)."""
        from al_flows.potential.weights import weights_bytes

        rounds = self.trained_rounds()
        if not rounds:
            raise KeyError(f"campaign {self.campaign!r} has no trained model yet")
        k = rounds[-1] if round_ is None else round_
        docs = self.outputs("train", k, load=True)
        if not docs:
            raise KeyError(f"--round: no models trained in round {k}; rounds with models: {rounds}")
        docs.sort(key=lambda d: d["output"]["member"])
        return k, [weights_bytes(d["output"]["model_blob"]) for d in docs]
