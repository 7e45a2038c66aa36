"""The training loss and the per-structure errors of a member on labelled frames.

Loss per structure: ``rho * (E - E_hat)^2 + (1/N) * sum_k |F_k - F_hat_k|^2`` with E the total energy
(eV), N the atoms of the structure and F the force vectors (eV/Angstrom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import schnetpack.properties as P
import torch

from al_flows.potential.training_data import TrainingData

__all__ = ["FrameErrors", "frame_errors", "per_frame_loss"]


def per_frame_loss(
    out: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    e_true: torch.Tensor,
    f_true: torch.Tensor,
    rho: float,
) -> torch.Tensor:
    """rho * dE^2 + mean over atoms of |dF|^2, one value per structure."""
    de = (out[P.energy] - e_true).to(torch.float32)
    df2 = ((out[P.forces] - f_true) ** 2).sum(dim=1)
    n_atoms = batch[P.n_atoms]
    f_term = torch.zeros(n_atoms.shape[0], dtype=df2.dtype, device=df2.device).index_add(0, batch[P.idx_m], df2)
    return rho * de**2 + f_term / n_atoms.to(df2.dtype)


@dataclass
class FrameErrors:
    """Per-structure errors of a model on labelled frames (one entry per frame, in the order asked).

    ``loss``: the training loss of each structure (rho * dE^2 + mean_i |dF_i|^2);
    ``force_error``: mean over atoms of the force-error vector norm |F_pred,i - F_i| (eV/A);
    ``energy_error_per_atom``: (E_pred - E)/N (eV/atom); ``force_sq_sum``: sum of squared force
    components errors (eV^2/A^2) and ``n_force_components`` (3N) for pooled RMSEs.
    """

    loss: np.ndarray
    force_error: np.ndarray
    energy_error_per_atom: np.ndarray
    force_sq_sum: np.ndarray
    n_force_components: np.ndarray

    def summary(self) -> dict:
        """loss (mean), force_rmse (per component, eV/A), force_mae (mean of ``force_error``),
        energy_rmse_per_atom (eV/atom)."""
        n = len(self.loss)
        if n == 0:
            nan = float("nan")
            return {"loss": nan, "force_rmse": nan, "force_mae": nan, "energy_rmse_per_atom": nan}
        return {
            "loss": float(self.loss.mean()),
            "force_rmse": float(np.sqrt(self.force_sq_sum.sum() / self.n_force_components.sum())),
            "force_mae": float(self.force_error.mean()),
            "energy_rmse_per_atom": float(np.sqrt(np.mean(self.energy_error_per_atom**2))),
        }


def frame_errors(module: torch.nn.Module, data: TrainingData, idx, rho: float, batch_size: int = 64) -> FrameErrors:
    """Per-structure errors of ``module`` (put in eval mode) on the frames ``idx`` of ``data``."""
    idx = np.asarray(idx, dtype=int)
    module.eval()
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("loss", "force_error", "energy_error_per_atom", "force_sq_sum", "n_force_components")
    }
    for b in range(0, len(idx), batch_size):
        sel = idx[b : b + batch_size]
        batch, e_true, f_true = data.batch(sel)
        out = module(batch)
        with torch.no_grad():
            n_atoms = batch[P.n_atoms]
            idx_m = batch[P.idx_m]
            df = out[P.forces].detach() - f_true
            norm = torch.zeros(len(sel), dtype=df.dtype, device=df.device).index_add(0, idx_m, df.norm(dim=1))
            sq = torch.zeros(len(sel), dtype=df.dtype, device=df.device).index_add(0, idx_m, (df**2).sum(dim=1))
            cols["loss"].append(per_frame_loss(out, batch, e_true, f_true, rho).detach().cpu().double().numpy())
            cols["force_error"].append((norm / n_atoms.to(df.dtype)).cpu().double().numpy())
            cols["energy_error_per_atom"].append(((out[P.energy].detach() - e_true) / n_atoms).cpu().double().numpy())
            cols["force_sq_sum"].append(sq.cpu().double().numpy())
            cols["n_force_components"].append((3 * n_atoms).cpu().numpy())
    if not len(idx):
        return FrameErrors(*(np.zeros(0) for _ in cols))
    return FrameErrors(**{k: np.concatenate(v) for k, v in cols.items()})
