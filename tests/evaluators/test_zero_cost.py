"""Zero-cost scores against answers worked out by hand or in closed form (numpy, no autograd), on
tiny linear networks where each paper's definition can be evaluated directly; then every score on
a real GhostNet with the embedded digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from evaluators.data import load_dataset
from evaluators.zero_cost import ZERO_COST_SCORES, grad_norm, jacov, naswot, snip, synflow, zero_cost_scores, zico
from spaces import reference

W1 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-2.0, 1.0, 1.0], [0.1, -0.3, 0.7]])  # 3 -> 4
W2 = np.array([[1.0, -0.5, 0.25, 2.0], [-1.5, 0.5, 1.0, -0.2]])  # 4 -> 2
X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0], [-2.0, 0.5, 0.5]])
Y = np.array([0, 1, 1])


def linear(*weights: np.ndarray, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, w in enumerate(weights):
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        layer.weight.data = torch.tensor(w, dtype=torch.float64)
        layers.append(layer)
        if relu and i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double()


def batch(x: np.ndarray = X, y: np.ndarray = Y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.int64)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce_gradients(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed form for logits = x W1^T W2^T and the mean cross-entropy: E = softmax - onehot,
    dL/dW2 = E^T H / B with H = x W1^T, dL/dW1 = (E W2)^T x / B."""
    h = x @ w1.T
    e = softmax(h @ w2.T) - np.eye(w2.shape[0])[y]
    return (e @ w2).T @ x / len(x), e.T @ h / len(x)


def test_synflow_is_the_path_sum_times_depth_for_a_linear_chain() -> None:
    # R = 1^T |W2| |W1| 1 is linear in each layer's weights, so each layer's sum of
    # theta * dR/dtheta is R itself (Euler): the score of an L-layer chain is L * R.
    r = np.ones(2) @ np.abs(W2) @ np.abs(W1) @ np.ones(3)
    assert synflow(linear(W1, W2, relu=True), (3,)) == pytest.approx(2 * r, rel=1e-12)


def test_synflow_ignores_signs_and_scales_with_a_layer() -> None:
    base = synflow(linear(W1, W2), (3,))
    assert synflow(linear(-W1, W2 * np.sign(W2 + 0.3)), (3,)) == pytest.approx(base, rel=1e-12)
    assert synflow(linear(3 * W1, W2), (3,)) == pytest.approx(3 * base, rel=1e-12)


def test_grad_norm_is_the_sum_of_each_layer_norm() -> None:
    g1, g2 = ce_gradients(X, Y, W1, W2)
    expected = np.linalg.norm(g1) + np.linalg.norm(g2)
    assert grad_norm(linear(W1, W2), batch()) == pytest.approx(expected, rel=1e-10)
    # and not the norm of all gradients together
    assert expected != pytest.approx(math.hypot(np.linalg.norm(g1), np.linalg.norm(g2)), rel=1e-3)


def test_snip_is_the_sum_of_connection_sensitivities() -> None:
    g1, g2 = ce_gradients(X, Y, W1, W2)
    expected = np.abs(g1 * W1).sum() + np.abs(g2 * W2).sum()
    assert snip(linear(W1, W2), batch()) == pytest.approx(expected, rel=1e-10)


def test_zico_is_the_log_summed_inverse_coefficient_of_variation() -> None:
    batches = [batch(X[:2], Y[:2]), batch(X[2:], Y[2:])]
    per_batch = [ce_gradients(X[:2], Y[:2], W1, W2), ce_gradients(X[2:], Y[2:], W1, W2)]
    expected = 0.0
    for layer in range(2):
        a, b = per_batch[0][layer], per_batch[1][layer]
        std = np.abs(a - b) / 2  # population std of two values
        keep = std != 0
        expected += math.log((((np.abs(a) + np.abs(b)) / 2)[keep] / std[keep]).sum())
    assert zico(linear(W1, W2), batches) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 batches"):
        zico(linear(W1, W2), batches[:1])


def test_naswot_is_the_log_determinant_of_the_hamming_kernel() -> None:
    # Identity weights then a ReLU: codes [1,0], [0,1], [1,1]; N_A = 2, so
    # K = [[2,0,1],[0,2,1],[1,1,2]] with det 2*(4-1) - 0 + 1*(0-2) = 4.
    model = linear(np.eye(2), np.eye(2), relu=True)
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    # the last layer is linear with no ReLU after it: only the first ReLU's 2 units count
    assert naswot(model, x) == pytest.approx(math.log(4), rel=1e-12)
    same = torch.tensor([[1.0, -1.0], [2.0, -3.0]], dtype=torch.float64)  # one code twice: K singular
    assert naswot(model, same) == -math.inf


def test_jacov_of_a_linear_map_sees_identical_jacobians() -> None:
    # f(x) = W2 W1 x: every input has the same Jacobian of sum(f), so the correlation matrix is
    # all ones, with eigenvalues N (once) and 0 (N - 1 times).
    k, n = 1e-5, len(X)
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert jacov(linear(W1, W2), batch()[0], k=k) == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_every_score_on_a_real_ghostnet_is_finite_seeded_and_keeps_the_random_state(digits) -> None:
    config = reference("ghostnet-0.35x", preset="cifar", input_size=8)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    scores, seconds = zero_cost_scores(config, digits, batches=2, batch_size=32)
    assert torch.equal(torch.get_rng_state(), before)
    assert set(scores) == set(seconds) == set(ZERO_COST_SCORES)
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert scores["synflow"] > 0 and scores["grad_norm"] > 0 and scores["snip"] > 0
    again, _ = zero_cost_scores(config, digits, names=["snip", "naswot"], batches=2, batch_size=32)
    assert again == {"snip": scores["snip"], "naswot": scores["naswot"]}
    other, _ = zero_cost_scores(config, digits, names=["snip"], batches=2, batch_size=32, seed=1)
    assert other["snip"] != scores["snip"]


def test_bad_requests_are_refused(digits) -> None:
    config = reference("ghostnet-0.35x", preset="cifar", input_size=8)
    with pytest.raises(ValueError, match="unknown zero-cost score 'fisher'"):
        zero_cost_scores(config, digits, names=["fisher"])
    with pytest.raises(ValueError, match="need 100 batch"):
        zero_cost_scores(config, digits, batches=100, batch_size=64)
