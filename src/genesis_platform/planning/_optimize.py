"""Maximize an acquisition over a mixed, possibly constrained, encoded space.

Candidates are a randomly shifted Sobol' set plus Gaussian perturbations of the best
observed points; the best of both start a joint L-BFGS-B run with analytic gradients (or
SLSQP when the space has parameter constraints). Optimized rows are rounded to valid
encodings and every row is checked against the constraints before it is ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from genesis_platform.planning._acquisition import Acquisition
from genesis_platform.planning._feasible import FeasibleRegion
from genesis_platform.planning.encoding import Encoder, FloatArray

__all__ = ["AcquisitionOptimizer"]

_LOCAL_SIGMAS = np.array([1e-3, 1e-2, 1e-1])
"""Standard deviations (unit-cube units) of the perturbations around the best points."""

_MAX_ITER = 40
"""The chosen point settles within a few dozen iterations (the sum keeps creeping up on poor
starts); more only costs time."""


@dataclass
class AcquisitionOptimizer:
    """Finds high-acquisition points: score candidates, then multi-start local search, then round.

    Args:
        encoder: Encoder of the space.
        base_uniform: Space-filling uniform points (shape ``(m, n_params)``); each call
            shifts them by a random vector modulo 1 (a Cranley-Patterson rotation).
        n_starts: Number of local-search starts.
        max_enumerated: Up to this many combinations of the ``Choice`` parameters, each is
            optimized exactly (choices fixed, continuous part optimized); beyond it the
            one-hot columns are relaxed to ``[0, 1]`` and rounded by argmax.
        n_local: Number of Gaussian perturbations of the best points to score.
        fixed: Encoded columns held at given values in every candidate (e.g. the target
            fidelity), as ``{column: value}``.
    """

    encoder: Encoder
    base_uniform: FloatArray
    n_starts: int = 8
    max_enumerated: int = 16
    n_local: int = 256
    fixed: dict[int, float] | None = None

    def __post_init__(self) -> None:
        enc = self.encoder
        self.region = FeasibleRegion(enc)
        self._finite: FloatArray | None = None
        size = enc.size()
        if size is not None and size <= self.base_uniform.shape[0]:
            finite = enc.enumerate()
            self._finite = self._fix(finite[self.region.mask(finite)])
        self._combos: FloatArray | None = None
        self._cat_cols = enc.categorical_columns()
        if enc.categorical_blocks and enc.categorical_combinations() <= self.max_enumerated:
            self._combos = enc.enumerate_categorical()
        free = enc.continuous_columns if self._combos is not None else np.arange(enc.dim)
        fixed = np.array(sorted(self.fixed or {}), dtype=np.intp)
        self._free = np.setdiff1d(free, fixed).astype(np.intp)

    def candidates(self, incumbents: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Feasible space-filling and local candidates (snapped), without optimization."""
        if self._finite is not None:
            return self._finite
        raw, local = self._candidates(incumbents, rng)
        return np.vstack([local, raw])

    def ranked(
        self, acquisition: Acquisition, incumbents: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Feasible snapped candidate encodings, best first. Shape ``(k, d)``.

        Args:
            acquisition: What to maximize.
            incumbents: Encoded best observed points, shape ``(j, d)``, best first.
            rng: Randomness of this call.
        """
        if self._finite is not None:
            pool, scores = self._finite, acquisition(self._finite)
        else:
            raw, local = self._candidates(incumbents, rng)
            raw_scores, local_scores = acquisition(raw), acquisition(local)
            starts = self._starts(raw, raw_scores, local, local_scores)
            optimized = self.encoder.snap(self._optimize(acquisition, starts))
            optimized = self._fix(optimized)[self.region.mask(optimized)]
            pool = np.vstack([optimized, local, raw])
            scores = np.concatenate([acquisition(optimized), local_scores, raw_scores])
        order = np.argsort(-scores, kind="stable")
        ranked: FloatArray = pool[order]
        return ranked

    def _fix(self, x: FloatArray) -> FloatArray:
        if self.fixed:
            x = x.copy()
            for col, value in self.fixed.items():
                x[:, col] = value
        return x

    def _feasible(self, x: FloatArray) -> FloatArray:
        x = self._fix(self.encoder.snap(self.region.repair(x)))
        out: FloatArray = x[self.region.mask(x)]
        return out

    def _candidates(
        self, incumbents: FloatArray, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        enc = self.encoder
        u = (self.base_uniform + rng.random(self.base_uniform.shape[1])) % 1.0
        raw = self._feasible(enc.from_uniform(u))
        if raw.shape[0] < self.n_starts and self.region.constrained:
            raw = np.vstack([raw, self._fix(self.region.feasible_pool(rng, u.shape[0]))])
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
        return raw, self._feasible(local)

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

    def _optimize(self, acquisition: Acquisition, starts: FloatArray) -> FloatArray:
        """One joint local search over all starts (the objective is a sum of independent terms).

        L-BFGS-B on the box; SLSQP when the space has parameter constraints.
        """
        free = self._free
        if free.size == 0 or starts.shape[0] == 0:
            return starts
        base = starts.copy()
        shape = (starts.shape[0], free.size)

        def objective(z: FloatArray) -> tuple[float, FloatArray]:
            x = base.copy()
            x[:, free] = z.reshape(shape)
            value, grad = acquisition.with_grad(x)
            return -float(value.sum()), -grad[:, free].ravel()

        options: dict[str, Any] = {"maxiter": _MAX_ITER}
        method, constraints = "L-BFGS-B", self.region.slsqp_constraints(base, free)
        if constraints:
            method = "SLSQP"
        result = minimize(
            objective,
            starts[:, free].ravel(),
            jac=True,
            method=method,
            bounds=[(0.0, 1.0)] * (shape[0] * shape[1]),
            constraints=constraints or (),
            options=options,
        )
        out = base.copy()
        out[:, free] = np.clip(np.asarray(result.x).reshape(shape), 0.0, 1.0)
        return out


def _top(pool: FloatArray, scores: FloatArray, k: int) -> FloatArray:
    order = np.argsort(-scores, kind="stable")[:k]
    top: FloatArray = pool[order]
    return top
