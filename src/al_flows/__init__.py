"""al_flows: active learning of SchNet interatomic potentials as jobflow workflows."""

__version__ = "0.2.0"


# schnetpack 2.1.1 imports ``T_co`` from ``torch.utils.data.dataloader``, which torch >= 2.7 no
# longer defines. The installed al_flows_schnetpack_compat.pth already put an import hook in place
# at interpreter start; importing the module again (a no-op then) covers a source tree on
# PYTHONPATH. The hook restores ``T_co`` when schnetpack is first imported, so importing
# al_flows does not import torch (docs/dependencies.md).
import al_flows_schnetpack_compat  # noqa: E402,F401


def ignore_jobflow_cd_warning() -> None:
    """Hide the one FutureWarning that jobflow's ``run_locally`` raises on every call: it uses
    monty's deprecated ``cd`` (jobflow's to change, nothing a user can act on). Only that message,
    only from jobflow's modules; every other warning is shown as before."""
    import warnings

    warnings.filterwarnings("ignore", message="cd is deprecated", category=FutureWarning, module="jobflow")


# the Python API runs flows with jobflow's run_locally itself (docs/python_api.md), the CLI too
ignore_jobflow_cd_warning()
