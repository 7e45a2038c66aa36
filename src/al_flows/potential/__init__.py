"""The potential: model settings and members (SchNet, PaiNN or SO3net, ``ModelSettings.kind``),
ensembles (mean prediction, model deviation, ASE calculator) and training.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "ModelSettings": "model",
    "TrainingSettings": "model",
    "build_member": "model",
    "member_to_bytes": "weights",
    "member_from_bytes": "weights",
    "Ensemble": "ensemble",
    "EnsembleCalculator": "ensemble",
    "EnsemblePrediction": "ensemble",
    "Trainer": "training",
    "train_member": "training",
    "TrainingDivergedError": "training",
    "max_force_deviation": "deviation",
}
__all__ = [
    "ModelSettings",
    "TrainingSettings",
    "build_member",
    "member_to_bytes",
    "member_from_bytes",
    "Ensemble",
    "EnsembleCalculator",
    "EnsemblePrediction",
    "Trainer",
    "train_member",
    "TrainingDivergedError",
    "max_force_deviation",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.potential.deviation import max_force_deviation
    from al_flows.potential.ensemble import Ensemble, EnsembleCalculator, EnsemblePrediction
    from al_flows.potential.model import ModelSettings, TrainingSettings, build_member
    from al_flows.potential.training import Trainer, TrainingDivergedError, train_member
    from al_flows.potential.weights import member_from_bytes, member_to_bytes
