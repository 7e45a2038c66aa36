"""Held-out test frames and the errors of a potential on them (no jobflow).

A test set that tests holds both kinds of frames a potential meets: ``relaxed`` frames (shear
paths relaxed with the labeller, forces near zero) and ``nonequilibrium`` frames (labeller MD
snapshots at two or more temperatures, and unrelaxed sheared and rattled copies of the starting
structures). Each frame's ``info['subset']`` says which; ``info['test_kind']`` says how it was
made (``shear_relaxed``, ``md_<T>K``, ``sheared_rattled``, ``perturbed``).

Errors (:func:`force_errors`): force RMSE over all components (eV/Angstrom), the coefficient of
determination R^2 = 1 - sum (F_pred - F_ref)^2 / sum (F_ref - mean F_ref)^2 (0: no better than
predicting the mean force; negative: worse), and the relative RMSE, RMSE / RMS(F_ref). A force
RMSE alone says little when the reference forces are small: relaxed frames have |F| < fmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from ase import Atoms

from al_flows.exploration.labeller_md import nvt_pool
from al_flows.exploration.shear_geometry import shear_cell, shear_start
from al_flows.frames.ids import frame_id
from al_flows.labelling.ase import label_frames

RELAXED, NONEQUILIBRIUM = "relaxed", "nonequilibrium"
SUBSETS = (RELAXED, NONEQUILIBRIUM)


def tag(frames: list[Atoms], subset: str, test_kind: str | None = None) -> list[Atoms]:
    """Mark ``frames`` as test frames of ``subset`` (in place; returns them)."""
    for atoms in frames:
        atoms.info["subset"] = subset
        atoms.info["test_kind"] = test_kind or atoms.info.get("test_kind", subset)
        atoms.info.update(round=-1, explorer="test", model_id="")
    return frames


def md_snapshots(
    structures: list[Atoms],
    make_calculator: Callable,
    temperatures_K: list[float],
    n_steps: int,
    timestep_fs: float,
    interval: int,
    seed: int,
    labeller: str,
) -> list[Atoms]:
    """Labeller NVT (Langevin) snapshots of every structure at every temperature: every
    ``interval``-th step of the second half of each ``n_steps``-step run (the first half
    equilibrates), labelled with the labeller's energy and forces along the way."""
    frames = nvt_pool(
        structures,
        make_calculator,
        list(temperatures_K),
        n_steps,
        timestep_fs,
        interval=interval,
        seed=seed,
        labeller=labeller,
    )
    kept = [a for a in frames if a.info["step"] > n_steps // 2]
    for atoms in kept:
        atoms.info["test_kind"] = f"md_{atoms.info['temperature_K']:.0f}K"
    return tag(kept, NONEQUILIBRIUM)


def sheared_rattled(structures: list[Atoms], n: int, gamma_max: float, sigma: float, seed: int) -> list[Atoms]:
    """``n`` unrelaxed copies of each structure, sheared like the shear explorer (from
    :func:`al_flows.exploration.shear_geometry.shear_start`, equal steps on cell[0,1] and cell[0,2], atoms
    scaled with the cell) to a strain drawn uniformly from [0, gamma_max], then rattled by
    N(0, sigma^2) (Angstrom) per coordinate. Unlabelled."""
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
    out = []
    for atoms in structures:
        parent = str(atoms.info.get("structure_id") or atoms.info.get("frame_id") or frame_id(atoms))
        for k in range(n):
            gamma = float(rng.uniform(0.0, gamma_max))
            copy = shear_start(atoms)
            copy.calc = None
            copy.set_cell(shear_cell(copy.cell[:], gamma * copy.cell[0, 0] / math.sqrt(2.0)), scale_atoms=True)
            copy.positions = copy.positions + rng.normal(0.0, sigma, size=copy.positions.shape)
            copy.info = {"parent_id": parent, "gamma": gamma, "copy": k, "test_kind": "sheared_rattled"}
            copy.info["frame_id"] = frame_id(copy)
            out.append(copy)
    return out


def labelled_sheared_rattled(
    structures: list[Atoms],
    make_calculator: Callable,
    n: int,
    gamma_max: float,
    sigma: float,
    seed: int,
    labeller: str,
    max_force: float,
) -> tuple[list[Atoms], list[dict]]:
    """:func:`sheared_rattled` copies labelled by the labeller: (frames, failures)."""
    result = label_frames(sheared_rattled(structures, n, gamma_max, sigma, seed), make_calculator, labeller, max_force)
    return tag(result.labelled, NONEQUILIBRIUM), result.failed


def subset_of(atoms: Atoms, default: str = NONEQUILIBRIUM) -> str:
    """The test subset of a frame (frames of older test sets carry none: ``default``)."""
    return str(atoms.info.get("subset") or default)


def force_errors(predicted: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    """``{force_rmse, force_r2, force_rel_rmse, n_components}`` over all force components
    (eV/Angstrom); R^2 and the relative RMSE are None when the reference forces are all equal."""
    p = np.concatenate([np.asarray(f, dtype=float).reshape(-1) for f in predicted]) if predicted else np.zeros(0)
    r = np.concatenate([np.asarray(f, dtype=float).reshape(-1) for f in reference]) if reference else np.zeros(0)
    if p.shape != r.shape:
        raise ValueError(f"predicted and reference forces differ in shape: {p.shape} vs {r.shape}")
    if not len(r):
        return {"force_rmse": None, "force_r2": None, "force_rel_rmse": None, "n_components": 0}
    rmse = float(np.sqrt(np.mean((p - r) ** 2)))
    ss_tot = float(np.sum((r - r.mean()) ** 2))
    rms_ref = float(np.sqrt(np.mean(r**2)))
    return {
        "force_rmse": rmse,
        "force_r2": 1.0 - float(np.sum((p - r) ** 2)) / ss_tot if ss_tot > 0 else None,
        "force_rel_rmse": rmse / rms_ref if rms_ref > 0 else None,
        "n_components": int(len(r)),
    }


def energy_rmse_per_atom(predicted: np.ndarray, reference: np.ndarray, n_atoms: np.ndarray) -> float | None:
    """RMSE of the energy per atom (eV/atom), None for no frames."""
    if not len(reference):
        return None
    return float(np.sqrt(np.mean(((np.asarray(predicted) - np.asarray(reference)) / np.asarray(n_atoms)) ** 2)))


def holdout_errors(frames: list[Atoms], predicted_energies: np.ndarray, predicted_forces: list[np.ndarray]) -> dict:
    """Errors on the whole test set and on each subset:
    ``{force_rmse, force_r2, force_rel_rmse, energy_rmse_per_atom, subsets: {name: {n_frames, ...}}}``."""
    ref_e = np.array([a.get_potential_energy() for a in frames], dtype=float)
    ref_f = [a.get_forces() for a in frames]
    n_atoms = np.array([len(a) for a in frames])
    pred_e = np.asarray(predicted_energies, dtype=float)

    def errors(idx: list[int]) -> dict:
        out = force_errors([predicted_forces[i] for i in idx], [ref_f[i] for i in idx])
        out.pop("n_components")
        out["energy_rmse_per_atom"] = energy_rmse_per_atom(pred_e[idx], ref_e[idx], n_atoms[idx])
        out["n_frames"] = len(idx)
        return out

    result = errors(list(range(len(frames))))
    subsets = {name: [i for i, a in enumerate(frames) if subset_of(a) == name] for name in SUBSETS}
    result["subsets"] = {name: errors(idx) for name, idx in subsets.items() if idx}
    return result


class TestSetError(RuntimeError):
    """The labeller produced no test frames; the message says why and what to do."""


def labeller_test_frames(
    starts: list[Atoms], make_calculator: Callable, settings, seed: int, labeller: str, max_force: float = 50.0
) -> list[Atoms]:
    """The test frames of ``test_set`` kind ``mixed`` or ``labeller_shear`` (``settings``: its
    TestSetConfig), all computed with the labeller: relaxed shear paths (at most ``max_frames``,
    drawn at random), and for ``mixed`` MD snapshots and sheared-rattled copies (at most
    ``max_nonequilibrium``). Raises TestSetError when the labeller gave no relaxed frame."""
    from al_flows.exploration.shear import ShearSettings
    from al_flows.exploration.shear_sequential import explore_shear

    shear = ShearSettings(
        n_runs=settings.n_runs,
        sigma=settings.sigma,
        shear_step=settings.shear_step,
        gamma_max=settings.gamma_max,
        fmax=settings.fmax,
    )
    dropped: list[dict] = []
    relaxed = explore_shear(starts, make_calculator(), shear, seed=seed, explorer="test", dropped=dropped)
    if not relaxed:
        reasons = sorted({d["reason"] for d in dropped})
        raise TestSetError(
            f"test_set: every shear run with the labeller failed ({'; '.join(reasons)[:300] or 'no frames'}); "
            "fix the labeller (or use test_set: {kind: perturbed}) and run again"
        )
    rng = np.random.default_rng(seed)
    if len(relaxed) > settings.max_frames:
        relaxed = [relaxed[i] for i in sorted(rng.choice(len(relaxed), settings.max_frames, replace=False))]
    frames = tag(relaxed, RELAXED, "shear_relaxed")
    if settings.kind == "mixed":
        seeds = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 1]).generate_state(2)
        md = md_snapshots(
            starts,
            make_calculator,
            settings.md_temperatures_K,
            settings.md_steps,
            settings.md_timestep_fs,
            settings.md_interval,
            int(seeds[0]),
            labeller,
        )
        sheared, _ = labelled_sheared_rattled(
            starts,
            make_calculator,
            settings.n_sheared,
            settings.gamma_max,
            settings.sheared_sigma,
            int(seeds[1]),
            labeller,
            max_force,
        )
        other = md + sheared
        if len(other) > settings.max_nonequilibrium:
            other = [other[i] for i in sorted(rng.choice(len(other), settings.max_nonequilibrium, replace=False))]
        frames = frames + other
    for atoms in frames:
        atoms.info["labeller"] = labeller
    return frames
