"""Provenance chains of a campaign, read from its record (``al-flows lineage``): a label back to the
initial data (selection, exploration, the selecting ensemble and what it was trained on), an
explored frame that is not a label (why it was not labelled), and a model or ensemble with the
labels it was trained on. Reading the store is :class:`~al_flows.campaign.record.CampaignRecord`'s."""

from __future__ import annotations

from collections import Counter

from al_flows.campaign.record import CampaignRecord

__all__ = ["label_lineage", "explored_frame", "model_lineage", "warm_chain"]


def label_lineage(record: CampaignRecord, frame_id: str) -> dict:
    """The chain of a label back to the initial data: label -> selection (ensemble,
    deviation) -> explored frame (explorer, run, step) -> starting structure; and the
    labels the selecting ensemble had been trained on."""
    labels = record.labels()
    if frame_id not in labels:
        explored = explored_frame(record, frame_id)
        if explored:
            raise KeyError(f"--label: frame {frame_id!r} is not a label: {explored}")
        raise KeyError(f"--label: no label with frame id {frame_id!r} in campaign {record.campaign!r}")
    label = labels[frame_id]
    chain = [
        {
            "kind": "label",
            "id": frame_id,
            "round": label["round"],
            "labeller": label["labeller"],
            "task_uuid": label["task_uuid"],
            "energy": label["energy"],
        }
    ]
    if label["round"] < 0:
        chain.append(
            {"kind": "starting_structure", "id": label["parent_id"], "origin": "initial data (perturbed copy)"}
        )
        return {"label": label, "chain": chain}
    k = label["round"]
    for d in record.outputs(
        "select",
        k,
        properties=[
            "output.records",
            "output.ensemble_id",
            "output.trust_lo",
            "output.trust_hi",
            "output.strategy",
        ],
    ):
        rec = next((r for r in d["output"]["records"] if r["frame_id"] == frame_id), None)
        if rec:
            chain.append(
                {
                    "kind": "selection",
                    "round": k,
                    "ensemble_id": d["output"]["ensemble_id"],
                    "strategy": d["output"].get("strategy", "deviation"),
                    "status": rec["status"],
                    "deviation": rec["deviation"],
                    "trust_lo": d["output"]["trust_lo"],
                    "trust_hi": d["output"]["trust_hi"],
                }
            )
    for d in record.outputs("explore", k, properties=["output.frames", "output.explorer"]):
        rec = next((r for r in d["output"]["frames"] if r["frame_id"] == frame_id), None)
        if rec:
            chain.append({"kind": "exploration", "round": k, **rec, "exploration_uuid": d["uuid"]})
    members = record.ensembles().get(label["model_id"], [])
    trained_on = sorted({fid for m in members for fid in m["train_ids"] + m["val_ids"]})
    chain.append(
        {
            "kind": "ensemble",
            "id": label["model_id"],
            "round": k,
            "models": [m["model_id"] for m in members],
            "n_labels_trained_on": len(trained_on),
            "label_rounds_trained_on": sorted({labels[f]["round"] for f in trained_on if f in labels}),
        }
    )
    chain.append({"kind": "starting_structure", "id": label["parent_id"], "origin": "initial data"})
    return {"label": label, "chain": chain}


def explored_frame(record: CampaignRecord, frame_id: str) -> str | None:
    """What an explored frame that is not a label is: round, explorer, deviation and why it was not
    labelled (accurate, failed, a candidate not selected or skipped for the budget, its labelling
    failed); None when no exploration of the campaign produced it."""
    for d in record.outputs("explore", properties=["output.frames", "output.explorer"]):
        rec = next((r for r in d["output"].get("frames") or [] if r.get("frame_id") == frame_id), None)
        if rec is not None:
            k = d["metadata"]["round"]
            break
    else:
        return None
    where = f"explored in round {k} by explorer {d['output'].get('explorer', '?')!r}"
    props = ["output.records", "output.trust_lo", "output.trust_hi", "output.budget_skipped"]
    sels = record.outputs("select", k, properties=props)
    sel = next(
        ((s["output"], r) for s in sels for r in s["output"].get("records") or [] if r["frame_id"] == frame_id),
        None,
    )
    if sel is None:
        return f"{where}; not labelled: round {k}'s selection has not finished"
    out, r = sel
    dev = f"deviation {r['deviation']:.4g} eV/A" if r.get("deviation") is not None else "no deviation"
    if r["status"] == "accurate":
        why = f"accurate (below trust_lo {out['trust_lo']:g})"
    elif r["status"] == "failed":
        why = f"failed (at or above trust_hi {out['trust_hi']:g}: too far from the training data to label)"
    elif any(b.get("frame_id") == frame_id for b in out.get("budget_skipped") or []):
        why = "a candidate selected but skipped for the labelling budget"
    elif not r.get("selected"):
        why = "a candidate not selected (selection.max_candidates, or a copy of a frame labelled before)"
    else:
        fails = [
            f for d in record.label_documents() if d["output"]["round"] == k for f in d["output"].get("failures", [])
        ]
        reason = next((f["reason"] for f in fails if f["frame_id"] == frame_id), "its labelling has not finished")
        why = f"a selected candidate whose labelling failed: {reason}"
    return f"{where}, {dev}; not labelled: {why}"


def model_lineage(record: CampaignRecord, model_id: str) -> dict:
    """A model, its settings and seed, how it started (from scratch and why, or warm from which
    member: ``warm_chain`` follows the warm starts back to the member trained from scratch), and the
    exact labels it was trained and validated on; for an ensemble id (what labels carry as
    ``model_id``), ``{"ensemble_id", "members"}`` with the lineage of each member."""
    models = record.models()
    if model_id not in models:
        ensembles = record.ensembles()
        if model_id in ensembles:  # labels carry the id of the ensemble that selected them
            members = [model_lineage(record, m["model_id"]) for m in ensembles[model_id]]
            return {"ensemble_id": model_id, "members": members}
        raise KeyError(
            f"--model: no model or ensemble with id {model_id!r} in campaign {record.campaign!r}; "
            "model and ensemble ids are in 'al-flows status --json' (rounds[].model_ids, rounds[].ensemble_id) "
            "and in each label's lineage ('al-flows lineage --label FRAME_ID')"
        )
    m = models[model_id]
    labels = record.labels()
    ids = m["train_ids"] + m["val_ids"]
    by_round = Counter(labels[f]["round"] for f in ids if f in labels)
    by_explorer = Counter(labels[f]["explorer"] for f in ids if f in labels)
    return {
        "model": {
            k: m[k]
            for k in (
                "model_id",
                "round",
                "member",
                "seed",
                "n_train",
                "n_val",
                "best_epoch",
                "val_force_rmse",
                "model_settings",
                "training_settings",
                "uuid",
            )
        },
        "start": {
            "start": m.get("start") or "scratch",
            "warm_start_from": m.get("warm_start_from"),
            "warm_start_uuid": m.get("warm_start_uuid"),
            "scratch_reason": m.get("scratch_reason") or "",
        },
        "warm_chain": warm_chain(models, model_id),
        "n_labels": len(ids),
        "labels_by_round": dict(sorted(by_round.items())),
        "labels_by_explorer": dict(by_explorer),
        "train_ids": m["train_ids"],
        "val_ids": m["val_ids"],
    }


def warm_chain(models: dict[str, dict], model_id: str) -> list[dict]:
    """The members model ``model_id`` started from, newest first, back to the one trained from scratch
    (``models``: :meth:`CampaignRecord.models`): model_id, round, member, start and the train job's uuid
    of each; [] for a member trained from scratch. A member the record lacks ends the chain with
    ``missing: True``."""
    chain: list[dict] = []
    seen = {model_id}
    ref = models[model_id].get("warm_start_from")
    while ref and ref not in seen:
        seen.add(ref)
        m = models.get(ref)
        if m is None:
            chain.append({"model_id": ref, "missing": True})
            break
        keys = ("model_id", "round", "member")
        chain.append({**{k: m[k] for k in keys}, "start": m.get("start") or "scratch", "uuid": m.get("uuid")})
        ref = m.get("warm_start_from")
    return chain
