"""Each data module imports on its own, in a fresh interpreter (no import circle between them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DATA_MODULES = [
    "miaudit.data",
    "miaudit.data.base",
    "miaudit.data.datasets",
    "miaudit.data.fashion_mnist",
    "miaudit.data.idx",
    "miaudit.data.info",
    "miaudit.data.splits",
]


@pytest.mark.parametrize("module", DATA_MODULES)
def test_module_imports_alone(module: str) -> None:
    # Importing the submodule first (before its package finishes) is what exposes a circle: a name
    # taken from a half-initialised module raises ImportError.
    code = f"import importlib; importlib.import_module({module!r}); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_dataset_is_one_class() -> None:
    from miaudit.data import Dataset
    from miaudit.data.base import Dataset as BaseDataset
    from miaudit.data.datasets import Dataset as DatasetsDataset

    assert Dataset is BaseDataset is DatasetsDataset


def _data_imports(module: str) -> set[str]:
    """Data modules that ``module`` imports anywhere in its source (top level or inside functions)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in DATA_MODULES and n != "miaudit.data")
    return found


def test_data_import_graph_has_no_circle() -> None:
    """The dependency runs one way, datasets -> fashion_mnist -> (base, idx, info), even inside functions."""
    graph = {m: _data_imports(m) for m in DATA_MODULES if m != "miaudit.data"}
    assert graph["miaudit.data.fashion_mnist"] == {"miaudit.data.base", "miaudit.data.idx", "miaudit.data.info"}
    assert "miaudit.data.fashion_mnist" in graph["miaudit.data.datasets"]
    state: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import circle: {' -> '.join((*path, node))}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, (*path, node))
        state[node] = 2

    for m in graph:
        visit(m, ())
