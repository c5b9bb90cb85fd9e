"""The latency-model refit bench (issue 15): refitted on a profile file's own timings with its own
kernel grid it reproduces the file's held-out error exactly; with no grid the grid feature is 0
everywhere, so the fit is format 4's features on the same timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import latency_model_refit as refit  # noqa: E402


def test_the_refit_reproduces_the_file_and_drops_only_the_grid(tiny_profile, tiny_space, capsys):
    data = json.loads(tiny_profile.read_text())
    same = refit.refit(data, kernels=data["kernels"], space_path=tiny_space)
    assert same["mode"] == data["error"]["mode"]
    numbers = [k for k, v in data["error"].items() if isinstance(v, float)]
    assert len(numbers) >= 6 and {k: same[k] for k in numbers} == pytest.approx({k: data["error"][k] for k in numbers}, rel=1e-9)
    without = refit.refit(data, kernels={}, space_path=tiny_space)
    assert without["models"] == data["error"]["models"] and set(without) == set(data["error"])
    assert refit.main([str(tiny_profile), "--space", str(tiny_space)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and "kernel grid (format 5)" in table[2] and "format 4's features" in table[3]
    assert f"| {data['error']['within_10pct']:.1%} |" in table[2]


def test_a_file_of_another_space_is_refused(tiny_profile):
    data = json.loads(tiny_profile.read_text())
    with pytest.raises(SystemExit, match="are not the file's"):
        refit.refit(data, kernels={}, space_path=refit.default_space_path())
