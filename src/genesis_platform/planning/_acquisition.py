"""Acquisition functions: how much a candidate is worth measuring, with gradients.

Every acquisition scores encoded points ``x`` (m, d) and returns ``(m,)`` values, higher is
better; :meth:`Acquisition.with_grad` also returns the ``(m, d)`` gradient for L-BFGS-B.

- :class:`LogEI` — log expected improvement (Ament et al., 2023, "Unexpected Improvements
  to Expected Improvement"): EI's logarithm computed without underflow, so its gradient
  stays informative far from the incumbent, where plain EI is numerically zero.
- :class:`LogNoisyEI` — the noisy form: EI averaged over incumbents drawn from the joint
  posterior of the latent function at the observed points (Letham et al., 2019, with the
  candidate's own correlation to them ignored), so noise in the best observation is not
  mistaken for a real optimum.
- :class:`UpperConfidenceBound` — ``mean + sqrt(beta) * std``.
- :class:`WithFeasibility` — adds ``log P(every outcome constraint holds)`` under
  independent GPs of the constrained metrics (Gardner et al., 2014).
- :class:`LogEHVI` — log expected hypervolume improvement for several objectives, exact
  for independent GPs (:mod:`~genesis_platform.planning._ehvi`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import erfcx, log_ndtr, logsumexp

from genesis_platform.planning._gp_model import Posterior
from genesis_platform.planning.encoding import FloatArray

__all__ = [
    "Acquisition",
    "LogEI",
    "LogNoisyEI",
    "UpperConfidenceBound",
    "WithFeasibility",
    "log_ei",
    "log_ei_with_grad",
    "log_h",
]

_C1 = 0.5 * math.log(2.0 * math.pi)
_C2 = 0.5 * math.log(math.pi / 2.0)
_ASYMPTOTIC = -1.0 / math.sqrt(np.finfo(np.float64).eps)


def log_h(z: FloatArray) -> FloatArray:
    """``log(phi(z) + z * Phi(z))``, accurate for every ``z`` (any shape)."""
    z = np.asarray(z, dtype=np.float64)
    if np.all(z > -1.0):  # the common case, kept cheap for the optimizer
        out: FloatArray = np.log(np.exp(-0.5 * z * z - _C1) + z * np.exp(log_ndtr(z)))
        return out
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu * zu - _C1) + zu * np.exp(log_ndtr(zu)))
    middle = (~upper) & (z > _ASYMPTOTIC)
    zm = z[middle]
    inner = np.log(erfcx(-zm / math.sqrt(2.0)) * np.abs(zm)) + _C2
    out[middle] = -0.5 * zm * zm - _C1 + _log1mexp(inner)
    far = z <= _ASYMPTOTIC
    zf = z[far]
    out[far] = -0.5 * zf * zf - _C1 - 2.0 * np.log(np.abs(zf))
    return out


def _log1mexp(x: FloatArray) -> FloatArray:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-log 2``."""
    x = np.minimum(x, -np.finfo(np.float64).tiny)
    out = np.empty_like(x)
    near = x > -math.log(2.0)
    out[near] = np.log(-np.expm1(x[near]))
    out[~near] = np.log1p(-np.exp(x[~near]))
    return out


def log_ei(mean: FloatArray, std: FloatArray, best: float | FloatArray) -> FloatArray:
    """Log expected improvement over ``best`` (maximization). Shapes ``(m,)``."""
    z = (mean - best) / std
    out: FloatArray = log_h(z) + np.log(std)
    return out


def log_ei_with_grad(
    mean: FloatArray, std: FloatArray, best: float | FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log EI and its derivatives in ``mean`` and ``std``. Each of shape ``(m,)``."""
    z = (mean - best) / std
    lh = log_h(z)
    d_mean = np.exp(log_ndtr(z) - lh) / std  # Phi(z) / h(z) / std
    d_std = np.exp(-0.5 * z * z - _C1 - lh) / std  # phi(z) / h(z) / std
    return lh + np.log(std), d_mean, d_std


class Acquisition(Protocol):
    """Scores encoded candidates; higher is better."""

    def __call__(self, x: FloatArray) -> FloatArray:
        """Values at ``x`` (m, d). Shape ``(m,)``."""
        ...

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Values (m,) and gradients (m, d) at ``x`` (m, d)."""
        ...


def _chain(
    dmean: FloatArray, dvar: FloatArray, std: FloatArray, d_mu: FloatArray, d_std: FloatArray
) -> FloatArray:
    """Gradient in ``x`` from derivatives in the posterior mean and standard deviation."""
    out: FloatArray = d_mu[:, None] * dmean + (d_std / (2.0 * std))[:, None] * dvar
    return out


@dataclass(frozen=True)
class LogEI:
    """Log expected improvement over ``best`` (standardized units)."""

    model: Posterior
    best: float

    def __call__(self, x: FloatArray) -> FloatArray:
        mean, var = self.model.predict(x)
        return log_ei(mean, np.sqrt(var), self.best)

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        mean, var, dmean, dvar = self.model.predict_with_grad(x)
        std = np.sqrt(var)
        value, d_mu, d_std = log_ei_with_grad(mean, std, self.best)
        return value, _chain(dmean, dvar, std, d_mu, d_std)


@dataclass(frozen=True)
class LogNoisyEI:
    """Log of EI averaged over sampled incumbents ``bests`` (shape ``(s,)``)."""

    model: Posterior
    bests: FloatArray

    def __call__(self, x: FloatArray) -> FloatArray:
        mean, var = self.model.predict(x)
        std = np.sqrt(var)
        terms = log_ei(mean[:, None], std[:, None], self.bests[None, :])
        out: FloatArray = logsumexp(terms, axis=1) - math.log(self.bests.size)
        return out

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        mean, var, dmean, dvar = self.model.predict_with_grad(x)
        std = np.sqrt(var)
        terms, d_mu, d_std = log_ei_with_grad(
            np.repeat(mean, self.bests.size),
            np.repeat(std, self.bests.size),
            np.tile(self.bests, mean.size),
        )
        shape = (mean.size, self.bests.size)
        terms, d_mu, d_std = terms.reshape(shape), d_mu.reshape(shape), d_std.reshape(shape)
        total = logsumexp(terms, axis=1)
        weights = np.exp(terms - total[:, None])
        value = total - math.log(self.bests.size)
        return value, _chain(dmean, dvar, std, (weights * d_mu).sum(1), (weights * d_std).sum(1))


@dataclass(frozen=True)
class UpperConfidenceBound:
    """``mean + sqrt(beta) * std``."""

    model: Posterior
    beta: float

    def __call__(self, x: FloatArray) -> FloatArray:
        mean, var = self.model.predict(x)
        out: FloatArray = mean + math.sqrt(self.beta) * np.sqrt(var)
        return out

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        mean, var, dmean, dvar = self.model.predict_with_grad(x)
        std = np.sqrt(var)
        d_std = np.full_like(std, math.sqrt(self.beta))
        return mean + d_std * std, _chain(dmean, dvar, std, np.ones_like(mean), d_std)


@dataclass(frozen=True)
class OutcomeBound:
    """A constrained metric's GP and its bound (standardized units): ``sign * (y - bound) >= 0``.

    ``sign`` is ``+1`` for ``metric >= bound`` and ``-1`` for ``metric <= bound``.
    """

    model: Posterior
    bound: float
    sign: float

    def log_probability(self, x: FloatArray) -> FloatArray:
        """``log P(constraint holds)`` at ``x`` (m, d)."""
        mean, var = self.model.predict(x)
        out: FloatArray = log_ndtr(self.sign * (mean - self.bound) / np.sqrt(var))
        return out

    def log_probability_with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Values (m,) and gradients (m, d) of :meth:`log_probability`."""
        mean, var, dmean, dvar = self.model.predict_with_grad(x)
        std = np.sqrt(var)
        z = self.sign * (mean - self.bound) / std
        value = log_ndtr(z)
        ratio = np.exp(-0.5 * z * z - _C1 - value)  # phi(z) / Phi(z)
        d_mu = ratio * self.sign / std
        d_std = -ratio * z / std
        return value, _chain(dmean, dvar, std, d_mu, d_std)


@dataclass(frozen=True)
class WithFeasibility:
    """A log-scale acquisition plus ``log P(feasible)`` of independent outcome constraints."""

    base: Acquisition
    bounds: tuple[OutcomeBound, ...]

    def __call__(self, x: FloatArray) -> FloatArray:
        out = self.base(x)
        for bound in self.bounds:
            out = out + bound.log_probability(x)
        return out

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        value, grad = self.base.with_grad(x)
        for bound in self.bounds:
            v, g = bound.log_probability_with_grad(x)
            value, grad = value + v, grad + g
        return value, grad


@dataclass(frozen=True)
class LogEHVI:
    """Log expected hypervolume improvement of independent objective GPs (all maximized).

    ``lower`` and ``upper`` (c, k) are the boxes of the region that no current Pareto
    point dominates, above the reference point, in standardized units.
    """

    models: tuple[Posterior, ...]
    lower: FloatArray
    upper: FloatArray

    def __call__(self, x: FloatArray) -> FloatArray:
        from genesis_platform.planning._ehvi import log_ehvi

        moments = [m.predict(x) for m in self.models]
        mu = np.stack([mean for mean, _ in moments], axis=1)
        sigma = np.sqrt(np.stack([var for _, var in moments], axis=1))
        out: FloatArray = log_ehvi(mu, sigma, self.lower, self.upper)
        return out

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        from genesis_platform.planning._ehvi import log_ehvi_with_grad

        parts = [m.predict_with_grad(x) for m in self.models]
        mu = np.stack([p[0] for p in parts], axis=1)
        sigma = np.sqrt(np.stack([p[1] for p in parts], axis=1))
        value, d_mu, d_sigma = log_ehvi_with_grad(mu, sigma, self.lower, self.upper)
        grad = np.zeros_like(x)
        for j, (_, _, dmean, dvar) in enumerate(parts):
            grad += _chain(dmean, dvar, sigma[:, j], d_mu[:, j], d_sigma[:, j])
        return value, grad
