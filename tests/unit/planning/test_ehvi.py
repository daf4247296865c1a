from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import ndtr

from genesis_platform.errors import InvalidInput
from genesis_platform.planning import _ehvi
from genesis_platform.planning._acquisition import log_ei
from genesis_platform.planning._ehvi import ehvi, log_ehvi, log_ehvi_with_grad
from genesis_platform.planning.pareto import non_dominated_boxes, pareto_mask


def _front(rng: np.random.Generator, k: int, m: int) -> np.ndarray:
    """``k`` mutually non-dominated points on the positive unit sphere."""
    x = np.abs(rng.standard_normal((k, m))) + 0.05
    front = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert pareto_mask(front).all()
    return front


def _improvement(y: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """HV(front + {y}) - HV(front) for each row of ``y``, by inclusion-exclusion.

    The gain is the volume of [ref, y] minus the union of the boxes [ref, min(f, y)].
    """
    gain = np.prod(np.maximum(y - ref, 0.0), axis=1)
    clipped = np.maximum(np.minimum(front[None, :, :], y[:, None, :]) - ref, 0.0)
    k = front.shape[0]
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            overlap = np.prod(clipped[:, list(subset), :].min(axis=1), axis=1)
            gain -= (-1) ** (size + 1) * overlap
    return gain


def _problem(
    m: int, k: int, p: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    front = _front(rng, k, m)
    ref = np.zeros(m)
    lower, upper = non_dominated_boxes(front, ref)
    mu = 0.2 + 0.8 * rng.random((p, m))
    sigma = 0.05 + 0.3 * rng.random((p, m))
    return front, ref, lower, upper, mu, sigma


@pytest.mark.parametrize("m", [2, 3])
def test_ehvi_matches_monte_carlo(m: int) -> None:
    front, ref, lower, upper, mu, sigma = _problem(m, k=5, p=4, seed=m)
    expected = ehvi(mu, sigma, lower, upper)
    rng = np.random.default_rng(50 + m)
    n = 100_000
    for i in range(mu.shape[0]):
        y = mu[i] + sigma[i] * rng.standard_normal((n, m))
        gain = _improvement(y, front, ref)
        assert gain.min() > -1e-12
        error = gain.std() / np.sqrt(n)
        assert expected[i] > 10.0 * error  # not trivially small
        assert abs(expected[i] - gain.mean()) < 5.0 * error


def test_one_objective_reduces_to_expected_improvement() -> None:
    lower, upper = non_dominated_boxes(np.array([[0.3], [0.7], [0.1]]), np.array([0.0]))
    mu = np.linspace(-3.0, 3.0, 13)
    sigma = np.linspace(0.1, 2.0, 13)
    got = log_ehvi(mu[:, None], sigma[:, None], lower, upper)
    np.testing.assert_allclose(got, log_ei(mu, sigma, 0.7), rtol=1e-13)


@pytest.mark.parametrize("m", [2, 3])
def test_log_ehvi_is_the_log_of_ehvi(m: int) -> None:
    _, _, lower, upper, mu, sigma = _problem(m, k=12, p=200, seed=10 + m)
    mu = np.vstack([mu, mu - 0.8])  # some candidates well inside the dominated region
    sigma = np.vstack([sigma, 0.3 * sigma])
    plain = ehvi(mu, sigma, lower, upper)
    shown = plain > 1e-250
    assert np.count_nonzero(shown) > 250
    assert plain.min() < 1e-30  # the comparison reaches deep into the tail
    np.testing.assert_allclose(
        log_ehvi(mu, sigma, lower, upper)[shown], np.log(plain[shown]), rtol=1e-11
    )


@pytest.mark.parametrize("m", [2, 3])
def test_log_ehvi_stays_finite_and_monotone_far_from_the_front(m: int) -> None:
    front, _, lower, upper, _, _ = _problem(m, k=8, p=1, seed=20 + m)
    sigma = np.full((1, m), 0.01)
    distances = np.linspace(5.0, 80.0, 31)  # in units of sigma, below the worst front value
    mu = front.min(axis=0) - distances[:, None] * sigma
    values = log_ehvi(mu, np.repeat(sigma, distances.size, axis=0), lower, upper)
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values) < 0.0)
    assert ehvi(mu[-10:], np.repeat(sigma, 10, axis=0), lower, upper).max() == 0.0
    _, d_mu, _ = log_ehvi_with_grad(mu, np.repeat(sigma, distances.size, axis=0), lower, upper)
    assert np.all(np.isfinite(d_mu)) and np.all(d_mu > 0.0)  # points back toward the front


def _reference_log_factor(mu: float, sigma: float, lo: float, hi: float) -> float:
    """log of int_lo^hi Phi((mu - t) / sigma) dt by composite Gauss-Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(20)
    pieces = np.linspace(lo, hi, 65)
    half = 0.5 * np.diff(pieces)[:, None]
    t = 0.5 * (pieces[:-1] + pieces[1:])[:, None] + half * nodes
    return float(np.log(np.sum(half * weights * ndtr((mu - t) / sigma))))


@pytest.mark.parametrize("mid", [-30.0, -8.0, -1.0, 0.0, 2.0, 40.0])
def test_factor_is_accurate_for_narrow_and_wide_intervals(mid: float) -> None:
    # Widths (in sigma) on both sides of the midpoint expansion's threshold, down to 1e-12.
    sigma = 0.7
    for width in [1e-12, 1e-6, 3e-4, 1e-3, 3e-3, 0.05, 0.3, 5.0]:
        lo, hi = -(mid + 0.5 * width) * sigma, -(mid - 0.5 * width) * sigma
        got = log_ehvi(np.zeros((1, 1)), np.full((1, 1), sigma), np.array([[lo]]), np.array([[hi]]))
        assert got[0] == pytest.approx(_reference_log_factor(0.0, sigma, lo, hi), abs=1e-9)


@pytest.mark.parametrize("mid", [-30.0, -8.0, -1.0, 2.0, 40.0])
def test_factor_gradients_match_their_closed_form(mid: float) -> None:
    # F = sigma (h(a) - h(b)): dF/dmu = Phi(a) - Phi(b), dF/dsigma = phi(a) - phi(b). Widths
    # just inside and just outside the midpoint expansion, where its correction terms show.
    sigma = 0.7
    for width in [0.9e-3 / (1 + abs(mid)), 1.1e-3 / (1 + abs(mid)), 0.3, 5.0]:
        lo, hi = -(mid + 0.5 * width) * sigma, -(mid - 0.5 * width) * sigma
        a, b = -lo / sigma, -hi / sigma
        # Upper tails keep the difference accurate right of 0.
        d_phi_cdf = ndtr(-b) - ndtr(-a) if mid > 0.0 else ndtr(a) - ndtr(b)
        d_phi_pdf = (np.exp(-0.5 * a * a) - np.exp(-0.5 * b * b)) / np.sqrt(2.0 * np.pi)
        factor = np.exp(_reference_log_factor(0.0, sigma, lo, hi))
        _, d_mu, d_sigma = log_ehvi_with_grad(
            np.zeros((1, 1)), np.full((1, 1), sigma), np.array([[lo]]), np.array([[hi]])
        )
        assert d_mu[0, 0] == pytest.approx(d_phi_cdf / factor, rel=1e-9)
        assert d_sigma[0, 0] == pytest.approx(d_phi_pdf / factor, rel=1e-9)


def _finite_differences(
    mu: np.ndarray, sigma: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    d_mu, d_sigma = np.zeros_like(mu), np.zeros_like(mu)
    for j in range(mu.shape[1]):
        step = np.zeros_like(mu)
        step[:, j] = 1e-6 * sigma[:, j]
        d_mu[:, j] = (
            log_ehvi(mu + step, sigma, lower, upper) - log_ehvi(mu - step, sigma, lower, upper)
        ) / (2 * step[:, j])
        d_sigma[:, j] = (
            log_ehvi(mu, sigma + step, lower, upper) - log_ehvi(mu, sigma - step, lower, upper)
        ) / (2 * step[:, j])
    return d_mu, d_sigma


@pytest.mark.parametrize("m", [2, 3])
def test_gradients_match_finite_differences(m: int) -> None:
    front, _, lower, upper, mu, sigma = _problem(m, k=10, p=30, seed=30 + m)
    far = front.min(axis=0) - 40.0 * 0.02  # 40 sigma below the worst front value
    above = front.max(axis=0) + 0.5  # beyond the whole front: the wide "right" branch
    mu = np.vstack([mu, far, above])
    sigma = np.vstack([sigma, np.full((1, m), 0.02), np.full((1, m), 0.01)])
    value, d_mu, d_sigma = log_ehvi_with_grad(mu, sigma, lower, upper)
    np.testing.assert_allclose(value, log_ehvi(mu, sigma, lower, upper), rtol=0, atol=0)
    fd_mu, fd_sigma = _finite_differences(mu, sigma, lower, upper)
    scale = np.abs(fd_mu).max(axis=1, keepdims=True) + np.abs(fd_sigma).max(axis=1, keepdims=True)
    np.testing.assert_allclose(d_mu / scale, fd_mu / scale, atol=1e-6)
    np.testing.assert_allclose(d_sigma / scale, fd_sigma / scale, atol=1e-6)


def test_gradients_through_narrow_boxes_match_finite_differences() -> None:
    # Two front points 1e-7 apart make strips far narrower than sigma.
    front = np.array([[0.5, 0.9], [0.5 + 1e-7, 0.9 - 1e-7], [0.9, 0.2]])
    lower, upper = non_dominated_boxes(front, np.zeros(2))
    rng = np.random.default_rng(4)
    mu = rng.random((20, 2))
    sigma = 0.1 + rng.random((20, 2))
    _, d_mu, d_sigma = log_ehvi_with_grad(mu, sigma, lower, upper)
    fd_mu, fd_sigma = _finite_differences(mu, sigma, lower, upper)
    np.testing.assert_allclose(d_mu, fd_mu, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d_sigma, fd_sigma, rtol=1e-6, atol=1e-8)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, lower, upper, mu, sigma = _problem(3, k=10, p=50, seed=5)
    whole = log_ehvi_with_grad(mu, sigma, lower, upper)
    plain = ehvi(mu, sigma, lower, upper)
    monkeypatch.setattr(_ehvi, "_CHUNK_ELEMENTS", 7 * lower.shape[0])  # chunks of 7 rows
    for got, expected in zip(log_ehvi_with_grad(mu, sigma, lower, upper), whole, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    np.testing.assert_allclose(ehvi(mu, sigma, lower, upper), plain, rtol=1e-14)


def test_inputs_are_validated() -> None:
    lower, upper = non_dominated_boxes(np.array([[1.0, 1.0]]), np.zeros(2))
    with pytest.raises(InvalidInput):
        log_ehvi(np.zeros((3, 2)), np.zeros((3, 2)), lower, upper)
    with pytest.raises(InvalidInput):
        ehvi(np.zeros((3, 2)), np.ones((3, 2)), lower[:, :1], upper[:, :1])
