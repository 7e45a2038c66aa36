"""The package's layers (docs/architecture.md): imports only run downward, no import circles, no
private name imported from another module, every subpackage's small public API resolves, and no
module or function is over its size limit.

The import graph is read with ``ast`` from the source files (nothing is imported), so an import
inside a function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import from its own subpackage and from lower layers only; packages
# of one layer (siblings) may not import each other. Top-level modules name their own layer
# ("" is al_flows/__init__.py).
LAYERS: list[set[str]] = [
    {"", "settings", "plotting", "lazy"},
    {"frames"},
    {"structures"},
    {"potential"},
    {"exploration"},
    {"selection", "labelling"},
    {"validation"},
    {"workflow"},
    {"active_learning", "pool_study"},
    {"campaign"},
    {"cli_text"},
    {"cli"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "al_flows").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported al_flows module, imported name or None, line) of every import in ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "al_flows"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - (node.level - 1)] + ([base] if base else []))
            if base.split(".")[0] != "al_flows":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return out


EDGES = [(m, *imp) for m, path in MODULES.items() for imp in _imports(m, path)]


def test_the_graph_is_read():
    assert len(MODULES) > 50
    assert (
        "al_flows.campaign.active_learning_workflow",
        "al_flows.active_learning.flows",
        "ActiveLearningMaker",
    ) in {e[:3] for e in EDGES}


def test_every_import_names_an_al_flows_module():
    unknown = sorted({f"{m}:{line}: {t}" for m, t, _, line in EDGES if t not in MODULES})
    assert not unknown, unknown


def test_imports_only_run_downward():
    bad = []
    for m, target, _, line in EDGES:
        a, b = _unit(m), _unit(target)
        if a == b:
            continue
        assert a in RANK and b in RANK, f"{a or b!r} is in no layer of LAYERS"
        if RANK[b] >= RANK[a]:
            bad.append(f"{m}:{line} imports {target} ({b}, layer {RANK[b]}) from {a} (layer {RANK[a]})")
    assert not bad, "\n".join(sorted(set(bad)))


def test_no_import_cycles():
    graph = {m: set() for m in MODULES}
    for m, target, _, _ in EDGES:
        if target in graph and target != m:
            graph[m].add(target)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not found, found


def test_no_private_name_is_imported_from_another_module():
    bad = sorted(
        {
            f"{m}:{line} imports {t}.{n}"
            for m, t, n, line in EDGES
            if n is not None and n.startswith("_") and not n.startswith("__") and t != m
        }
    )
    assert not bad, bad


# Size limits: a module holds one concept and a function does one thing.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80  # from ``def`` to the function's last line (decorators not counted)
# Known offenders (none now; a new entry needs a comment saying why and who splits it):
KNOWN_LONG_MODULES: set[str] = set()
KNOWN_LONG_FUNCTIONS: set[str] = set()


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, lines) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def test_no_module_is_over_the_line_limit():
    long = {m: len(path.read_text().splitlines()) for m, path in MODULES.items()}
    bad = sorted(f"{m}: {n} lines" for m, n in long.items() if n > MAX_MODULE_LINES and m not in KNOWN_LONG_MODULES)
    assert not bad, f"modules over {MAX_MODULE_LINES} lines (split them by concept): " + "; ".join(bad)


def test_no_function_is_over_the_line_limit():
    bad = []
    for m, path in MODULES.items():
        for name, n in _functions(ast.parse(path.read_text(), str(path))):
            if n > MAX_FUNCTION_LINES and f"{m}:{name}" not in KNOWN_LONG_FUNCTIONS:
                bad.append(f"{m}:{name}: {n} lines")
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines (split them): " + "; ".join(sorted(bad))


SUBPACKAGES = sorted({m.split(".")[1] for m in MODULES if m.count(".") >= 2})


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_public_api(name):
    """Every subpackage exports a small API: ``__all__`` = the keys of ``EXPORTS``, each name found."""
    pkg = importlib.import_module(f"al_flows.{name}")
    assert pkg.__all__ == list(pkg.EXPORTS), name
    assert 0 < len(pkg.__all__) <= 20
    for export in pkg.__all__:
        assert getattr(pkg, export) is getattr(
            importlib.import_module(f"al_flows.{name}.{pkg.EXPORTS[export]}"), export
        )
    assert set(pkg.__all__) <= set(dir(pkg))


def test_importing_one_module_does_not_import_its_whole_subpackage():
    # the public names are imported on first use, so the science of the lower layers stays light
    code = (
        "import sys; import al_flows.exploration.shear, al_flows.frames.dataset, al_flows.potential.deviation; "
        "print(sorted(m for m in ('torch', 'schnetpack', 'pymatgen', 'jobflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
