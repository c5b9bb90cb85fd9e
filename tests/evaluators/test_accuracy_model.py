"""The fitted accuracy model: the ridge's known answers, its file format, the shipped fit, and a
prediction recomputed by hand from a config's features on real digits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluators import load_dataset
from evaluators.accuracy_model import FEATURES, SHIPPED, AccuracyModel, features_of, fit, fit_ridge
from evaluators.flops import count_cost
from evaluators.zero_cost import ZERO_COST_SCORES, zero_cost_scores
from spaces import reference


def _values(i: float) -> dict[str, float]:
    return {f: float(i * (k + 1) + (i * i if k == 0 else 0.0)) for k, f in enumerate(FEATURES)}


def test_ridge_fits_an_exact_linear_target_and_leaves_out_an_infinite_feature() -> None:
    x = np.c_[np.arange(6.0), np.arange(6.0) ** 2]
    target = 2.0 * x[:, 0] - 0.5 * x[:, 1] + 1.0
    mean, scale, coef = fit_ridge(x, target, alpha=1e-10)
    predicted = np.c_[np.ones(6), (x - mean) / scale] @ coef
    assert np.allclose(predicted, target, atol=1e-6) and coef[0] == pytest.approx(target.mean())
    rows = [(_values(i), 0.5 + 0.01 * i) for i in range(6)]
    rows[2][0]["naswot"] = -math.inf  # a singular NASWOT kernel
    model = fit(rows, input_size=16, batches=2, batch_size=64, fitted_on={"models": 6})
    assert "naswot" not in model.features and len(model.features) == len(FEATURES) - 1 and len(model.coef) == len(FEATURES)
    # a prediction is the intercept plus the z-scored features times their coefficients, by hand
    v = _values(3.5)
    by_hand = model.coef[0] + sum(c * (v[f] - m) / s for f, m, s, c in zip(model.features, model.mean, model.scale, model.coef[1:], strict=True))
    assert model.predict(v) == pytest.approx(by_hand)
    assert model.predict({**v, "log_flops": -math.inf}) == -math.inf  # ranked last, never NaN


def test_the_file_round_trips_and_malformed_ones_are_refused(tmp_path) -> None:
    model = fit([(_values(i), 0.4 + 0.02 * i) for i in range(5)], input_size=16, batches=2, batch_size=64, fitted_on={"models": 5})
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model.to_dict()))
    assert AccuracyModel.load(path) == model
    good = model.to_dict()
    for bad, message in [
        ({**good, "format": "other/1"}, "not a ghostnas-accuracy-model/1 file"),
        ([1, 2], "not a ghostnas-accuracy-model/1 file"),
        ({k: v for k, v in good.items() if k != "coef"}, "malformed"),
        ({**good, "coef": good["coef"][:-1]}, "coefficients disagree"),
        ({**good, "features": ["log_flops", "rm -rf"] + good["features"][2:]}, "coefficients disagree"),
        ({**good, "mean": ["x"] * len(good["mean"])}, "malformed"),
    ]:
        with pytest.raises(ValueError, match=message):
            AccuracyModel.from_dict(bad)


def test_the_shipped_model_is_whole_and_predicts_from_a_configs_recomputed_features() -> None:
    model = AccuracyModel.load(SHIPPED)
    assert model.input_size == 16 and model.fitted_on["models"] >= 20 and set(model.features) <= set(FEATURES)
    digits = load_dataset("digits")
    config = reference("ghostnet-0.5x", preset="cifar", num_classes=10, input_size=32)  # predicted at the fit's 16 px
    value, seconds = model.predict_config(config, digits, seed=3)
    at = config.replace(input_size=16)
    cost = count_cost(at)
    scores, _ = zero_cost_scores(at, digits, names=list(ZERO_COST_SCORES), batches=2, batch_size=64, seed=3)
    assert value == pytest.approx(model.predict(features_of(flops=cost.flops, params=cost.params, scores=scores)), rel=1e-12)
    assert math.isfinite(value) and seconds > 0
