"""Expected hypervolume improvement (EHVI) of a candidate with independent Gaussian objectives.

All objectives are maximized. Let the region above the reference point that the current
front does not dominate be split into disjoint boxes ``[l_b, u_b]``
(:func:`genesis_platform.planning.pareto.non_dominated_boxes`). A new point ``y`` claims
the part of each box below it, so its hypervolume improvement is::

    HVI(y) = sum_b prod_j (min(y_j, u_bj) - l_bj)^+

With independent ``Y_j ~ N(mu_j, sigma_j^2)`` the expectation of each product is the
product of one-dimensional expectations, each in closed form::

    E[(min(Y, u) - l)^+] = int_l^u Phi((mu - t) / sigma) dt
                         = sigma * (h((mu - l) / sigma) - h((mu - u) / sigma)),

with ``h(z) = phi(z) + z Phi(z)`` (``h(-inf) = 0`` for ``u = +inf``, which makes the term
the expected improvement over ``l``).

:func:`log_ehvi` works in logarithms throughout (the log of each factor from log
differences of ``h``, a log-sum-exp over boxes), so it stays finite and informative for
candidates far from the front, where EHVI itself underflows to 0, in the spirit of LogEI
(:mod:`genesis_platform.planning._acquisition`). Work is chunked over candidates so that
the ``(candidates, boxes)`` temporaries stay near a megabyte each; each factor is
computed once per distinct ``(l_j, u_j)`` interval of its objective and shared by the
boxes that have it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr, logsumexp, ndtr

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._acquisition import _C1, _log1mexp, log_h
from genesis_platform.planning.encoding import FloatArray

__all__ = ["ehvi", "log_ehvi", "log_ehvi_with_grad"]

_NARROW = 1e-3
"""Intervals with ``w * (1 + |mid|) < _NARROW`` (standardized width ``w``, midpoint
``mid``) use a midpoint expansion: there a difference of two close ``log h`` values would
lose digits, while the expansion's relative error is ``O((w (1 + |mid|))^4) < 1e-15``."""
_CHUNK_ELEMENTS = 1 << 17
"""Candidates per chunk times boxes: about 1 MB per ``(chunk, boxes)`` float array."""


def ehvi(mu: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray) -> FloatArray:
    """Expected hypervolume improvement, computed directly (underflows far from the front).

    Args:
        mu: Predictive means of the objectives, shape ``(p, m)`` (maximized).
        sigma: Predictive standard deviations, shape ``(p, m)``, all ``> 0``.
        lower: Lower corners of the non-dominated boxes, shape ``(c, m)``, finite.
        upper: Upper corners, shape ``(c, m)``, ``> lower``; may be ``+inf``.

    Returns:
        EHVI of each candidate, shape ``(p,)``, in units of hypervolume.
    """
    mu, sigma, lower, upper = _checked(mu, sigma, lower, upper)
    p, m = mu.shape
    out = np.zeros(p)
    intervals = [_intervals(lower[:, j], upper[:, j]) for j in range(m)]
    for rows in _chunks(p, lower.shape[0]):
        total = np.ones((rows.stop - rows.start, lower.shape[0]))
        for j, (lo, hi, box_of) in enumerate(intervals):
            s = sigma[rows, j : j + 1]
            factor = s * (_h((mu[rows, j : j + 1] - lo) / s) - _h_upper(mu[rows, j : j + 1], s, hi))
            total *= np.maximum(factor, 0.0)[:, box_of]
        out[rows] = total.sum(axis=1)
    return out


def log_ehvi(mu: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray) -> FloatArray:
    """Logarithm of the expected hypervolume improvement, finite wherever ``sigma > 0``.

    Args:
        mu: Predictive means of the objectives, shape ``(p, m)`` (maximized).
        sigma: Predictive standard deviations, shape ``(p, m)``, all ``> 0``.
        lower: Lower corners of the non-dominated boxes, shape ``(c, m)``, finite.
        upper: Upper corners, shape ``(c, m)``, ``> lower``; may be ``+inf``.

    Returns:
        ``log EHVI`` of each candidate, shape ``(p,)`` (``-inf`` only if ``c = 0``).
    """
    value, _, _ = _log_ehvi(mu, sigma, lower, upper, grad=False)
    return value


def log_ehvi_with_grad(
    mu: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log EHVI and its derivatives in ``mu`` and ``sigma``.

    Args:
        mu: Predictive means of the objectives, shape ``(p, m)`` (maximized).
        sigma: Predictive standard deviations, shape ``(p, m)``, all ``> 0``.
        lower: Lower corners of the non-dominated boxes, shape ``(c, m)``, finite.
        upper: Upper corners, shape ``(c, m)``, ``> lower``; may be ``+inf``.

    Returns:
        ``(value, d_mu, d_sigma)`` of shapes ``(p,)``, ``(p, m)`` and ``(p, m)``: ``log
        EHVI`` and its partial derivatives (each candidate's value depends on its own row
        only).
    """
    value, d_mu, d_sigma = _log_ehvi(mu, sigma, lower, upper, grad=True)
    assert d_mu is not None and d_sigma is not None
    return value, d_mu, d_sigma


def _log_ehvi(
    mu: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray, grad: bool
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    mu, sigma, lower, upper = _checked(mu, sigma, lower, upper)
    p, m = mu.shape
    c = lower.shape[0]
    value = np.full(p, -np.inf)
    d_mu = np.zeros((p, m)) if grad else None
    d_sigma = np.zeros((p, m)) if grad else None
    if c == 0:
        return value, d_mu, d_sigma
    intervals = [_intervals(lower[:, j], upper[:, j]) for j in range(m)]
    for rows in _chunks(p, c):
        # log of each box's expected improvement: a sum over objectives of log factors.
        terms = np.zeros((rows.stop - rows.start, c))
        slopes = []
        for j, (lo, hi, box_of) in enumerate(intervals):
            log_f, g_mu, g_sigma = _log_factor(mu[rows, j], sigma[rows, j], lo, hi, grad)
            terms += log_f[:, box_of]
            slopes.append((g_mu, g_sigma, box_of))
        total = logsumexp(terms, axis=1)
        value[rows] = total
        if d_mu is None or d_sigma is None:
            continue
        weight = np.exp(terms - total[:, None])  # each box's share of the EHVI
        for j, (g_mu, g_sigma, box_of) in enumerate(slopes):
            assert g_mu is not None and g_sigma is not None
            d_mu[rows, j] = np.einsum("pb,pb->p", weight, g_mu[:, box_of])
            d_sigma[rows, j] = np.einsum("pb,pb->p", weight, g_sigma[:, box_of])
    return value, d_mu, d_sigma


def _log_factor(
    mu: FloatArray, sigma: FloatArray, lo: FloatArray, hi: FloatArray, grad: bool
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """``log E[(min(Y, hi) - lo)^+]`` and its derivatives, shape ``(p, n)``.

    ``mu`` and ``sigma`` have shape ``(p,)``, the intervals ``lo < hi`` shape ``(n,)``.
    With ``F = sigma * (h(a) - h(b))``, ``a = (mu - lo) / sigma`` and ``b = (mu - hi) /
    sigma``: ``dF/dmu = Phi(a) - Phi(b)`` and ``dF/dsigma = phi(a) - phi(b)``.
    """
    mu, sigma = mu[:, None], sigma[:, None]
    log_sigma = np.log(sigma)
    out = np.empty((mu.shape[0], lo.size))
    g_mu = np.empty_like(out) if grad else None
    g_sigma = np.empty_like(out) if grad else None

    # Unbounded above: F = sigma * h(a), the expected improvement over lo.
    open_ = np.isinf(hi)
    a = (mu - lo[open_]) / sigma
    log_f = log_sigma + log_h(a)
    out[:, open_] = log_f
    if g_mu is not None and g_sigma is not None:
        g_mu[:, open_] = np.exp(log_ndtr(a) - log_f)
        g_sigma[:, open_] = np.exp(_log_phi(a) - log_f)
    if np.all(open_):
        return out, g_mu, g_sigma

    closed = ~open_
    lo, hi = lo[closed], hi[closed]
    shape = (mu.shape[0], lo.size)
    a = (mu - lo) / sigma
    b = (mu - hi) / sigma
    w = np.broadcast_to((hi - lo) / sigma, shape)
    mid = (mu - 0.5 * (lo + hi)) / sigma
    log_sigma = np.broadcast_to(log_sigma, shape)
    log_f = np.empty(shape)
    d_mu = np.empty(shape)
    d_sigma = np.empty(shape)
    narrow = w * (1.0 + np.abs(mid)) < _NARROW
    right = ~narrow & (b >= 0.0)
    left = ~narrow & (b < 0.0)

    if np.any(narrow):
        ls, wn, mn = log_sigma[narrow], w[narrow], mid[narrow]
        lp = log_ndtr(mn)
        ratio = np.exp(_log_phi(mn) - lp)  # phi(mid) / Phi(mid)
        # int Phi over the interval = w Phi(mid) (1 + corr): the midpoint rule plus its
        # w^3 f''(mid) / 24 term; likewise for the integrals of phi and phi' below.
        corr = -wn * wn * mn * ratio / 24.0
        log_f[narrow] = ls + np.log(wn) + lp + np.log1p(corr)
        if grad:
            scale = ratio / np.exp(ls) / (1.0 + corr)
            d_mu[narrow] = scale * (1.0 + wn * wn * (mn * mn - 1.0) / 24.0)
            d_sigma[narrow] = -mn * scale * (1.0 + wn * wn * (mn * mn - 3.0) / 24.0)

    if np.any(right):
        # h(a) - h(b) = w - (h(-b) - h(-a)) since h(z) = z + h(-z); the subtracted part
        # is at most w / 2 and both its arguments lie left of 0, where logs are safe.
        ar, br, wr = a[right], b[right], w[right]
        log_w = np.log(wr)
        inner = _log_dh_left(-br, -ar)
        log_f[right] = log_sigma[right] + log_w + np.log1p(-np.exp(inner - log_w))
        if grad:
            lq_b, lq_a = log_ndtr(-br), log_ndtr(-ar)  # upper tails Phi(-b) > Phi(-a)
            d_mu[right] = np.exp(lq_b + _log1mexp(lq_a - lq_b) - log_f[right])

    if np.all(left):  # the common case, without the cost of masking
        log_f = log_sigma + _log_dh_left(a, b)
        if grad:
            d_mu = np.exp(_log_dphi_left(a, b) - log_f)
    elif np.any(left):
        al, bl = a[left], b[left]
        log_f[left] = log_sigma[left] + _log_dh_left(al, bl)
        if grad:
            d_mu[left] = np.exp(_log_dphi_left(al, bl) - log_f[left])

    out[:, closed] = log_f
    if g_mu is None or g_sigma is None:
        return out, None, None
    if np.any(narrow):
        wide = ~narrow
        lf = log_f[wide]
        d_sigma[wide] = np.exp(_log_phi(a[wide]) - lf) - np.exp(_log_phi(b[wide]) - lf)
    else:
        d_sigma = np.exp(_log_phi(a) - log_f) - np.exp(_log_phi(b) - log_f)
    g_mu[:, closed] = d_mu
    g_sigma[:, closed] = d_sigma
    return out, g_mu, g_sigma


def _log_dh_left(a: FloatArray, b: FloatArray) -> FloatArray:
    """``log(h(a) - h(b))`` for ``a > b`` and ``b < 0``, intervals not narrow."""
    la = log_h(a)
    out: FloatArray = la + _log1mexp(log_h(b) - la)
    return out


def _log_dphi_left(a: FloatArray, b: FloatArray) -> FloatArray:
    """``log(Phi(a) - Phi(b))`` for ``a > b`` and ``b < 0``, intervals not narrow."""
    out = np.empty_like(a)
    below = a <= 0.0
    la, lb = log_ndtr(a[below]), log_ndtr(b[below])
    out[below] = la + _log1mexp(lb - la)
    # Straddling 0: 1 - Phi(-a) - Phi(b), where the two tails sum to at most 1 - O(w).
    across = ~below
    out[across] = _log1mexp(np.logaddexp(log_ndtr(-a[across]), log_ndtr(b[across])))
    return out


def _log_phi(z: FloatArray) -> FloatArray:
    out: FloatArray = -0.5 * z * z - _C1
    return out


def _h(z: FloatArray) -> FloatArray:
    out: FloatArray = np.exp(_log_phi(z)) + z * ndtr(z)
    return out


def _h_upper(mu: FloatArray, sigma: FloatArray, hi: FloatArray) -> FloatArray:
    """``h((mu - hi) / sigma)``, which is 0 where ``hi = +inf``."""
    open_ = np.isinf(hi)
    out = _h((mu - np.where(open_, 0.0, hi)) / sigma)
    out[:, open_] = 0.0
    return out


def _intervals(lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray, NDArray[np.intp]]:
    """The distinct ``(lo, hi)`` pairs of one objective and, per box, the index of its pair."""
    pairs, box_of = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    return pairs[:, 0].copy(), pairs[:, 1].copy(), box_of.reshape(-1)


def _chunks(p: int, c: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(c, 1))
    for start in range(0, p, step):
        yield slice(start, min(start + step, p))


def _checked(
    mu: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if mu.ndim != 2 or sigma.shape != mu.shape:
        raise InvalidInput("mu, sigma", f"need equal shapes (p, m), got {mu.shape}, {sigma.shape}")
    m = mu.shape[1]
    if lower.ndim != 2 or lower.shape[1] != m or upper.shape != lower.shape:
        raise InvalidInput(
            "lower, upper", f"need equal shapes (c, {m}), got {lower.shape}, {upper.shape}"
        )
    if not np.all(sigma > 0.0) or not np.all(np.isfinite(mu)) or not np.all(np.isfinite(sigma)):
        raise InvalidInput("mu, sigma", "need finite means and positive finite deviations")
    if not np.all(np.isfinite(lower)) or not np.all(upper > lower):
        raise InvalidInput("lower, upper", "need finite lower corners below the upper ones")
    return mu, sigma, lower, upper
