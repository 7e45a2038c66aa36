"""al_flows: active learning of SchNet interatomic potentials as jobflow workflows."""

__version__ = "0.1.0"


def _patch_schnetpack_torch_compat() -> None:
    """schnetpack 2.1.1 imports ``T_co`` from ``torch.utils.data.dataloader``, which
    torch >= 2.7 no longer defines; restore that type variable before schnetpack loads.
    """
    import typing

    try:
        import torch.utils.data.dataloader as _dl
    except ImportError:  # torch missing: the error surfaces where torch is used
        return
    if not hasattr(_dl, "T_co"):
        _dl.T_co = typing.TypeVar("T_co", covariant=True)


_patch_schnetpack_torch_compat()
