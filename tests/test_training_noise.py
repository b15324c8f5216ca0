"""The noise-scale estimator recovers a known B_noise ([K] section 5.1)."""

import numpy as np
import pytest

from lmscale.training.noise import (
    NoiseScaleEstimator,
    simple_noise_scale,
    trace_sigma,
    true_grad_sq,
)


def _linear_regression_batches(rng, dim, offset, sigma, b_small, n_micro):
    """Mean gradients of 0.5 (x.w - y)^2 at w = w* + offset, x ~ N(0, I), noise sigma."""
    x = rng.standard_normal((b_small * n_micro, dim))
    residual = x @ offset - sigma * rng.standard_normal(b_small * n_micro)
    per_example = x * residual[:, None]
    g_small = per_example[:b_small].mean(axis=0)
    g_big = per_example.mean(axis=0)
    return float(g_small @ g_small), float(g_big @ g_big)


def test_closed_forms_are_unbiased_on_exact_norms():
    # With |g_B|^2 = |G|^2 + tr(S)/B exactly, the two estimates return G and tr(S).
    g2, tr, bs, bb = 2.5, 40.0, 8.0, 64.0
    small, big = g2 + tr / bs, g2 + tr / bb
    assert true_grad_sq(small, big, bs, bb) == pytest.approx(g2, rel=1e-12)
    assert trace_sigma(small, big, bs, bb) == pytest.approx(tr, rel=1e-12)
    assert simple_noise_scale(small, big, bs, bb) == pytest.approx(tr / g2, rel=1e-12)


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_recovers_linear_regression_noise_scale(sigma):
    torch = pytest.importorskip("torch")
    dim, b_small, n_micro = 20, 16, 8
    offset = np.full(dim, 1.0 / np.sqrt(dim))  # |w - w*|^2 = 1
    # Gaussian inputs: G = w - w*, tr(Sigma) = (dim + 1)|G|^2 + sigma^2 dim.
    expected = (dim + 1) + sigma**2 * dim
    rng = np.random.default_rng(0)
    floats = NoiseScaleEstimator(b_small, b_small * n_micro, decay=0.999)
    tensors = NoiseScaleEstimator(
        b_small, b_small * n_micro, decay=0.999,
        ema_small=torch.zeros((), dtype=torch.float64), ema_big=torch.zeros((), dtype=torch.float64),
    )
    for _ in range(4000):
        small, big = _linear_regression_batches(rng, dim, offset, sigma, b_small, n_micro)
        floats.update(small, big)
        tensors.update(torch.tensor(small, dtype=torch.float64), torch.tensor(big, dtype=torch.float64))
    assert floats.noise_scale() == pytest.approx(expected, rel=0.10)
    assert tensors.noise_scale() == pytest.approx(floats.noise_scale(), rel=1e-12)


def test_state_round_trip_and_undefined_cases():
    est = NoiseScaleEstimator(4, 32, decay=0.9)
    assert est.noise_scale() is None and est.grad_sq_small is None
    est.update(3.0, 1.0)
    clone = NoiseScaleEstimator(4, 32, decay=0.9)
    clone.load_state_dict(est.state_dict())
    assert clone.noise_scale() == est.noise_scale()
    # |g_small|^2 < |g_big|^2 means negative variance: no noise scale.
    assert simple_noise_scale(1.0, 2.0, 4, 32) is None
    with pytest.raises(ValueError):
        NoiseScaleEstimator(32, 4)


def test_averaging_the_parts_halves_the_spread_of_the_estimate():
    """The trainer's |g_small|^2 is the mean over both halves of the batch, not the first half's:
    on the linear regression (B_noise known) windows of 20 steps then spread half as widely."""
    rng = np.random.default_rng(1)
    dim, b, sigma = 20, 16, 2.0
    offset = np.full(dim, 1.0 / np.sqrt(dim))
    expected = (dim + 1) + sigma**2 * dim
    first, both = [], []
    for _ in range(400):
        x = rng.standard_normal((20, 2 * b, dim))
        residual = x @ offset - sigma * rng.standard_normal((20, 2 * b))
        per_example = x * residual[..., None]
        g0, g1, g = per_example[:, :b].mean(1), per_example[:, b:].mean(1), per_example.mean(1)
        sq0, sq1, sq = (g0 * g0).sum(1), (g1 * g1).sum(1), (g * g).sum(1)
        first.append(simple_noise_scale(sq0.mean(), sq.mean(), b, 2 * b))
        both.append(simple_noise_scale(((sq0 + sq1) / 2).mean(), sq.mean(), b, 2 * b))

    def spread(values):
        v = np.array([e for e in values if e is not None])
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        return (q75 - q25) / q50, q50, len(v)

    (s_first, _, n_first), (s_both, median, n_both) = spread(first), spread(both)
    assert median == pytest.approx(expected, rel=0.05)
    assert s_both < 0.65 * s_first
    assert n_both > n_first  # fewer windows without an estimate (tr(Sigma) < 0 or |G|^2 < 0)
