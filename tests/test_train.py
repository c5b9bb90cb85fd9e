"""``ghostnas train`` and ``eval --run`` end to end, as real processes on real digits.

One run is trained once for the module (4 epochs, a config the official GhostNet class can
build: official table with fewer strides, 16x16 input); the other tests read it, interrupt and
kill a second run of the same command, or time and score it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evaluators.data import load_dataset, resize
from evaluators.flops import count_cost
from spaces import OFFICIAL_CFGS, GhostNetConfig

REPO = Path(__file__).resolve().parents[1]
FAULTY_CLI = REPO / "tests" / "reliability" / "faulty_cli.py"  # cli.py with faults injected on request
EPOCHS = 4
CHANCE = 0.1  # digits: 10 balanced classes


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every process: identical results
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True, env=env, timeout=600, **kwargs)


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def official_cfg(tmp_path_factory) -> Path:
    """The official 0.35x table with one stride-2 block left (total stride 4): 16x16 digits fit."""
    cfgs = [[[k, e, o, se, 2 if (i, j) == (3, 0) else 1] for j, (k, e, o, se, _) in enumerate(stage)] for i, stage in enumerate(OFFICIAL_CFGS)]
    path = tmp_path_factory.mktemp("cfg") / "official.json"
    path.write_text(json.dumps({"cfgs": cfgs, "width": 0.35}))
    return path


def _train_args(cfg: Path, out: Path) -> list[str]:
    return ["-q", "train", "--cfg", cfg, "--input-size", "16", "--epochs", str(EPOCHS), "--batch-size", "64", "--out", out]


@pytest.fixture(scope="module")
def run(official_cfg, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    done = _cli(*_train_args(official_cfg, out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / n) for n in ("model.safetensors", "config.json", "metrics.json", "model.onnx")]
    return out


def _history(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def test_a_real_model_trains_far_above_chance(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, EPOCHS + 1))
    assert metrics["val_accuracy"] == metrics["history"][-1]["val_accuracy"]
    # Chance is 0.1; 4 epochs of the full recipe reach about 0.95 here. A bound 6x chance holds
    # on any CPU, and a broken recipe (no learning, labels shuffled, eval on the wrong set) fails it.
    assert metrics["val_accuracy"] >= 6 * CHANCE
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert metrics["dataset"] == {"name": "digits", "images": 1797, "classes": [str(i) for i in range(10)], "train": 1617, "val": 180}
    assert set(metrics["versions"]) >= {"python", "torch", "onnxruntime"} and metrics["seconds"] > 0
    config = GhostNetConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    assert (metrics["params"], metrics["flops"]) == (count_cost(config).params, count_cost(config).flops)


def test_checkpoint_holds_the_whole_state_and_reads_back_weights_only(run):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == EPOCHS
    assert {"model", "optimizer", "scheduler", "ema", "rng", "history"} <= set(state)
    assert state["scheduler"]["last_epoch"] == EPOCHS * (1617 // 64)  # stepped once per optimizer step
    assert len(state["optimizer"]["param_groups"]) == 2
    decay, no_decay = state["optimizer"]["param_groups"]
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0 and decay["nesterov"]
    assert set(state["rng"]) == {"torch", "data", "cuda"}


def test_weights_load_into_the_official_ghostnet_class(run):
    timm_ghostnet = pytest.importorskip("timm.models.ghostnet")  # the official code, as ported by timm
    description = json.loads((run / "config.json").read_text())
    official = description["official"]
    assert official is not None and description["official_incompatibility"] is None
    model = timm_ghostnet.GhostNet(official["cfgs"], num_classes=official["num_classes"], width=official["width"])
    state = load_file(str(run / "model.safetensors"))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(model.state_dict())
    # Same weights, same network: the official class computes our logits.
    from evaluators.deploy import load_run

    ours = load_run(run)
    pre = description["preprocessing"]
    x = torch.rand(3, 3, 16, 16) * 255
    with torch.inference_mode():
        theirs = model.eval()((x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1))
        assert torch.allclose(theirs, ours.model(x), atol=1e-5)


def test_onnx_model_matches_pytorch_at_any_batch_size(run):
    ort = pytest.importorskip("onnxruntime")
    from evaluators.deploy import ONNX_TOLERANCE, load_run

    check = json.loads((run / "metrics.json").read_text())["onnx"]
    assert check["ok"] and check["max_abs_diff"] <= ONNX_TOLERANCE and check["top1_agree"] == check["images"] == 64
    assert check["opset"] >= 17
    loaded = load_run(run)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    images = resize(load_dataset("digits").images[:37], 16).float()
    for batch in (1, 37):  # exported with a batch of 2: the batch axis is dynamic
        (logits,) = session.run(None, {"input": images[:batch].numpy()})
        with torch.inference_mode():
            expected = loaded.model(images[:batch]).numpy()
        assert logits.shape == (batch, 10)
        assert np.abs(logits - expected).max() <= ONNX_TOLERANCE
        assert (logits.argmax(1) == expected.argmax(1)).all()


def test_interrupted_and_killed_run_resumes_to_the_same_history(run, official_cfg, tmp_path):
    out = tmp_path / "again"
    args = _train_args(official_cfg, out)

    def paused_at(epoch: int) -> subprocess.Popen:
        """A real train process held right after its checkpoint of ``epoch`` (faulty_cli's pause):
        the signal then lands at that epoch on any machine, however fast it trains."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GHOSTNAS_TRAIN_PAUSE": str(epoch), "GHOSTNAS_FAULT_DIR": str(tmp_path)}
        # SIGINT as a terminal delivers it: a suite started in the background (nohup, `&`) hands its
        # children SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
        proc = subprocess.Popen([sys.executable, str(FAULTY_CLI), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        deadline = time.monotonic() + 300
        while not (tmp_path / f"paused-{epoch}").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.05)
        return proc

    proc = paused_at(1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    interrupted_at = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert interrupted_at == 1

    proc = paused_at(2)  # the same command resumes from epoch 1 and is held after epoch 2
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate(timeout=60)
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert killed_at == 2

    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == killed_at < EPOCHS
    history = metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))  # continuous, to the requested epochs
    # The RNG states come back with the checkpoint: the run is the uninterrupted one, number for number.
    strip = lambda rows: [(h["epoch"], h["loss"], h["val_accuracy"], h["lr"]) for h in rows]  # noqa: E731
    assert strip(history) == strip(_history(run))
    assert load_file(str(out / "model.safetensors")).keys() == load_file(str(run / "model.safetensors")).keys()


def test_another_command_is_refused_and_the_same_one_trains_nothing(run, official_cfg, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = [a if a != str(EPOCHS) else str(EPOCHS + 1) for a in map(str, _train_args(official_cfg, out))]
    refused = _cli(*other)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [f"ghostnas: error: {out} holds a run of another command (it differs in: recipe); choose another --out or delete it"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    again = _cli(*_train_args(official_cfg, out))
    assert again.returncode == 0, again.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == EPOCHS and metrics["history"] == _history(run)
    assert (out / "model.safetensors").read_bytes() == before["model.safetensors"]


def test_eval_run_reports_accuracy_latency_params_and_flops(run):
    done = _cli("eval", "--run", run, "--dataset", "digits", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    config = GhostNetConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    assert (result["params"], result["flops"]) == (count_cost(config).params, count_cost(config).flops)
    assert result["val_accuracy"] == json.loads((run / "metrics.json").read_text())["val_accuracy"]
    assert result["dataset"]["images"] == 1797
    # The whole data set: 90% of it trained on, so at least the validation accuracy's level.
    assert result["dataset"]["accuracy"] >= 6 * CHANCE
    for backend in ("torch", "onnxruntime"):
        latency = result[f"latency_{backend}"]
        assert latency["median_ms"] > 0 and latency["env"]["backend"] == backend
        # GhostNet 1.0x (total stride 32) cannot run at 16 px: timed alone, no ratio, nothing to calibrate.
        assert latency["ratio_to_reference"] is None and latency["latency_ms"] is None and latency["latency_raw_ms"] == latency["median_ms"]
    table = _cli("eval", "--run", run, "--skip-latency")
    assert table.returncode == 0, table.stderr
    assert f"{count_cost(config).params / 1e6:.3f} M" in table.stdout and "validation top-1 (held-out split)" in table.stdout


def test_eval_run_calibrates_latency_as_the_search_does(tmp_path, monkeypatch, capsys):
    """A run whose layout GhostNet 1.0x fits (cifar stem, 8 px): each backend's latency_ms is its
    ratio to the reference times that reference's latency timed in the same process (as ``eval``
    reports a config), with the raw median beside it. The weights need no training for this, and
    the reference is timed for 0.3 s instead of 5 (in process: the real ``calibrate``, shorter)."""
    import functools

    import cli
    from evaluators import calibration
    from evaluators.deploy import write_run
    from evaluators.trainer import TrainedRun
    from spaces import build_model, reference

    config = reference("ghostnet-0.35x", preset="cifar", input_size=8)
    trained = TrainedRun(model=build_model(config).eval(), config=config, history=[], mean=[128.0] * 3, std=[64.0] * 3, seconds=0.0, resumed_from=0)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_run(trained, tmp_path, val_images=images, source={"test": True}, classes=tuple(map(str, range(10))), extra={})
    monkeypatch.setattr(calibration, "calibrate", functools.partial(calibration.calibrate, seconds=0.3))
    assert cli.main(["-q", "eval", "--run", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for backend in ("torch", "onnxruntime"):
        latency = result[f"latency_{backend}"]
        assert latency["env"]["backend"] == backend and latency["ratio_to_reference"] > 0 and latency["calibration_reference_ms"] > 0
        assert latency["latency_ms"] == pytest.approx(latency["ratio_to_reference"] * latency["calibration_reference_ms"], rel=1e-12)
        assert latency["latency_ms"] == latency["calibrated_ms"] and latency["latency_raw_ms"] == latency["median_ms"] > 0
