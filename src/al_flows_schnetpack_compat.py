"""Lets schnetpack 2.1.1 import under torch >= 2.7, without importing torch at start-up.

schnetpack 2.1.1 does ``from torch.utils.data.dataloader import T_co``; torch 2.7 dropped that
type variable. ``al_flows_schnetpack_compat.pth`` (installed into site-packages next to this
module) imports this module at interpreter start; the import only puts a finder on
``sys.meta_path`` (no torch import: ``python -X importtime -c pass`` shows it). The first time
``schnetpack`` is imported, the finder restores ``T_co`` in ``torch.utils.data.dataloader``
(torch is imported then, as schnetpack would anyway), removes itself and lets the ordinary
finders load schnetpack.

schnetpack 2.1.1's import also runs ``logging.basicConfig(level="INFO")`` (in
``schnetpack/md/parsers/orca_parser.py``): a stderr handler on the root logger, which would print
every jobflow log line a second time (jobflow's ``run_locally`` has its own stdout handler) and
every other library's INFO lines. The finder loads schnetpack through :class:`_RootLoggingGuard`,
which takes the root logger's handlers and level back to what they were before the import. See
docs/dependencies.md.
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


class _RootLoggingGuard:
    """Loader of schnetpack: the ordinary ``loader``'s, and the root logger's handlers and level
    afterwards as they were before (whatever schnetpack's import added is removed)."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        import logging

        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            self._loader.exec_module(module)
        finally:
            for handler in [h for h in root.handlers if h not in handlers]:
                root.removeHandler(handler)
            root.setLevel(level)

    def __getattr__(self, name):  # get_resource_reader, get_filename, is_package, ...: the ordinary loader's
        return getattr(self._loader, name)


class _SchnetpackHook:
    """Meta-path finder for schnetpack: patches torch just before schnetpack loads, and loads it
    with the ordinary finders' spec through :class:`_RootLoggingGuard`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "schnetpack":
            return None
        _remove()
        patch_torch()
        import importlib.util

        spec = importlib.util.find_spec(fullname)  # the ordinary finders (this one is gone)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # nothing to guard: the import system reports what it finds itself
        spec.loader = _RootLoggingGuard(spec.loader)
        return spec


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
