"""Shared fixtures: a tiny search space and settings that make one real trial take seconds."""

from __future__ import annotations

import os

# The suite trains tiny networks (16 px, a few hundred images), where a second torch thread only
# adds synchronisation, and on a 2-core machine shared with the suite's own worker processes it
# made the same 3-trial search test take 12 to 71 s instead of 14 to 15 s (measured side by side,
# docs/BENCHMARKS.md "Test suite"). So every test process, and every CLI process a test starts,
# runs one thread unless the caller set OMP_NUM_THREADS; tests about threads set their own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from spaces import default_space_path

# Small real networks: every stage one block deep, narrow, ghost ratio and cheap kernel free.
TINY_STAGE = {"depth": 1, "kernel": {"choices": [3, 5]}, "se": {"choices": [0, 0.25]}}


@pytest.fixture
def one_line_refusal() -> Callable[..., str]:
    """``one_line_refusal(error, message, call)``: assert that ``call()`` raises ``error`` whose
    text holds ``message`` and is one line (what a user sees); returns that text."""

    def check(error: type[BaseException], message: str, call: Callable[[], object]) -> str:
        with pytest.raises(error) as caught:
            call()
        text = str(caught.value)
        assert message in text, text
        assert "\n" not in text, text
        return text

    return check


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


@pytest.fixture(scope="session")
def tiny_profile(tiny_space, tmp_path_factory) -> Path:
    """A real ``profile`` of the tiny space at 16 px (short timing caps): a latency-model file."""
    import json

    from evaluators.profile import ProfileSettings, profile
    from spaces import load_space

    root = tmp_path_factory.mktemp("profile")
    settings = ProfileSettings(input_size=16, models=4, holdout=4, unit_seconds=0.1, model_seconds=0.2, progress=False)
    path = root / "device.json"
    path.write_text(json.dumps(profile(settings, load_space(tiny_space), cache_dir=root)))
    return path
