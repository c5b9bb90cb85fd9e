from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path

import pytest
import torch

from search import EarlyStopping, Limits, Peer, SearchError, SearchSettings, add_setting_flags, mask_url, parse_count, parse_objectives
from search._settings import _file_types


@pytest.mark.parametrize(("text", "value"), [("100M", 1e8), ("2.5M", 2.5e6), ("20", 20.0), ("800k", 8e5), ("1G", 1e9), (3, 3.0)])
def test_parse_count(text, value):
    assert parse_count(text, name="--max-flops") == value


@pytest.mark.parametrize("text", ["10Q", "", "M", "-5", "0", "1e999", "nan"])
def test_parse_count_rejects(text):
    with pytest.raises(SearchError, match="--max-flops"):
        parse_count(text, name="--max-flops")


def test_parse_objectives():
    assert parse_objectives("accuracy,latency_ms") == ("accuracy", "latency_ms")
    with pytest.raises(SearchError, match="unknown objective speed"):
        parse_objectives("accuracy,speed")
    with pytest.raises(SearchError, match="repeat"):
        parse_objectives("flops,flops")


def test_limits_violation_is_relative():
    limits = Limits(max_flops=100e6)
    assert limits.violation("flops", 150e6) == pytest.approx(0.5)
    assert limits.violation("flops", 50e6) == pytest.approx(-0.5)
    assert limits.violation("params", 1e9) == 0.0  # no limit: always feasible


def test_early_stopping_rungs_and_bands():
    es = EarlyStopping(eta=3)
    assert es.rungs(2) == [] and es.rungs(3) == [2] and es.rungs(10) == [2, 6] and es.rungs(20) == [2, 6, 18]
    assert EarlyStopping(eta=3, first_rung=1).rungs(10) == [1, 3, 9]
    peers = [Peer(flops=10e6, epoch_accuracy=[a, a, a]) for a in (0.2, 0.4, 0.6, 0.8)]
    # top third of [0.2, 0.4, 0.6, 0.8] starts at the 2/3 quantile = 0.6
    assert es.check(epoch=2, epochs=5, accuracy=0.5, flops=12e6, peers=peers).startswith("epoch 2: accuracy 0.500 below")
    assert es.check(epoch=2, epochs=5, accuracy=0.7, flops=12e6, peers=peers) is None
    assert es.check(epoch=1, epochs=5, accuracy=0.0, flops=12e6, peers=peers) is None  # not a rung
    assert es.check(epoch=3, epochs=5, accuracy=0.0, flops=12e6, peers=peers) is None  # not a rung
    assert es.check(epoch=2, epochs=5, accuracy=0.0, flops=50e6, peers=peers) is None  # no peers within 2x FLOPs
    assert es.check(epoch=2, epochs=5, accuracy=0.0, flops=12e6, peers=peers[:2]) is None  # too few peers
    # Equal to the threshold keeps training; band edges (exactly 2x either way) count as peers.
    assert es.check(epoch=2, epochs=5, accuracy=0.6, flops=12e6, peers=peers) is None
    edges = [Peer(flops=f, epoch_accuracy=[0.9, 0.9]) for f in (5e6, 20e6, 20e6)]
    assert es.check(epoch=2, epochs=5, accuracy=0.5, flops=10e6, peers=edges).endswith("(0.900) of 3 trials with FLOPs within 2x")
    # A peer stopped before this rung has no accuracy for it: not a peer here.
    short = [*peers[:2], Peer(flops=10e6, epoch_accuracy=[0.9])]
    assert es.check(epoch=2, epochs=5, accuracy=0.0, flops=12e6, peers=short) is None
    with pytest.raises(SearchError):
        EarlyStopping(eta=1)
    with pytest.raises(SearchError):
        EarlyStopping(first_rung=0)


def test_mask_url_hides_passwords():
    assert mask_url("postgresql://user:s3cret@db:5432/nas") == "postgresql://user:***@db:5432/nas"
    assert mask_url("sqlite:///runs/x/study.db") == "sqlite:///runs/x/study.db"
    # Where SQLAlchemy's make_url(url).render_as_string(hide_password=True) would not do: it
    # shows "u:***@ss@h/db" for an unescaped @ in a password, and raises on these others.
    assert mask_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert mask_url("postgresql://u:pw@h:notaport/db") == "postgresql://u:***@h:notaport/db"
    assert mask_url("journal:runs/x.log") == "journal:runs/x.log" and mask_url("runs/x.log") == "runs/x.log"
    s = SearchSettings(storage="postgresql://user:s3cret@db/nas")
    assert "s3cret" not in str(s.to_dict())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"trials": 0}, r"--trials must be an integer in \[1, 100000\], got 0"),
        ({"trials": 100_001}, r"--trials must be an integer in \[1, 100000\], got 100001"),
        ({"epochs": 0}, r"--epochs must be an integer in \[1, 1000\], got 0"),
        ({"epochs": 10**12}, r"--epochs must be an integer in \[1, 1000\], got 1000000000000"),
        ({"workers": -1}, r"--workers must be an integer in \[1, \d+\] \(4 per core"),
        ({"workers": 4 * (os.cpu_count() or 1) + 1}, r"--workers must be an integer in \[1, \d+\] \(4 per core"),
        ({"threads": 0}, r"--threads must be an integer in \[1, \d+\] \(the cores of this machine\)"),
        ({"threads": 100000}, r"--threads must be an integer in \[1, \d+\] \(the cores of this machine\)"),
        ({"seed": 2**32}, r"--seed must be an integer in \[0, 2147483647\], got 4294967296"),
        ({"seed": -1}, r"--seed must be an integer in \[0, 2147483647\]"),
        ({"preset": "foo"}, "--preset must be one of imagenet, cifar, got 'foo'"),
        ({"latency_backend": "tensorrt", "objectives": "flops,params"}, "--latency-backend must be one of torch, onnxruntime, got 'tensorrt'"),
        ({"objectives": [1, 2]}, "--objectives: unknown objective 1, 2: choose from accuracy"),
        ({"objectives": "flops,params,"}, "--objectives 'flops,params,' has an empty name"),
        ({"max_flops": "1e999"}, "--max-flops must be a finite number"),
        ({"max_flops": "-5M"}, "--max-flops must be positive"),
        ({"rung_ratio": float("inf")}, "--rung-ratio must be a finite number"),
        ({"timeout": float("inf")}, "--timeout must be a finite number"),
        ({"sampler": "cmaes"}, "unknown sampler"),
        ({"objectives": "accuracy,speed"}, "unknown objective"),
        ({"max_flops": "10Q"}, "--max-flops must be a number"),
        ({"study": "../x"}, "study name"),
        ({"timeout": -1}, "--timeout"),
        ({"val_fraction": 1.5}, "--val-fraction"),
    ],
)
def test_bad_settings(values, message):
    with pytest.raises(SearchError, match=message):
        SearchSettings(**values)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_refused_by_the_settings():
    with pytest.raises(SearchError, match="--device cuda: torch sees no CUDA device on this machine"):
        SearchSettings(device="cuda")


def test_the_flags_and_the_config_file_types_come_from_the_fields():
    parser = argparse.ArgumentParser()
    add_setting_flags(parser)
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(flags) == {f.name for f in dataclasses.fields(SearchSettings)}  # --val-fraction too
    assert all(a.default is None for a in flags.values())  # a --config file's values stand
    assert flags["trials"].type is int and flags["timeout"].type is float and flags["out"].type is Path
    assert flags["max_flops"].type is str and flags["device"].choices == ("cpu", "cuda")
    assert isinstance(flags["baselines"], argparse.BooleanOptionalAction)
    args = parser.parse_args(["--val-fraction", "0.3", "--no-baselines", "--max-flops", "1M"])
    assert SearchSettings(**{k: v for k, v in vars(args).items() if v is not None}).val_fraction == 0.3
    assert _file_types(typing.get_type_hints(SearchSettings)["max_flops"]) == (int, float, str)
    assert _file_types(typing.get_type_hints(SearchSettings)["objectives"]) == (list, str)


def test_config_file_settings(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("trials: 5\nmax-flops: 100M\nsampler: nsga2\n")
    assert SearchSettings.from_file(path) == {"trials": 5, "max_flops": "100M", "sampler": "nsga2"}
    path.write_text("trials: five\n")
    with pytest.raises(SearchError, match="trials has the wrong type"):
        SearchSettings.from_file(path)
    path.write_text("colour: red\n")
    with pytest.raises(SearchError, match="unknown setting"):
        SearchSettings.from_file(path)
    path.write_text("[1, 2")
    with pytest.raises(SearchError, match="not valid YAML"):
        SearchSettings.from_file(path)


def test_a_stop_signal_is_honoured_at_the_next_check_and_a_second_one_at_once():
    import os
    import signal

    from search import StopRequest

    stop = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with stop.catching(signal.SIGTERM):
        stop.check()  # nothing requested: goes on
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only takes note (Optuna may be writing)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()  # the next safe point stops
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal: at once
            pytest.fail("the second signal did not stop at once")
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_progress_bar_counts_the_front_that_results_reads(tmp_path):
    """One definition of the front: a trial whose confirmed mean accuracy is dominated is off
    the bar's front, as off ``pareto_front``'s, though its search values alone would keep it
    there (as ``study.best_trials`` does)."""
    import optuna
    from optuna.distributions import IntDistribution

    from results import ACCURACY_RUNS_KEY, FORMAT_VERSION, StudyAttr, TrialAttr, load_trials, pareto_front
    from search._progress import Progress

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    study.set_user_attr(StudyAttr.VERSION, FORMAT_VERSION)
    study.set_user_attr(StudyAttr.OBJECTIVES, ["accuracy", "flops"])
    points = [(0.9, 3e6), (0.8, 2e6), (0.7, 1e6), (0.6, 2.5e6), (0.95, 5e5)]  # (0.6, 2.5M) is dominated
    for number, (accuracy, flops) in enumerate(points):
        infeasible = number == 4  # would dominate every other trial, but breaks a limit
        study.add_trial(optuna.trial.create_trial(
            params={"x": number}, distributions={"x": IntDistribution(0, 9)}, values=[accuracy, flops],
            user_attrs={TrialAttr.SCORES: {"accuracy": accuracy, "flops": flops}},
            constraints={"flops": 1.0 if infeasible else -0.5},
        ))  # fmt: skip
    # confirm finds trial 0's 0.9 a lucky draw: its mean, 0.75, is dominated by trial 1
    study.set_user_attr(f"{ACCURACY_RUNS_KEY}0", [{"seed": 1, "accuracy": 0.6}])
    assert len(study.best_trials) == 3

    progress = Progress(total=5, objectives=("accuracy", "flops"), limits=Limits(max_flops=1e7))
    progress.update(study.get_trials(deepcopy=False), study)
    progress.close()
    assert sorted(pareto_front(load_trials(study))["number"]) == [1, 2]
    assert progress.bar.postfix == "rejected=0, feasible=4, front=2, best_acc=0.900"  # trial 4 broke a limit but has no reason recorded
    assert progress.bar.n == 5
