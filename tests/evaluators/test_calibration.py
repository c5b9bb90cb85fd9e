"""Calibrated latency on real probes: the stored figure, its fingerprint, and the arithmetic."""

from __future__ import annotations

import json

import pytest

from evaluators.calibration import Calibration, calibrate, fingerprint_difference
from evaluators.latency import LatencyProbe, LatencySettings
from spaces import reference

QUICK = {"warmup": 2, "min_runs": 10, "max_runs": 40, "max_seconds": 0.4, "memory_format": "nchw", "input_size": 16}


@pytest.fixture
def probe(tmp_path) -> LatencyProbe:
    return LatencyProbe(settings=LatencySettings(**QUICK), cache_dir=tmp_path)


def test_calibration_times_the_reference_and_scales_the_ratio(probe):
    small = reference("ghostnet-0.35x", preset="cifar", num_classes=10)
    calibration = calibrate(probe, small, seconds=0.5)
    fp = calibration.fingerprint
    assert fp == probe.fingerprint(small)
    assert fp["reference"] == "ghostnet-1.0x" and fp["input_size"] == 16 and fp["stem_stride"] == 1
    assert fp["num_classes"] == 10 and fp["threads"] == 1 and fp["batch_size"] == 1 and fp["memory_format"] == "nchw"
    assert calibration.reference_ms > 0 and calibration.runs >= 3 * QUICK["min_runs"]

    result = calibration.apply(probe.measure(small))
    assert result.calibrated_ms == pytest.approx(result.ratio_to_reference * calibration.reference_ms)
    assert result.calibration_reference_ms == calibration.reference_ms
    data = result.to_dict()
    assert data["calibrated_ms"] == result.calibrated_ms and data["median_ms"] == result.median_ms

    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again == calibration


def test_a_probe_without_reference_is_left_uncalibrated(tmp_path):
    probe = LatencyProbe(settings=LatencySettings(**QUICK, reference=False), cache_dir=tmp_path)
    calibration = Calibration(fingerprint={}, reference_ms=10.0, runs=30, spread=0.01, measured="x")
    result = calibration.apply(probe.measure(reference("ghostnet-0.35x", preset="cifar", num_classes=10)))
    assert result.calibrated_ms is None


@pytest.mark.parametrize(
    "bad", [None, [], {"reference_ms": 1.0}, {"fingerprint": {}, "reference_ms": -1.0, "runs": 1, "spread": 0.0, "measured": ""}]
)
def test_a_malformed_calibration_is_a_one_line_value_error(bad):
    with pytest.raises(ValueError) as info:
        Calibration.from_dict(bad)
    assert "\n" not in str(info.value)


def test_fingerprint_difference_names_what_differs():
    assert fingerprint_difference({"cpu": "a", "threads": 1}, {"cpu": "a", "threads": 1}) is None
    assert fingerprint_difference({"cpu": "a", "threads": 1}, {"cpu": "b", "threads": 1}) == "cpu 'b' here, 'a' stored"
