"""The package's floors: every module imports only its own floor and the floors below it
(ARCHITECTURE.md's one-directional data path), and the SEVERE package's modules form no import cycle.

Read from the source (every ``import`` of a module, also inside functions, except under
``TYPE_CHECKING``), so a lazy import that points the wrong way is found too.
"""

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vssl"

#: the floors, lowest first; a top-level module of ``vssl`` not listed is on the ground floor
FLOORS = [
    {"vssl"},  # ground floor: errors, config, typed, tasks, metrics, distributed, serialization ...
    {"vssl.data", "vssl.models"},
    {"vssl.methods"},
    {"vssl.engine"},
    {"vssl.severe"},
    {"vssl.viz", "vssl.demo", "vssl.cli"},
]
#: (importer, imported): ``vssl.config`` validates ``method.params`` against the registry, which imports a
#: method's module only when that method is asked for
ALLOWED = {("vssl.config", "vssl.methods")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The ``vssl`` modules ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "vssl")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "vssl":
                # `from vssl.severe import analysis` imports a submodule; `from vssl.tasks import TASKS` a module
                found.update(f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in MODULES else child.module
                             for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _floor(module: str) -> int:
    parts = module.split(".")
    for depth in (2, 1):
        prefix = ".".join(parts[:depth])
        for i, floor in enumerate(FLOORS):
            if prefix in floor:
                return i
    raise AssertionError(f"{module}: on no floor")


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_a_higher_floor():
    assert len(MODULES) > 80
    wrong = []
    for name, path in sorted(MODULES.items()):
        for target in _imports(path):
            if _floor(target) > _floor(name) and (name, _package(target)) not in ALLOWED:
                wrong.append(f"{name} -> {target}")
    assert wrong == []
    # what it catches: a method importing the engine's process-group helpers, as MoCo did
    assert _floor("vssl.engine.distributed") > _floor("vssl.methods.moco")


def test_the_method_registry_names_no_module_above_methods():
    """The registry imports its entries by name: the log-count head used to be one in ``vssl.severe``."""
    from vssl.methods import _ENTRIES

    assert {name: entry for name, entry in _ENTRIES.items()
            if _floor(entry.partition(":")[0]) > _floor("vssl.methods")} == {}


def test_the_import_graph_has_no_cycle():
    """Over the whole package, lazy imports included (backbones <-> weights <-> convert and
    report.py <-> analysis.py were cycles); the registry's one allowed upward edge is left out."""
    graph = {n: {t for t in _imports(p) if t in MODULES and t != n and (n, _package(t)) not in ALLOWED}
             for n, p in MODULES.items()}
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_data_and_models_do_not_import_each_other():
    """The two packages of the first floor are independent: a dataset needs no model and back."""
    across = [f"{n} -> {t}" for n, p in MODULES.items() for t in _imports(p)
              if {_package(n), _package(t)} == {"vssl.data", "vssl.models"}]
    assert across == []


def test_command_adapters_are_imported_by_the_cli_alone():
    """A package's ``commands.py`` adapts it to the command line; nothing but ``vssl.cli`` (which names
    them as strings) builds on an adapter."""
    users = [f"{n} -> {t}" for n, p in MODULES.items() for t in _imports(p)
             if t.endswith(".commands") and _package(t) != _package(n)]
    assert users == []


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported while no other vssl module is loaded (torch stays loaded), so no import works
    only thanks to an earlier one."""
    script = (
        "import importlib, sys, torch\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'vssl' or m.startswith('vssl.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        print(f'{name}: {type(e).__name__}: {e}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr[-2000:]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_floors_cover_every_package():
    by_floor = defaultdict(set)
    for name in MODULES:
        by_floor[_floor(name)].add(_package(name))
    assert {"vssl.tasks", "vssl.metrics"} <= by_floor[0] and "vssl.severe" in by_floor[4]
