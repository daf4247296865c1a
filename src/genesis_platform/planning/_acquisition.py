"""Log expected improvement and its optimization over a (mixed) encoded space.

LogEI follows Ament et al. (2023), "Unexpected Improvements to Expected Improvement": the
logarithm of EI computed without underflow, so its gradient stays informative far from the
incumbent, where plain EI is numerically zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr

from genesis_platform.planning._gp_model import Posterior
from genesis_platform.planning.encoding import Encoder, FloatArray

__all__ = ["AcquisitionOptimizer", "log_ei", "log_ei_with_grad", "log_h"]

_C1 = 0.5 * math.log(2.0 * math.pi)
_C2 = 0.5 * math.log(math.pi / 2.0)
_ASYMPTOTIC = -1.0 / math.sqrt(np.finfo(np.float64).eps)
_LOCAL_SIGMAS = np.array([1e-3, 1e-2, 1e-1])
"""Standard deviations (unit-cube units) of the perturbations around the best points."""


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


def log_ei(mean: FloatArray, std: FloatArray, best: float) -> FloatArray:
    """Log expected improvement over ``best`` (maximization). Shapes ``(m,)``."""
    z = (mean - best) / std
    out: FloatArray = log_h(z) + np.log(std)
    return out


def log_ei_with_grad(
    mean: FloatArray, std: FloatArray, best: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log EI and its derivatives in ``mean`` and ``std``. Each of shape ``(m,)``."""
    z = (mean - best) / std
    lh = log_h(z)
    d_mean = np.exp(log_ndtr(z) - lh) / std  # Phi(z) / h(z) / std
    d_std = np.exp(-0.5 * z * z - _C1 - lh) / std  # phi(z) / h(z) / std
    return lh + np.log(std), d_mean, d_std


def _acq(model: Posterior, x: FloatArray, best: float) -> FloatArray:
    mean, var = model.predict(x)
    return log_ei(mean, np.sqrt(var), best)


@dataclass
class AcquisitionOptimizer:
    """Finds high-LogEI points: score candidates, then multi-start L-BFGS-B, then round.

    Args:
        encoder: Encoder of the space.
        base_uniform: Space-filling uniform points (shape ``(m, n_params)``); each call
            shifts them by a random vector modulo 1 (a Cranley-Patterson rotation).
        n_starts: Number of L-BFGS-B starts.
        max_enumerated: Up to this many combinations of the ``Choice`` parameters, each is
            optimized exactly (choices fixed, continuous part optimized); beyond it the
            one-hot columns are relaxed to ``[0, 1]`` and rounded by argmax.
        n_local: Number of Gaussian perturbations of the best points to score.
    """

    encoder: Encoder
    base_uniform: FloatArray
    n_starts: int = 8
    max_enumerated: int = 16
    n_local: int = 256

    def __post_init__(self) -> None:
        enc = self.encoder
        self._finite: FloatArray | None = None
        size = enc.size()
        if size is not None and size <= self.base_uniform.shape[0]:
            self._finite = enc.enumerate()
        self._combos: FloatArray | None = None
        self._cat_cols = enc.categorical_columns()
        if enc.categorical_blocks and enc.categorical_combinations() <= self.max_enumerated:
            self._combos = enc.enumerate_categorical()
        if self._combos is not None:
            self._free = enc.continuous_columns
        else:
            self._free = np.arange(enc.dim, dtype=np.intp)

    def ranked(
        self, model: Posterior, best: float, incumbents: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Snapped candidate encodings, best LogEI first. Shape ``(k, d)``.

        Args:
            model: The posterior (with any fantasies).
            best: The incumbent (standardized units).
            incumbents: Encoded best observed points, shape ``(j, d)``, best first.
            rng: Randomness of this call.
        """
        if self._finite is not None:
            pool, scores = self._finite, _acq(model, self._finite, best)
        else:
            raw, local = self._candidates(incumbents, rng)
            raw_scores, local_scores = _acq(model, raw, best), _acq(model, local, best)
            starts = self._starts(raw, raw_scores, local, local_scores)
            optimized = self.encoder.snap(self._optimize(model, best, starts))
            pool = np.vstack([optimized, local, raw])
            scores = np.concatenate([_acq(model, optimized, best), local_scores, raw_scores])
        order = np.argsort(-scores, kind="stable")
        ranked: FloatArray = pool[order]
        return ranked

    def _candidates(
        self, incumbents: FloatArray, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        enc = self.encoder
        u = (self.base_uniform + rng.random(self.base_uniform.shape[1])) % 1.0
        raw = enc.from_uniform(u)
        if incumbents.shape[0] == 0:
            return raw, raw[:0]
        pick = incumbents[np.arange(self.n_local) % incumbents.shape[0]]
        sigma = _LOCAL_SIGMAS[rng.integers(_LOCAL_SIGMAS.size, size=(self.n_local, 1))]
        local = pick.copy()
        cont = enc.continuous_columns
        local[:, cont] += sigma * rng.standard_normal((self.n_local, cont.size))
        local = self._swap_choices(local, rng)
        if self._combos is not None:
            local = np.vstack([local, self._with_every_combo(incumbents)])
        return raw, enc.snap(local)

    def _swap_choices(self, local: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Redraw each categorical of a perturbed point with probability 0.2."""
        for start, stop in self.encoder.categorical_blocks:
            redraw = np.flatnonzero(rng.random(local.shape[0]) < 0.2)
            labels = rng.integers(stop - start, size=redraw.size)
            block = np.zeros((labels.size, stop - start))
            block[np.arange(labels.size), labels] = 1.0
            local[redraw, start:stop] = block
        return local

    def _with_every_combo(self, incumbents: FloatArray) -> FloatArray:
        assert self._combos is not None
        rows = np.repeat(incumbents, self._combos.shape[0], axis=0)
        rows[:, self._cat_cols] = np.tile(self._combos, (incumbents.shape[0], 1))
        return rows

    def _starts(
        self, raw: FloatArray, raw_scores: FloatArray, local: FloatArray, local_scores: FloatArray
    ) -> FloatArray:
        """Half the starts from the best space-filling points, half from the local ones.

        With enumerated choices, the best candidate of every combination is a start too.
        """
        n_local = min(self.n_starts // 2, local.shape[0])
        picks = [_top(raw, raw_scores, self.n_starts - n_local), _top(local, local_scores, n_local)]
        if self._combos is not None:
            pool = np.vstack([raw, local])
            picks.append(self._best_per_combo(pool, np.concatenate([raw_scores, local_scores])))
        return np.vstack(picks)

    def _best_per_combo(self, pool: FloatArray, scores: FloatArray) -> FloatArray:
        assert self._combos is not None
        combo_of = np.argmax(pool[:, self._cat_cols] @ self._combos.T, axis=1)
        rows = []
        for c in range(self._combos.shape[0]):
            members = np.flatnonzero(combo_of == c)
            if members.size:
                rows.append(pool[members[np.argmax(scores[members])]])
        return np.array(rows).reshape(len(rows), pool.shape[1])

    def _optimize(self, model: Posterior, best: float, starts: FloatArray) -> FloatArray:
        """Joint L-BFGS-B over all starts (the objective is a sum of independent terms)."""
        free = self._free
        if free.size == 0:
            return starts
        base = starts.copy()
        shape = (starts.shape[0], free.size)

        def objective(z: FloatArray) -> tuple[float, FloatArray]:
            x = base.copy()
            x[:, free] = z.reshape(shape)
            mean, var, dmean, dvar = model.predict_with_grad(x)
            std = np.sqrt(var)
            value, d_mean, d_std = log_ei_with_grad(mean, std, best)
            grad = d_mean[:, None] * dmean + (d_std / (2.0 * std))[:, None] * dvar
            return -float(value.sum()), -grad[:, free].ravel()

        result = minimize(
            objective,
            starts[:, free].ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * (shape[0] * shape[1]),
            # The chosen point settles within a few dozen iterations (the sum keeps
            # creeping up on poor starts); more only costs time.
            options={"maxiter": 40},
        )
        out = base.copy()
        out[:, free] = np.clip(np.asarray(result.x).reshape(shape), 0.0, 1.0)
        return out


def _top(pool: FloatArray, scores: FloatArray, k: int) -> FloatArray:
    order = np.argsort(-scores, kind="stable")[:k]
    top: FloatArray = pool[order]
    return top
