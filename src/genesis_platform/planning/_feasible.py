"""The feasible region of a constrained space, in encoded (unit-cube) coordinates.

Planners search the unit cube of :mod:`~genesis_platform.planning.encoding`; this module
tells which encoded rows satisfy the space's parameter constraints and moves rows towards
the region:

- **Linear constraints on linear-scale parameters** (every equality, and inequalities such
  as ``a + b <= 1``) are linear in encoded coordinates too. :meth:`FeasibleRegion.repair`
  projects rows onto them by cyclic projections (onto each hyperplane or half-space, then
  the box), which converge to a point of the intersection when it is not empty.
- **Other constraints** (``x_salt * T <= 120``, log-scaled parameters) are met by
  rejection: rows that break them are dropped by :meth:`FeasibleRegion.mask`, and the
  acquisition optimizer keeps them as SLSQP constraints.

Integer parameters are relaxed while optimizing and rounded afterwards, so a rounded row is
checked again before it is proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.constraints import ParameterConstraint
from genesis_platform.planning.encoding import Encoder, FloatArray
from genesis_platform.planning.space import Choice, Int, Real

__all__ = ["FeasibleRegion", "check_satisfiable"]

_PROJECTION_SWEEPS = 200
_SAMPLE_ROUNDS = 8


@dataclass(frozen=True)
class _LinearRow:
    """``a @ u <op> b`` on the encoded columns ``cols``."""

    cols: np.ndarray
    a: FloatArray
    b: float
    equality: bool


class FeasibleRegion:
    """The part of the unit cube whose points satisfy the space's parameter constraints.

    Args:
        encoder: The encoder of the constrained space.
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.constraints: tuple[ParameterConstraint, ...] = encoder.space.constraints
        self._numeric: dict[str, int] = {}
        for (name, spec), cols in zip(encoder.space.items(), encoder.columns, strict=True):
            if not isinstance(spec, Choice):
                self._numeric[name] = cols.start
        self._linear = [row for c in self.constraints if (row := self._linear_row(c)) is not None]
        self.nonlinear = tuple(c for c in self.constraints if self._linear_row(c) is None)

    @property
    def constrained(self) -> bool:
        """Whether the space has any parameter constraint."""
        return bool(self.constraints)

    def values(self, x: FloatArray) -> dict[str, FloatArray]:
        """Numeric parameter values of encoded rows ``x`` (m, dim); integers unrounded."""
        x = np.atleast_2d(x)
        return {
            name: self.encoder.scale(col).from_unit(np.clip(x[:, col], 0.0, 1.0))
            for name, col in self._numeric.items()
        }

    def mask(self, x: FloatArray) -> np.ndarray:
        """Which encoded rows (m, dim) satisfy every constraint. Shape ``(m,)``, bool."""
        x = np.atleast_2d(x)
        ok = np.ones(x.shape[0], dtype=bool)
        if not self.constraints:
            return ok
        values = self.values(x)
        for constraint in self.constraints:
            ok &= constraint.holds(values)
        return ok

    def repair(self, x: FloatArray) -> FloatArray:
        """Project encoded rows onto the linear constraints (and the box). Returns a copy."""
        out = np.array(x, dtype=np.float64, ndmin=2)
        if not self._linear:
            return out
        cols = self.encoder.continuous_columns
        for _ in range(_PROJECTION_SWEEPS):
            for row in self._linear:
                excess = out[:, row.cols] @ row.a - row.b
                if not row.equality:
                    excess = np.maximum(excess, 0.0)
                out[:, row.cols] -= np.outer(excess / float(row.a @ row.a), row.a)
            out[:, cols] = np.clip(out[:, cols], 0.0, 1.0)
            if self._linear_violation(out) <= 1e-12:
                break
        return out

    def sample(self, u: FloatArray) -> FloatArray:
        """Feasible snapped encodings from uniform rows ``u`` (m, n_params); may be fewer."""
        x = self.encoder.snap(self.repair(self.encoder.from_uniform(u)))
        if not self.constrained:
            return x
        out: FloatArray = x[self.mask(x)]
        return out

    def feasible_pool(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Up to ``size`` feasible snapped encodings drawn at random (rejection sampling)."""
        found: list[FloatArray] = []
        count = 0
        for _ in range(_SAMPLE_ROUNDS):
            rows = self.sample(rng.random((size, self.encoder.n_params)))
            found.append(rows)
            count += rows.shape[0]
            if count >= size:
                break
        return np.vstack(found)[:size]

    def slsqp_constraints(self, base: FloatArray, free: np.ndarray) -> list[dict[str, Any]]:
        """SLSQP constraint dicts for optimizing ``base[:, free]`` (k starts, flattened).

        Every constraint holds for every start: ``fun(z) >= 0`` (``ineq``) or ``== 0``.
        """
        shape = (base.shape[0], free.size)

        def rows(z: FloatArray) -> FloatArray:
            x = base.copy()
            x[:, free] = z.reshape(shape)
            return x

        def inequalities(z: FloatArray) -> FloatArray:
            values = self.values(rows(z))
            parts = [-c.residual(values) for c in self.constraints if c.op == "<="]
            return np.concatenate(parts) if parts else np.zeros(0)

        def equalities(z: FloatArray) -> FloatArray:
            values = self.values(rows(z))
            parts = [c.residual(values) for c in self.constraints if c.op == "=="]
            return np.concatenate(parts) if parts else np.zeros(0)

        out: list[dict[str, Any]] = []
        if any(c.op == "<=" for c in self.constraints):
            out.append({"type": "ineq", "fun": inequalities})
        if any(c.op == "==" for c in self.constraints):
            out.append({"type": "eq", "fun": equalities})
        return out

    def _linear_violation(self, x: FloatArray) -> float:
        worst = 0.0
        for row in self._linear:
            excess = x[:, row.cols] @ row.a - row.b
            if not row.equality:
                excess = np.maximum(excess, 0.0)
            worst = max(worst, float(np.max(np.abs(excess))) if excess.size else 0.0)
        return worst

    def _linear_row(self, constraint: ParameterConstraint) -> _LinearRow | None:
        """The constraint in encoded coordinates, if it is linear there."""
        if constraint.linear is None:
            return None
        coefficients, bound = constraint.linear
        cols, a = [], []
        for name, c in coefficients.items():
            spec = self.encoder.space[name]
            if not isinstance(spec, Real | Int) or spec.log:
                return None
            col = self._numeric[name]
            scale = self.encoder.scale(col)
            cols.append(col)
            a.append(c * (scale.hi - scale.lo))
            bound -= c * scale.lo
        if not cols:
            return None
        return _LinearRow(np.array(cols, dtype=np.intp), np.array(a), bound, constraint.op == "==")


def check_satisfiable(encoder: Encoder, field: str = "constraints") -> None:
    """Refuse constraints that no point of the space meets (searched at random, repaired).

    Raises:
        InvalidInput: on ``field`` when 8 x 1024 random points, projected onto the linear
            constraints, all break some constraint.
    """
    region = FeasibleRegion(encoder)
    if not region.constrained:
        return
    if region.feasible_pool(np.random.default_rng(0), 1024).shape[0] == 0:
        texts = "; ".join(c.text for c in region.constraints)
        raise InvalidInput(
            field,
            f"no point of the space satisfies every constraint ({texts})",
            "check that they can all hold at once within the parameters' bounds",
        )
