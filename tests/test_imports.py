"""The packages' one-way imports, checked where they are cheap to break: reading a study needs
neither torch nor the search, and the CLI wires public names only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_results_loads_neither_torch_nor_the_search():
    code = "import sys, results; print(sorted(m for m in ('torch', 'search', 'evaluators', 'spaces._model') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_model_builder_still_loads_on_first_use():
    code = "import sys, spaces; assert 'torch' not in sys.modules; from spaces import build_model; print(build_model.__module__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["spaces._model", "True"]


def test_cli_imports_no_private_module():
    tree = ast.parse((ROOT / "cli.py").read_text())
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert any(m.startswith("search") for m in modules)  # the walk sees the lazy imports inside functions
    private = [m for m in modules if any(part.startswith("_") and part != "__future__" for part in m.split("."))]
    assert private == []
