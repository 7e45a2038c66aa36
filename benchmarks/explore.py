"""Benchmark: batched shear exploration vs the stock one-replica-at-a-time ASE + schnetpack way.

K perturbed-shear replicas (Sprueill et al., docs/methods.md: per shear step add N(0, sigma^2) noise, shear the cell by
``shear_step`` on cell[0,1] and cell[0,2], relax at fixed cell to ``fmax``) of a Cu-Ni (001)
multilayer, ``--steps`` shear steps each, with an ensemble of ``--members`` SchNet members.

- stock (baseline): for each replica in turn, ASE ``BFGS`` on an ASE ``AverageCalculator`` over one
  ``schnetpack.interfaces.SpkCalculator`` per member (the stock way to relax with an ensemble mean;
  schnetpack's default ``ASENeighborList``, ``energy_unit="eV"``), the model deviation of each relaxed
  frame from the members' forces (``forces_contributions``). Members are loaded from whole pickled
  modules (``torch.save``; ``torch.load`` needs ``weights_only=False``, set through
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the stock process); SpkCalculator casts them to float32,
  after which the members' float64 energy-reference buffers are cast back. As stock ASE does, an ``SpkCalculator``
  computes only the property asked for, so ASE's optimiser loop evaluates each member twice per step
  (forces for the step, energy for the log line): counted and printed as model evaluations.
- sequential (reference): this package's :func:`al_flows.exploration.shear_sequential.explore_shear` with BFGS and the
  ensemble's ASE calculator (one batched-over-members prediction per step, matscipy neighbour
  lists), one replica after the other: what ShearExploreMaker runs with ``batched: false``.
- batched (candidate): :func:`al_flows.exploration.shear_batched.explore_shear_batched`: all replicas in lockstep, one
  ensemble prediction of every running replica (all members) per optimiser step, once per
  ``--engines`` entry: ``torch`` (the default explorer: one batched optimiser for all replicas,
  neighbour lists from one skin filter per step) and ``ase`` (the earlier engine and reference: one
  ASE optimiser per replica, matscipy neighbour lists per replica every step). ``--optimizer BFGS``
  (default) makes ASE's BFGS steps on every side, so the sides make the same relaxation steps and the
  ratios measure the machinery; ``--also FIRE`` adds the batched FIRE explorer (``optimizer: FIRE``),
  which needs more steps than BFGS. For each optimiser run with both engines the script prints the
  shares of wall time in the model, the optimiser steps and the neighbour lists of each, whether
  their frames agree, and the ratio of total exploration time (ase / torch, measured in the same run).
  ``--only-batched`` leaves out the stock and sequential sides.

Same weights on both sides: one member trained for ``--train-epochs`` epochs on EMT labels of
perturbed, sheared copies of the cell (seconds), the others copies of it with 2 % weight noise (so
the deviation is not zero). Model size: ``--model campaign`` (32 features, 2 interactions, 20 RBF,
5 A: this repository's CPU campaigns) or ``--model paper`` (128, 2, 50, 6 A: Sprueill et al.).

The stock side takes ~17 ms per member evaluation on a 32-atom cell (80 % of it ASE's neighbour
list), so by default it relaxes only ``--stock-replicas`` 4 of the replicas and its wall time is scaled
to all of them by relaxation steps (+1 evaluation per relaxation): it is a strictly sequential loop,
and both BFGS sides make the same steps frame by frame (checked and printed). ``--stock-replicas 0``
measures every replica.

Each side runs in its own child process (same interpreter, ``--threads`` torch/OpenMP threads) so
that its peak memory (RSS high-water mark, VmHWM; ``torch.cuda.max_memory_allocated`` on GPU) is its own.
Prints per side: wall time, relaxation steps, model evaluations, peak memory, atoms x steps / s, and
for this package's sides the share of wall time inside the members' forward passes (forces by
autograd included; benchmarks/model_time.py); the
stock/batched ratio last (baseline measured in the same run).

    .venv/bin/python benchmarks/explore.py [--replicas 16] [--size 2 2 2] [--members 4] [--steps 3]
        [--model campaign|paper] [--device auto|cpu|cuda] [--threads 2] [--also FIRE]
        [--engines torch ase] [--only-batched]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "campaign": dict(n_atom_basis=32, n_interactions=2, n_rbf=20, cutoff=5.0),
    "paper": dict(n_atom_basis=128, n_interactions=2, n_rbf=50, cutoff=6.0),
}


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=16, help="K shear runs of the one starting cell")
    ap.add_argument(
        "--size", type=int, nargs=3, default=[2, 2, 2], help="multilayer FCC cells nx ny nz (2 2 2: 32 atoms)"
    )
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="shear steps per replica")
    ap.add_argument("--model", choices=sorted(MODELS), default="campaign")
    ap.add_argument("--sigma", type=float, default=0.05, help="Angstrom, perturbation per step")
    ap.add_argument("--shear-step", type=float, default=0.1, help="Angstrom per shear step")
    ap.add_argument("--fmax", type=float, default=0.002, help="eV/Angstrom (Sprueill et al.)")
    ap.add_argument("--max-opt-steps", type=int, default=500)
    ap.add_argument("--optimizer", choices=["BFGS", "LBFGS", "FIRE"], default="BFGS", help="batched side's optimiser")
    ap.add_argument(
        "--also",
        nargs="*",
        default=["FIRE"],
        choices=["BFGS", "LBFGS", "FIRE"],
        help="further batched optimisers to time (printed before the ratio line)",
    )
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["torch", "ase"],
        choices=["torch", "ase"],
        help="optimizer_engine of the batched sides: torch (one batched optimiser, skin neighbour lists) and ase "
        "(one ASE optimiser per replica, neighbour lists every step); both: shares and time ratio compared",
    )
    ap.add_argument("--only-batched", action="store_true", help="leave out the stock and sequential sides")
    ap.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--stock-replicas",
        type=int,
        default=4,
        help="replicas the stock side relaxes (0: all); its wall time is scaled to all replicas by "
        "relaxation steps (+1 evaluation each), which both BFGS sides share frame by frame",
    )
    ap.add_argument("--train-epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _start(args):
    from al_flows.structures.multilayer import cuni_multilayer

    atoms = cuni_multilayer(tuple(args.size))
    atoms.info["structure_id"] = f"multilayer-{'x'.join(map(str, args.size))}"
    return atoms


def _settings(args, optimizer, engine="torch"):
    from al_flows.exploration.shear import ShearSettings

    return ShearSettings(
        optimizer_engine=engine,
        n_runs=args.replicas,
        sigma=args.sigma,
        shear_step=args.shear_step,
        gamma_max=10.0,
        max_steps=args.steps,
        fmax=args.fmax,
        max_opt_steps=args.max_opt_steps,
        optimizer=optimizer,
    )


def prepare(args, workdir: Path) -> dict:
    """Train one member, derive the others, write blobs and pickled modules to ``workdir``."""
    import numpy as np
    import torch
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from al_flows.exploration.shear_geometry import shear_cell
    from al_flows.potential.model import ModelSettings, TrainingSettings
    from al_flows.potential.training import train_member
    from al_flows.potential.weights import member_from_bytes, member_to_bytes
    from al_flows.structures.initial_data import perturbed_copies

    torch.set_num_threads(args.threads)
    ms = ModelSettings(**MODELS[args.model])
    start = _start(args)
    shapes = [start]
    for d in (0.2, 0.4, 0.6):
        s = start.copy()
        s.set_cell(shear_cell(s.cell[:], d), scale_atoms=True)
        shapes.append(s)
    frames = perturbed_copies(shapes, 10, 0.06, 0.01, seed=args.seed)
    for f in frames:
        f.calc = EMT()
        f.calc = SinglePointCalculator(f, energy=f.get_potential_energy(), forces=f.get_forces())
    t0 = time.perf_counter()
    trained = train_member(
        frames,
        ms,
        TrainingSettings(epochs=args.train_epochs, batch_size=8, lr=3e-3, val_fraction=0.1, lr_patience=100),
        seed=args.seed + 1,
    )
    train_s = time.perf_counter() - t0
    paths = []
    for m in range(args.members):
        module, _, _ = member_from_bytes(trained.blob)
        if m:
            gen = torch.Generator().manual_seed(args.seed * 1000 + m)
            with torch.no_grad():
                for p in module.parameters():
                    p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=gen))
        (workdir / f"member{m}.blob").write_bytes(member_to_bytes(module, ms, {}))
        torch.save(module, workdir / f"member{m}.pt")  # whole module: the stock SpkCalculator input
        paths.append(str(workdir / f"member{m}.pt"))
    return {
        "train_s": train_s,
        "val_force_rmse": trained.val_force_rmse,
        "n_train_frames": len(frames),
        "model": MODELS[args.model],
        "n_atoms": len(start),
        "np_version": np.__version__,
    }


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (MB): VmHWM of /proc/self/status (Linux keeps
    ``ru_maxrss`` across exec, so a child would report its parent's peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_stock(args, workdir: Path, device: str) -> dict:
    """Baseline: every replica alone, ASE BFGS, AverageCalculator of one SpkCalculator per member."""
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # SpkCalculator torch.loads a pickled module
    import numpy as np
    import schnetpack as spk
    from ase.calculators.mixing import AverageCalculator
    from ase.optimize import BFGS
    from schnetpack.interfaces import SpkCalculator

    from al_flows.exploration.shear_geometry import shear_cell, shear_strain
    from al_flows.exploration.shear_steps import run_seed
    from al_flows.potential.deviation import max_force_deviation
    from al_flows.potential.model import energy_reference

    settings = _settings(args, "BFGS")
    start = _start(args)
    cutoff = MODELS[args.model]["cutoff"]
    evals = [0]

    def count(*_):
        evals[0] += 1

    def calculator():
        calcs = [
            SpkCalculator(
                model_file=str(workdir / f"member{m}.pt"),
                neighbor_list=spk.transform.ASENeighborList(cutoff=cutoff),
                energy_unit="eV",
                position_unit="Angstrom",
                device=device,
            )
            for m in range(args.members)
        ]
        for c in calcs:
            # SpkCalculator casts the whole module to float32; the member's EnergyReference keeps its
            # buffers (per-element reference energies) in float64 and needs them back
            energy_reference(c.model).double()
            c.model.register_forward_hook(count)
        return AverageCalculator(calcs)

    warm = start.copy()
    warm.calc = calculator()
    warm.get_forces()  # warm-up: imports, first load and evaluation
    evals[0] = 0
    rss_setup = _rss_mb()
    results = []
    t0 = time.perf_counter()
    n_stock = args.replicas if args.stock_replicas <= 0 else min(args.stock_replicas, args.replicas)
    for r in range(n_stock):
        calc = calculator()
        rng = np.random.default_rng((run_seed(args.seed, 0) & 0xFFFFFFFFFFFFFFFF, r))
        work = start.copy()
        work.calc = calc
        for step in range(1, settings.max_steps + 1):
            work.positions = work.positions + rng.normal(0.0, settings.sigma, size=(len(work), 3))
            work.set_cell(shear_cell(work.cell[:], settings.shear_step), scale_atoms=True)
            opt = BFGS(work, logfile=None, trajectory=None)
            converged = opt.run(fmax=settings.fmax, steps=settings.max_opt_steps)
            energy = float(work.get_potential_energy())
            work.get_forces()
            dev = max_force_deviation(np.stack(calc.results["forces_contributions"]))
            results.append(
                {
                    "run": r,
                    "step": step,
                    "energy": energy,
                    "deviation": float(dev),
                    "converged": bool(converged),
                    "n_opt_steps": int(opt.nsteps),
                    "gamma": shear_strain(work.cell[:]),
                }
            )
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "frames": results, "model_evals": evals[0], "rss_setup_mb": rss_setup}


def _phases() -> dict:
    """What is not the model, by phase (benchmarks/model_time.py PhaseTimer targets): neighbour lists
    (the "ase" engine: matscipy per frame inside the frame inputs; the "torch" engine: the skin
    filter and its rebuilds inside the replica inputs), inputs and collation (containing the
    neighbour lists), and optimiser steps (ASE's per replica, or the batched optimiser's)."""
    import ase.optimize

    import al_flows.exploration.batched_optimisers as opt_module
    import al_flows.exploration.batched_relax as relax_module
    import al_flows.potential.ensemble as ens_module
    import al_flows.potential.inputs as inputs_module
    from al_flows.potential.skin_neighbours import SkinNeighbours

    return {
        "neighbour lists": [(inputs_module, "neighbour_list"), (SkinNeighbours, "_select")],
        "inputs and collation": [
            (ens_module, "frame_inputs"),
            (ens_module, "collate_inputs"),
            (SkinNeighbours, "inputs"),
        ],
        "optimiser steps": [
            (ase.optimize.BFGS, "step"),
            (ase.optimize.LBFGS, "step"),
            (ase.optimize.FIRE, "step"),
            (relax_module, "_fire_step"),
            (opt_module.BatchedBFGS, "step"),
            (opt_module.BatchedLBFGS, "step"),
            (opt_module.BatchedFIRE, "step"),
        ],
    }


def run_batched(
    args, workdir: Path, device: str, optimizer: str, sequential: bool = False, engine: str = "torch"
) -> dict:
    """The batched explorer, or (``sequential``) this package's one-at-a-time explorer
    (:func:`al_flows.exploration.shear_sequential.explore_shear` with the ensemble's ASE calculator)."""
    from al_flows.exploration.shear_batched import explore_shear_batched
    from al_flows.exploration.shear_sequential import explore_shear
    from al_flows.potential.ensemble import Ensemble, EnsembleCalculator

    ensemble = Ensemble.from_bytes(
        [(workdir / f"member{m}.blob").read_bytes() for m in range(args.members)], device=device
    )
    settings = _settings(args, optimizer, engine)
    start = _start(args)
    calls = []

    class Counting:
        """The ensemble, counting the frames of every prediction (of frames, or of model inputs)."""

        settings, device = ensemble.settings, ensemble.device

        def predict(self, frames, **kw):
            calls.append(len(frames))
            return ensemble.predict(frames, **kw)

        def predict_inputs(self, inputs, **kw):
            calls.append(len(inputs))
            return ensemble.predict_inputs(inputs, **kw)

    explore_shear_batched(
        [start],
        ensemble,
        settings.model_copy(update={"n_runs": 2, "max_steps": 1, "max_opt_steps": 3}),
        seed=99,
    )
    rss_setup = _rss_mb()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    from model_time import ModelTimer, PhaseTimer

    with ModelTimer(ensemble.members, device) as timer, PhaseTimer(_phases()) as phase_timer:
        t0 = time.perf_counter()
        if sequential:
            frames = explore_shear([start], EnsembleCalculator(Counting()), settings, seed=args.seed)
        else:
            frames = explore_shear_batched(
                [start], Counting(), settings, seed=args.seed, batch_size=max(args.replicas, 1)
            )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    out = {
        "wall_s": wall,
        "model_s": timer.seconds,
        "phase_s": phase_timer.seconds,
        "rss_setup_mb": rss_setup,
        **({} if sequential else {"predict_calls": len(calls)}),
        "model_evals": sum(calls) * args.members,
        "frames": [
            {k: f.info[k] for k in ("run", "step", "energy", "deviation", "converged", "n_opt_steps", "gamma")}
            for f in frames
        ],
    }
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def child(args) -> int:
    import torch

    import al_flows  # noqa: F401  (schnetpack/torch compatibility patch before schnetpack loads)

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    device = json.loads((workdir / "prepared.json").read_text())["device"]
    kind, optimizer, engine = (args.side.split(":") + ["", "", ""])[:3]
    if kind == "stock":
        out = run_stock(args, workdir, device)
    else:
        out = run_batched(args, workdir, device, optimizer, sequential=kind == "sequential", engine=engine or "torch")
    out["peak_rss_mb"] = _peak_rss_mb()
    out["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(out))
    return 0


def _spawn(args, side: str, workdir: Path, argv: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--workdir", str(workdir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{side} side failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def _line(name: str, res: dict, n_atoms: int, device: str) -> str:
    steps = sum(f["n_opt_steps"] for f in res["frames"])
    conv = sum(f["converged"] for f in res["frames"])
    mem = f"peak RSS {res['peak_rss_mb']:.0f} MB (after setup {res['rss_setup_mb']:.0f} MB)"
    if "cuda_peak_mb" in res:
        mem += f", CUDA peak allocated {res['cuda_peak_mb']:.0f} MB"
    extra = f", {res['predict_calls']} batched predictions" if "predict_calls" in res else ""
    if "model_s" in res:
        extra += f"; model forward+backward {100 * res['model_s'] / res['wall_s']:.0f} % of wall time"
    if "phase_s" in res:
        from model_time import breakdown_text

        nested = {"neighbour lists": "inputs and collation"}  # frame inputs build the neighbour lists
        extra += f" (of the wall time: {breakdown_text(res['wall_s'], res['model_s'], res['phase_s'], nested)})"
    return (
        f"{name:<16} {res['wall_s']:8.2f} s  frames {len(res['frames'])} (converged {conv})  relaxation steps {steps}  "
        f"model evaluations {res['model_evals']}{extra}  {n_atoms * steps / res['wall_s']:,.0f} atoms x steps / s on "
        f"{device}; {mem}"
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    if args.side:
        return child(args)
    import torch

    import al_flows  # noqa: F401

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    with tempfile.TemporaryDirectory(prefix="al_explore_bench_") as tmp:
        workdir = Path(tmp)
        info = prepare(args, workdir)
        info["device"] = device
        (workdir / "prepared.json").write_text(json.dumps(info))
        print(
            f"{args.replicas} replicas of a {info['n_atoms']}-atom Cu-Ni multilayer, {args.steps} shear steps "
            f"(sigma {args.sigma} A, shear step {args.shear_step} A), fmax {args.fmax} eV/A, {args.members} members "
            f"{info['model']}, {args.threads} threads, device {device}; member trained {args.train_epochs} epochs on "
            f"{info['n_train_frames']} EMT frames in {info['train_s']:.1f} s (val force RMSE "
            f"{info['val_force_rmse']:.3f} eV/A)",
            flush=True,
        )
        stock = seq = None
        if not args.only_batched:
            stock = _spawn(args, "stock", workdir, argv)
            print(_line("stock ASE BFGS", stock, info["n_atoms"], device), flush=True)
            seq = _spawn(args, "sequential:BFGS", workdir, argv)
            print(_line("sequential BFGS", seq, info["n_atoms"], device), flush=True)
        batched: dict[tuple[str, str], dict] = {}
        for opt in [args.optimizer] + [o for o in args.also if o != args.optimizer]:
            for engine in args.engines:
                batched[opt, engine] = res = _spawn(args, f"batched:{opt}:{engine}", workdir, argv)
                print(_line(f"batched {opt} ({engine})", res, info["n_atoms"], device), flush=True)
        _compare_engines(batched)
        if stock is not None and seq is not None:
            _compare_stock(
                args, stock, seq, {opt: res for (opt, engine), res in batched.items() if engine == args.engines[0]}
            )
    return 0


def _shares(res: dict) -> dict[str, float]:
    """Model, optimiser, neighbour-list and other shares of a batched side's wall time."""
    wall, phases = res["wall_s"], res["phase_s"]
    out = {
        "model": res["model_s"] / wall,
        "optimiser": phases["optimiser steps"] / wall,
        "neighbour lists": phases["neighbour lists"] / wall,
        "other inputs and collation": (phases["inputs and collation"] - phases["neighbour lists"]) / wall,
    }
    out["rest"] = 1.0 - sum(out.values())
    return out


def _compare_engines(batched: dict[tuple[str, str], dict]) -> None:
    """For each optimiser run with both engines: the shares of each, the frames' agreement and the
    ratio of total exploration time (ase / torch, measured in this run)."""
    for opt in dict.fromkeys(o for o, _ in batched):
        old, new = batched.get((opt, "ase")), batched.get((opt, "torch"))
        if old is None or new is None:
            continue
        so, sn = _shares(old), _shares(new)
        text = ", ".join(f"{k} {100 * so[k]:.1f} % -> {100 * sn[k]:.1f} %" for k in so)
        print(f"engines {opt}, share of wall time ase -> torch: {text}")
        pairs = list(zip(old["frames"], new["frames"]))
        same = len(old["frames"]) == len(new["frames"]) and all(
            (a["run"], a["step"]) == (b["run"], b["step"]) for a, b in pairs
        )
        same_steps = sum(a["n_opt_steps"] == b["n_opt_steps"] for a, b in pairs)
        de = max((abs(a["energy"] - b["energy"]) for a, b in pairs), default=0.0)
        dd = max((abs(a["deviation"] - b["deviation"]) for a, b in pairs), default=0.0)
        print(
            f"engines {opt}, frames: same runs and steps {same}; same relaxation steps in {same_steps} of "
            f"{len(pairs)} frames; max |dE| {de:.2e} eV, max |d deviation| {dd:.2e} eV/A"
        )
        rest_old, rest_new = old["wall_s"] - old["model_s"], new["wall_s"] - new["model_s"]
        print(
            f"engines {opt}: total exploration time ase / torch = {old['wall_s'] / new['wall_s']:.2f}x "
            f"({old['wall_s']:.2f} s / {new['wall_s']:.2f} s; in the model {old['model_s']:.2f} s / "
            f"{new['model_s']:.2f} s, outside it {rest_old:.2f} s / {rest_new:.2f} s = {rest_old / rest_new:.1f}x; "
            f"at equal model time, which other load on the machine changes between the sides: "
            f"{sn['model'] / so['model']:.2f}x)"
        )


def _compare_stock(args, stock: dict, seq: dict, batched: dict[str, dict]) -> None:
    """The stock side against the batched sides (speed-ups; the BFGS frames checked step for step)."""
    import numpy as np

    main_res = batched[args.optimizer]
    bfgs = batched.get("BFGS")
    stock_wall = stock["wall_s"]
    if bfgs is not None:
        measured = {(f["run"], f["step"]) for f in stock["frames"]}
        mine = [f for f in bfgs["frames"] if (f["run"], f["step"]) in measured]
        same_steps = [f["n_opt_steps"] for f in stock["frames"]] == [f["n_opt_steps"] for f in mine]
        de = max(abs(a["energy"] - b["energy"]) for a, b in zip(stock["frames"], mine))
        dd = max(abs(a["deviation"] - b["deviation"]) for a, b in zip(stock["frames"], mine))
        print(
            "check stock vs batched BFGS on the stock side's frames: "
            f"same relaxation steps per frame: {same_steps}; "
            f"max |dE| {de:.2e} eV, max |d deviation| {dd:.2e} eV/A "
            "(float32 stock casts, ASE vs matscipy neighbour lists)"
        )
        if len(stock["frames"]) < len(bfgs["frames"]):
            scale = sum(f["n_opt_steps"] + 1 for f in bfgs["frames"]) / sum(
                f["n_opt_steps"] + 1 for f in stock["frames"]
            )
            stock_wall = stock["wall_s"] * scale
            print(
                f"stock side measured on {len({f['run'] for f in stock['frames']})} of {args.replicas} replicas "
                f"({stock['wall_s']:.1f} s); scaled by relaxation steps (+1 each) to all {args.replicas}: "
                f"{stock_wall:.1f} s"
            )
    elif len(stock["frames"]) < args.replicas * args.steps:
        raise SystemExit(
            "scaling a partial stock side needs the batched BFGS run's step counts: add BFGS or --stock-replicas 0"
        )
    if bfgs is not None:
        print(
            f"speedup sequential/batched BFGS = {seq['wall_s'] / bfgs['wall_s']:.1f}x "
            "(this package's one-at-a-time explorer, one ensemble prediction per step, vs batched)"
        )
    for opt, res in batched.items():
        if opt != args.optimizer:
            print(f"speedup stock/batched {opt} = {stock_wall / res['wall_s']:.1f}x")
    print(
        f"speedup stock/batched = {stock_wall / main_res['wall_s']:.1f}x "
        f"(stock ASE BFGS + SpkCalculator per replica vs batched {args.optimizer}, "
        f"{np.round(main_res['wall_s'], 2)} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
