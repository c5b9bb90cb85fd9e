"""Exports and plots are written to a temporary name and renamed into place: a write that is
killed, interrupted or runs out of disk leaves the previous file whole, never half of a new one.

The kill test is certain, not lucky: the writer process is made to stop halfway through its
write (after half the text is on disk) and is killed with SIGKILL right there.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from results import ResultsError, export, load_trials, pareto_front, render, write_plots
from spaces import _files

REPO = Path(__file__).resolve().parents[2]

# Runs in its own process: export or write_plots with the N-th file write stopped halfway.
WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import optuna
from results import export, load_trials, pareto_front, write_plots
url, name, target, what, stop_at = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
frame = load_trials(optuna.load_study(study_name=name, storage=url))
real_fdopen, writes = os.fdopen, [0]

class HalfThenHang:
    def __init__(self, stream):
        self.stream = stream
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.stream.__exit__(*exc)
    def __getattr__(self, attr):
        return getattr(self.stream, attr)
    def write(self, text):
        self.stream.write(text[: len(text) // 2])
        self.stream.flush()
        open(os.path.join(os.path.dirname(target), "halfway"), "w").close()
        while True:
            time.sleep(1)

def fdopen(*args, **kwargs):
    stream = real_fdopen(*args, **kwargs)
    writes[0] += 1
    return HalfThenHang(stream) if writes[0] == stop_at else stream

os.fdopen = fdopen
if what == "plots":
    write_plots(frame, target)
else:
    export(pareto_front(frame), fmt=what, path=target)
"""


@pytest.fixture
def frame(small_study):
    return load_trials(optuna.load_study(study_name=small_study.name, storage=small_study.url))


def kill_halfway(small_study, target: Path, what: str, stop_at: int) -> None:
    """Run the writer until its ``stop_at``-th file write is half done, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(REPO), small_study.url, small_study.name, str(target), what, str(stop_at)],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    halfway = target.parent / "halfway"
    try:
        for _ in range(1200):
            if halfway.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert halfway.exists(), f"the writer never reached its write: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("fmt", ["csv", "json", "py"])
def test_export_killed_halfway_leaves_the_old_file_whole(small_study, frame, tmp_path, fmt):
    front = pareto_front(frame)
    target = tmp_path / "out" / f"front.{fmt}"
    old = export(front.iloc[:0], fmt=fmt, path=target).read_text()  # an earlier export: an empty front
    kill_halfway(small_study, target, fmt, 1)
    assert target.read_text() == old  # the previous export, whole
    (temp,) = target.parent.glob(f".{target.name}.*.tmp")  # the killed write: hidden, beside it
    new = render(front, fmt=fmt)
    assert 0 < len(temp.read_text()) < len(new) and new.startswith(temp.read_text())
    # and what stays in place is still readable by the tools that read it
    if fmt == "csv":
        assert pd.read_csv(target).empty
    elif fmt == "json":
        assert json.loads(target.read_text()) == []


def test_plots_killed_halfway_leave_every_page_whole(small_study, frame, tmp_path):
    target = tmp_path / "plots"
    index = write_plots(frame.iloc[:1], target)  # an earlier, smaller set of plots
    old_index = index.read_text()
    pages = sorted(p.name for p in target.iterdir())
    kill_halfway(small_study, target, "plots", len(pages) - 1)  # stop in the last page before the index
    assert index.read_text() == old_index
    assert (target / "plotly.min.js").read_text() == get_plotlyjs()
    for page in target.glob("*.html"):
        assert page.read_text().rstrip().endswith("</html>"), page.name
    linked = {line.split('href="')[1].split('"')[0] for line in old_index.splitlines() if 'href="' in line}
    assert all((target / name).is_file() for name in linked)
    assert len(list(target.glob(".*.tmp"))) == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(OSError(errno.ENOSPC, "No space left on device"), "No space left on device"), (KeyboardInterrupt(), None)],
    ids=["disk-full", "ctrl-c"],
)
def test_a_failed_write_keeps_the_old_file_and_no_temporary(frame, tmp_path, monkeypatch, fault, expected):
    target = tmp_path / "pareto.md"
    old = export(pareto_front(frame), fmt="md", path=target).read_text()

    def fail(fd):
        raise fault

    monkeypatch.setattr(_files.os, "fsync", fail)
    if expected:
        with pytest.raises(ResultsError, match=expected) as info:
            export(pareto_front(frame).iloc[:0], fmt="md", path=target)
        assert str(info.value) == f"cannot write {target}: {expected}"
    else:
        with pytest.raises(KeyboardInterrupt):
            export(pareto_front(frame).iloc[:0], fmt="md", path=target)
    monkeypatch.undo()
    assert target.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.md"]  # the temporary file is gone
