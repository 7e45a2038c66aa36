"""Lets schnetpack 2.1.1 import under torch >= 2.7, without importing torch at start-up.

schnetpack 2.1.1 does ``from torch.utils.data.dataloader import T_co``; torch 2.7 dropped that
type variable. ``al_flows_schnetpack_compat.pth`` (installed into site-packages next to this
module) imports this module at interpreter start; the import only puts a finder on
``sys.meta_path`` (no torch import: ``python -X importtime -c pass`` shows it). The first time
``schnetpack`` is imported, the finder restores ``T_co`` in ``torch.utils.data.dataloader``
(torch is imported then, as schnetpack would anyway), removes itself and lets the ordinary
finders load schnetpack. See docs/dependencies.md.
"""

import sys  # already loaded at start-up; nothing else is imported here

__all__ = ["install", "patch_torch"]


def patch_torch() -> None:
    """Define ``torch.utils.data.dataloader.T_co`` (covariant TypeVar) where torch lacks it."""
    import typing

    try:
        import torch.utils.data.dataloader as dataloader
    except ImportError:  # torch missing: schnetpack's own import error says so
        return
    if not hasattr(dataloader, "T_co"):
        setattr(dataloader, "T_co", typing.TypeVar("T_co", covariant=True))  # an attribute torch no longer has


class _SchnetpackHook:
    """Meta-path finder that never finds anything: it patches torch just before schnetpack loads."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "schnetpack":
            _remove()
            patch_torch()
        return None  # the ordinary finders load the module


def _remove() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SchnetpackHook)]


def install() -> None:
    """Put the hook first on ``sys.meta_path`` (once); patch at once if schnetpack is loading or loaded."""
    if "schnetpack" in sys.modules:
        patch_torch()
        return
    if not any(type(f).__name__ == "_SchnetpackHook" for f in sys.meta_path):
        sys.meta_path.insert(0, _SchnetpackHook())


install()
