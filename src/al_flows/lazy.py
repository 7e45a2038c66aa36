"""Lazy public names of a subpackage: ``from al_flows.potential import Ensemble`` imports
``al_flows.potential.ensemble`` on first use, so that importing one module of a subpackage (say
``al_flows.potential.deviation``) does not import the rest of it (torch, schnetpack, pymatgen).

Each subpackage's ``__init__`` lists its public names once, in ``EXPORTS`` (name -> module)::

    EXPORTS = {"Ensemble": "ensemble", ...}
    __all__ = list(EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
"""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package`` that import ``package.<module>`` for a name of
    ``exports`` (name -> module, relative to the package) when it is first looked up."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value  # found directly next time
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
