"""Every Ghost-family block type through every evaluator: FLOPs, the latency probe (torch and
ONNX Runtime), proxy training on the digits, and ONNX export. Tiny configs, brief runs: this file
shows each path works, docs/BENCHMARKS.md holds what they cost."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from evaluators.data import load_dataset, proxy_split
from evaluators.flops import count_cost, count_model
from evaluators.latency import LatencyProbe, LatencySettings
from evaluators.training import TrainSettings, train_proxy
from spaces import GhostNetConfig, build_model, reference
from spaces._family import GhostBottleneckV3

QUICK = {"warmup": 1, "min_runs": 5, "max_runs": 10, "max_seconds": 0.3, "memory_format": "nchw", "threads": 1}


def family_config(kind: str, *, input_size: int = 32) -> GhostNetConfig:
    """GhostNet 0.35x, cifar layout, every stage of block type ``kind`` (or the yolov5 module,
    or v1 with a dilated cheap op)."""
    base = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=input_size)
    if kind == "yolov5":
        stages = tuple(tuple(dataclasses.replace(b, se=0.0) for b in stage) for stage in base.stages)
        return base.replace(module="yolov5", dw_size=5, stages=stages)
    if kind == "dilated":
        return base.replace(dw_size=3, dw_dilation=2)
    return base.replace(block_types=(kind,) * len(base.stages))


KINDS = ["ghost", "ghostv2", "ghostv3", "ghostv3-nodfc", "yolov5", "dilated"]


@pytest.mark.parametrize("kind", KINDS)
def test_flops_are_counted_on_the_inference_form(kind):
    config = family_config(kind)
    cost = count_cost(config)
    assert cost == count_model(build_model(config, deploy=True), 32)
    training_form = count_model(build_model(config), 32)
    if config.reparameterisable:  # three conv branches, a scale branch and BN identities fold away
        assert cost.params < training_form.params and cost.flops < training_form.flops
    else:
        assert cost == training_form
    if kind in ("ghostv2", "ghostv3"):  # the DFC convs count; the pooling, gate and upsampling do not
        plain = count_cost(family_config("ghost"))
        assert cost.flops > plain.flops and cost.params > plain.params


@pytest.mark.parametrize("kind", KINDS)
def test_latency_probe_times_the_fused_model(kind, tmp_path):
    probe = LatencyProbe(settings=LatencySettings(**QUICK), cache_dir=tmp_path)
    config = family_config(kind)
    runner = probe._runner(config, 32, "nchw")
    model = runner.func
    assert not model.training
    assert all(m.fused for m in model.modules() if isinstance(m, GhostBottleneckV3))
    result = probe.measure(config)
    assert result.median_ms > 0 and result.runs >= 5 and result.ratio_to_reference > 0


@pytest.mark.parametrize("kind", ["ghostv2", "ghostv3", "yolov5"])
def test_onnxruntime_probe_runs_every_block_type(kind, tmp_path):
    pytest.importorskip("onnxruntime")
    probe = LatencyProbe(settings=LatencySettings(**QUICK, backend="onnxruntime"), cache_dir=tmp_path)
    result = probe.measure(family_config(kind))
    assert result.median_ms > 0 and result.env["onnxruntime"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's, as in the probe
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_of_the_inference_form_gives_torch_outputs(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    config = family_config(kind)
    torch.manual_seed(0)
    model = build_model(config, deploy=True)
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.fixture(scope="module")
def digits_split():
    return proxy_split(load_dataset("digits"), seed=0, subset=120)


@pytest.mark.parametrize("kind", KINDS)
def test_proxy_training_runs_every_block_type(kind, digits_split):
    # 16x16 input: the cifar layout's deepest stage then sees 2x2, which DFC attention needs.
    settings = TrainSettings(epochs=1, batch_size=32, input_size=16, threads=1, progress=False)
    result = train_proxy(family_config(kind, input_size=16), *digits_split, settings)
    assert 0.0 <= result.accuracy <= 1.0 and result.epochs_run == 1
    assert np.isfinite(result.loss_sum) and result.loss_sum > 0
