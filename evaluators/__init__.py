"""How a built model is scored: FLOPs and params (fvcore), latency on this device, accuracy after
a short proxy training run, zero-cost scores of the untrained network, and the datasets it trains
on. Evaluators take a config, never an Optuna trial. Latency is calibrated against a reference
model, or predicted by a device latency model that ``profile`` fits on the target device."""

from __future__ import annotations

from evaluators._device import DEVICES, check_device
from evaluators.calibration import Calibration, calibrate
from evaluators.data import DataError, ImageSet, load_dataset, proxy_split
from evaluators.evaluate import Evaluation, Evaluator, Gate
from evaluators.flops import Cost, count_cost, count_model
from evaluators.latency import LatencyProbe, LatencyResult, LatencySettings, cpu_model
from evaluators.latency_model import LatencyModel, LatencyModelError
from evaluators.profile import ProfileSettings, profile
from evaluators.training import MAX_PROXY_EPOCHS, MAX_SEED, TrainingFailed, TrainResult, TrainSettings, train_proxy
from evaluators.zero_cost import ZERO_COST_SCORES, zero_cost_scores

__all__ = [
    "DEVICES",
    "MAX_PROXY_EPOCHS",
    "MAX_SEED",
    "Calibration",
    "LatencyModel",
    "LatencyModelError",
    "ProfileSettings",
    "calibrate",
    "profile",
    "Cost",
    "DataError",
    "Evaluation",
    "Evaluator",
    "Gate",
    "ImageSet",
    "LatencyProbe",
    "LatencyResult",
    "LatencySettings",
    "TrainResult",
    "TrainSettings",
    "TrainingFailed",
    "ZERO_COST_SCORES",
    "check_device",
    "count_cost",
    "cpu_model",
    "count_model",
    "load_dataset",
    "proxy_split",
    "train_proxy",
    "zero_cost_scores",
]
