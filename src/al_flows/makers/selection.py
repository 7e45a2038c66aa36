"""Trust-level selection of a round's explored frames (METHODS C) and the stop decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

from jobflow import Maker, job

from al_flows import progress
from al_flows.dataset import frames_from_bytes
from al_flows.documents import SelectionDocument, frames_text
from al_flows.makers._common import field
from al_flows.provenance import as_float
from al_flows.selection import SelectionSettings, select


@dataclass
class SelectMaker(Maker):
    """Classify frames as accurate/candidate/failed, pick at most ``max_candidates`` new
    candidates, and decide whether the campaign stops after this round."""

    name: str = "select"
    settings: SelectionSettings = dc_field(default_factory=SelectionSettings)
    target_accurate_ratio: float = 0.95
    max_rounds: int = 5

    @job(data=["selected_blob"], output_schema=SelectionDocument)
    def make(self, explorations: list, exclude_ids: list, campaign: str, round: int, seed: int) -> SelectionDocument:
        start = time.perf_counter()
        frames = [a for e in explorations for a in frames_from_bytes(field(e, "frames_blob"))]
        ens_id = field(explorations[0], "ensemble_id") if explorations else ""
        result = select(frames, self.settings, exclude_ids=exclude_ids, seed=seed)
        chosen = [frames[i] for i in result.selected]
        chosen_idx = set(result.selected)
        converged = len(frames) > 0 and result.accurate_ratio >= self.target_accurate_ratio
        stop = converged or round + 1 >= self.max_rounds
        progress.report(
            "select", round, explored=len(frames), accurate=result.n_accurate, candidate=result.n_candidate,
            failed=result.n_failed, selected=len(chosen), accurate_ratio=f"{result.accurate_ratio:.3f}",
        )
        return SelectionDocument(
            campaign=campaign,
            round=round,
            ensemble_id=ens_id,
            n_explored=len(frames),
            n_accurate=result.n_accurate,
            n_candidate=result.n_candidate,
            n_failed=result.n_failed,
            n_duplicate=result.n_duplicate,
            n_selected=len(chosen),
            accurate_ratio=result.accurate_ratio,
            converged=converged,
            stop=stop,
            trust_lo=self.settings.trust_lo,
            trust_hi=self.settings.trust_hi,
            records=[
                {"frame_id": a.info["frame_id"], "explorer": a.info.get("explorer", ""), "parent_id": a.info.get("parent_id", ""),
                 "deviation": as_float(a.info.get("deviation")), "status": status, "selected": i in chosen_idx}
                for i, (a, status) in enumerate(zip(frames, result.status, strict=True))
            ],
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )
