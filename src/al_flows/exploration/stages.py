"""What each exploration stage of an explorer explores, in words (for the report and status):
hand-written DP-GEN ``stages`` of an md explorer, or the levels of an auto schedule
(:mod:`al_flows.exploration.auto_schedule`) of an md or shear explorer."""

from __future__ import annotations

from al_flows.exploration.md import NVTSettings, round_stage, stage_count
from al_flows.exploration.shear import ShearSettings, shear_level

__all__ = ["stage_labels"]


def _md_label(settings: NVTSettings, stage: int) -> str:
    what = round_stage(settings, 0, stage)
    temps = "/".join(f"{t:g}" for t in what.temperatures_K) + " K"
    if what.ensemble == "npt":
        return f"{temps}, {'/'.join(f'{p:g}' for p in what.pressures_GPa)} GPa"
    return temps


def stage_labels(settings) -> list[str]:
    """One short label per stage of ``settings`` (e.g. '600 K', '900 K, 0/5 GPa', 'γ 0.2'); [] for an
    explorer without stages or a schedule."""
    n = stage_count(settings)
    if n < 2:
        return []
    if isinstance(settings, NVTSettings):
        return [_md_label(settings, k) for k in range(n)]
    if isinstance(settings, ShearSettings):
        return [f"γ {shear_level(settings, k).gamma_max:.3g}" for k in range(n)]
    return [f"stage {k}" for k in range(n)]
