"""Shared fixtures: a tiny search space and settings that make one real trial take seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spaces import default_space_path

# Small real networks: every stage one block deep, narrow, ghost ratio and cheap kernel free.
TINY_STAGE = {"depth": 1, "kernel": {"choices": [3, 5]}, "se": {"choices": [0, 0.25]}}


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory) -> Path:
    space = yaml.safe_load(default_space_path().read_text())
    space["width"] = {"choices": [0.35, 0.5]}
    space["ratio"] = {"choices": [2, 3]}
    space["dw_size"] = {"choices": [1, 3]}
    for stage in space["stages"]:
        low_exp, low_out = stage["exp"]["low"], stage["out"]["low"]
        stage.update(TINY_STAGE, exp={"low": low_exp, "high": low_exp + 16, "step": 8}, out=low_out)
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture
def fast_flags(tiny_space, tmp_path) -> list[str]:
    """CLI flags for a search whose trials take a few seconds each on a 2-core CPU."""
    return [
        "--space", str(tiny_space), "--out", str(tmp_path / "run"), "--subset", "300", "--epochs", "1",
        "--input-size", "16", "--no-baselines", "--no-progress", "--seed", "0",
    ]
