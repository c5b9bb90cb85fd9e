"""Nothing user-supplied is unpickled or evaluated, and a storage password is never printed.

The first test reads every Python file of the project (not tests, not .venv) as a syntax tree and fails on
any way of running data as code: pickle and friends, eval/exec, torch.load without
``weights_only=True``, YAML's unsafe loaders, numpy/pandas pickle loading, TorchScript loading,
and shell=True. ``ast.literal_eval`` (the py export reader) is plain data and allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from search import SearchError, SearchSettings, mask_url, open_storage

REPO = Path(__file__).resolve().parents[2]
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
UNSAFE_CALLS = {"eval", "exec", "execfile", "__import__"}
UNSAFE_ATTRS = {
    "unsafe_load", "full_load", "unsafe_load_all", "full_load_all", "read_pickle", "to_pickle", "UnsafeLoader",
    "FullLoader", "Unpickler",
}  # fmt: skip


def _project_files() -> list[Path]:
    """The code that handles user input: every .py file but the tests (one of which runs a py
    export it wrote itself, to show the official code could) and third-party code."""
    skip = {"tests", ".venv", "venv", ".git", "build", "dist", "node_modules", "__pycache__", ".pytest_cache"}
    return sorted(p for p in REPO.rglob("*.py") if not skip & set(p.relative_to(REPO).parts))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _problems(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in UNSAFE_ATTRS:
            found.append(f"{where}: {_dotted(node)}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS:
                found.append(f"{where}: {name}()")
            elif name.endswith("torch.load"):
                weights_only = _keyword(node, "weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            if name.endswith("yaml.load") or name.endswith("yaml.load_all"):
                found.append(f"{where}: {name} (use yaml.safe_load)")
            if name.endswith("jit.load"):
                found.append(f"{where}: {name} runs TorchScript code")
            allow_pickle = _keyword(node, "allow_pickle")
            if isinstance(allow_pickle, ast.Constant) and allow_pickle.value is True:
                found.append(f"{where}: {name}(allow_pickle=True)")
            shell = _keyword(node, "shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                found.append(f"{where}: {name}(shell=True)")
    return found


def test_nothing_user_supplied_is_unpickled_or_evaluated():
    files = _project_files()
    assert len(files) > 20 and any(p.name == "cli.py" for p in files)
    problems = [problem for path in files for problem in _problems(path)]
    assert not problems, "\n".join(problems)


def test_the_scanner_catches_what_it_looks_for(monkeypatch):
    bad = REPO / "tests" / "reliability" / "_scanner_probe.py"
    source = (
        "import pickle\nimport torch, yaml, numpy as np\n"
        "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\ntorch.load('m.pt', weights_only=True)\n"
        "yaml.load(s)\nyaml.unsafe_load(s)\neval('1')\nexec('x=1')\nnp.load('a.npy', allow_pickle=True)\n"
        "import ast\nast.literal_eval('1')\n"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    problems = sorted(p.split(": ", 1)[1] for p in _problems(bad))
    assert problems == sorted([
        "import pickle", "torch.load without weights_only=True", "torch.load without weights_only=True",
        "yaml.load (use yaml.safe_load)", "yaml.unsafe_load", "eval()", "exec()", "np.load(allow_pickle=True)",
    ])  # fmt: skip


@pytest.mark.parametrize("password", ["pl4in-secret", "p@ss:w/rd!", "sp%40ce-d", "ü-nïcode-pw"])
def test_a_storage_password_never_reaches_a_message_or_the_saved_settings(password):
    url = f"postgresql://ghost:{password}@127.0.0.1:1/studies"
    with pytest.raises(SearchError) as info:
        open_storage(url)  # nothing listens on port 1: refused at once
    message = str(info.value)
    assert password not in message and "***" in message and len(message.splitlines()) == 1
    assert password not in mask_url(url)
    assert password not in repr(SearchSettings(storage=url).to_dict())
