"""Shared bookkeeping of the built-in planners: validation, state, duplicates, randomness.

Every built-in planner derives the randomness of one ``ask`` from ``(seed, n_asked)`` only,
so a planner rebuilt with :meth:`BasePlanner.load_state_dict` and told the same observations
proposes exactly what the original would have proposed next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput, PlannerError
from genesis_platform.planning._feasible import FeasibleRegion
from genesis_platform.planning.constraints import OutcomeConstraint, parse_outcome_constraint
from genesis_platform.planning.encoding import Encoder, FloatArray, PointKey, point_key
from genesis_platform.planning.fidelity import fidelity_of
from genesis_platform.planning.protocols import (
    Direction,
    Observation,
    Params,
    ParamValue,
    Surrogate,
)
from genesis_platform.planning.space import Space

__all__ = [
    "BasePlanner",
    "check_count",
    "check_objectives",
    "check_seed",
    "finite_or_none",
    "outcome_constraint_list",
    "reference_point_of",
    "uniform_points",
]

_MAX_ENUMERATED = 100_000
"""Finite spaces up to this size are enumerated when random draws keep hitting duplicates."""

_DRAW_ATTEMPTS = 64
"""Random draws tried for one slot before falling back to enumeration."""

_POOL_SIZE = 4096
"""Random points drawn at once when single draws keep missing a constrained region."""


def check_objectives(objectives: Mapping[str, str]) -> dict[str, Direction]:
    """Validate objective directions. Returns them as a plain dict."""
    if not objectives:
        raise InvalidInput("objectives", "no objective given", "e.g. objectives: {yield: max}")
    out: dict[str, Direction] = {}
    for name, direction in objectives.items():
        if direction not in ("max", "min"):
            raise InvalidInput(
                f"objectives.{name}", f"unknown direction {direction!r}", "max or min"
            )
        out[name] = "max" if direction == "max" else "min"
    return out


def check_count(name: str, value: object, minimum: int = 0, hint: str = "") -> int:
    """Validate a whole number of at least ``minimum`` (a bool is not one); returns it.

    Raises:
        InvalidInput: on ``name``, with ``hint`` as the fix.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        wanted = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise InvalidInput(name, f"must be {wanted}, got {value!r}", hint)
    return value


def check_seed(seed: object) -> int:
    """Validate a seed: a non-negative whole number."""
    return check_count("seed", seed, 0, "e.g. seed: 0")


class BasePlanner:
    """Validation, observations, duplicate avoidance and state shared by built-in planners.

    Subclasses implement :meth:`_propose` and may extend :meth:`state_dict`.

    Args:
        space: The search space.
        objectives: Objective names and directions (``"max"`` or ``"min"``).
        seed: Seed of every random choice the planner makes.
    """

    kind = "base"

    requires_metrics = False
    """Whether a successful observation must report every objective and constrained metric
    (planners that model them); a missing one is an error, a non-finite one a failure."""

    def __init__(
        self,
        space: Space,
        objectives: Mapping[str, str],
        *,
        seed: int = 0,
        outcome_constraints: Sequence[str] = (),
        reference_point: Mapping[str, float] | None = None,
        fidelity: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(space, Space):
            raise InvalidInput("space", "not a Space", "build one with Space({...})")
        self.space = space
        self.objectives = check_objectives(objectives)
        self.seed = check_seed(seed)
        self.outcome_constraints = outcome_constraint_list(outcome_constraints)
        self.reference_point = reference_point_of(reference_point, self.objectives)
        self.fidelity = fidelity_of(fidelity, space)
        self.n_asked = 0
        self.encoder = Encoder(space)
        self.region = FeasibleRegion(self.encoder)
        self.observations: list[Observation] = []
        self._seen: set[PointKey] = set()

    # -- Planner protocol ------------------------------------------------------------------

    def ask(self, n: int, pending: Sequence[Params] = ()) -> list[Params]:
        """Propose ``n`` distinct valid points, none equal to a pending or observed point.

        Duplicates appear only when a finite space has no unseen point left.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidInput("n", f"must be a non-negative integer, got {n!r}", "e.g. n=1")
        checked = [self.space.validate(p, where=f"pending[{i}]") for i, p in enumerate(pending)]
        if n == 0:
            return []
        rng = np.random.default_rng([self.seed, self.n_asked])
        points = self._propose(n, checked, rng)
        self.n_asked += n
        return list(points)

    def tell(self, observations: Sequence[Observation]) -> None:
        """Record finished trials; their points are never proposed again."""
        start = len(self.observations)
        checked = [self._check_observation(start + i, o) for i, o in enumerate(observations)]
        for obs in checked:
            self.observations.append(obs)
            self._seen.add(point_key(self.space, obs.params))
        self._after_tell(checked)

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "seed", "n_asked"}`` plus what the subclass adds."""
        return {"kind": self.kind, "seed": self.seed, "n_asked": self.n_asked}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (call before telling observations again).

        Keys that are absent keep their current values, so ``{}`` leaves a fresh planner as
        it is.
        """
        self.seed = check_seed(state.get("seed", self.seed))
        n_asked = state.get("n_asked", self.n_asked)
        if not isinstance(n_asked, int) or isinstance(n_asked, bool) or n_asked < 0:
            raise InvalidInput("state.n_asked", f"must be a non-negative integer, got {n_asked!r}")
        self.n_asked = n_asked

    def surrogate(self) -> Surrogate | None:
        """None: this planner keeps no model."""
        return None

    # -- for subclasses --------------------------------------------------------------------

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        raise NotImplementedError

    def _after_tell(self, observations: list[Observation]) -> None:
        """Hook run after observations are recorded."""

    def metric_names(self) -> list[str]:
        """The objectives, then the other metrics that outcome constraints bound."""
        names = list(self.objectives)
        for constraint in self.outcome_constraints:
            if constraint.metric not in names:
                names.append(constraint.metric)
        return names

    def _check_observation(self, index: int, obs: Observation) -> Observation:
        if not isinstance(obs, Observation):
            raise InvalidInput(f"observations[{index}]", "not an Observation")
        params = self.space.validate(obs.params, where=f"observations[{index}].params")
        checked = Observation(params=params, values=dict(obs.values), failed=bool(obs.failed))
        if checked.failed or not self.requires_metrics:
            return checked
        for name in self.metric_names():
            if name not in checked.values:
                raise InvalidInput(
                    f"observations[{index}].values.{name}",
                    "missing from a successful observation",
                    "report every objective and constrained metric, or mark it failed",
                )
            if finite_or_none(checked.values, name) is None:
                return Observation(params=checked.params, values=checked.values, failed=True)
        return checked

    def _excluded(self, pending: Sequence[Params]) -> set[PointKey]:
        """Keys of observed (successful or failed) and pending points."""
        return self._seen | {point_key(self.space, p) for p in pending}

    def _fill_randomly(
        self,
        draw: Callable[[], dict[str, ParamValue]],
        excluded: set[PointKey],
        rng: np.random.Generator,
    ) -> dict[str, ParamValue]:
        """A feasible point from ``draw()`` outside ``excluded``; enumerates small finite spaces.

        Drawn points are first moved onto the space's linear constraints. Adds the returned
        point to ``excluded``. Falls back to a duplicate only when the space is finite and
        every feasible point is excluded.

        Raises:
            PlannerError: no point satisfying the space's constraints could be found.
        """
        point = self._feasible(draw())
        for _ in range(_DRAW_ATTEMPTS):
            if point is not None and point_key(self.space, point) not in excluded:
                break
            point = self._feasible(draw())
        else:
            point = self._unseen_point(excluded, rng) or point
        if point is None:
            raise PlannerError(self._infeasible_message())
        excluded.add(point_key(self.space, point))
        return point

    def _uniform_draw(self, rng: np.random.Generator) -> Callable[[], dict[str, ParamValue]]:
        """A function drawing one uniform random point (``_fill_randomly`` makes it feasible)."""

        def draw() -> dict[str, ParamValue]:
            return uniform_points(self.encoder, rng.random((1, self.encoder.n_params)))[0]

        return draw

    def _feasible(self, point: dict[str, ParamValue]) -> dict[str, ParamValue] | None:
        """``point`` moved onto the linear constraints, or None if it breaks a constraint."""
        if not self.region.constrained:
            return point
        x = self.encoder.snap(self.region.repair(self.encoder.encode([point])))
        if not self.region.mask(x)[0]:
            return None
        return self.encoder.decode(x)[0]

    def _infeasible_message(self) -> str:
        texts = "; ".join(c.text for c in self.space.constraints)
        return (
            f"no unseen point of the space satisfying the constraints ({texts}) was found "
            "in tens of thousands of random draws; check that they can all hold at once "
            "within the parameters' bounds"
        )

    def _unseen_point(
        self, excluded: set[PointKey], rng: np.random.Generator
    ) -> dict[str, ParamValue] | None:
        size = self.encoder.size()
        if size is None or size > _MAX_ENUMERATED:
            pool = self.region.feasible_pool(rng, _POOL_SIZE)
        else:
            pool = self.encoder.enumerate()
            pool = pool[self.region.mask(pool)]
        points = self.encoder.decode(pool) if pool.shape[0] else []
        free = [p for p in points if point_key(self.space, p) not in excluded]
        if not free:
            return None
        return free[int(rng.integers(len(free)))]


def finite_or_none(values: Mapping[str, float], name: str) -> float | None:
    """The value of objective ``name`` if present and finite, else None."""
    value = values.get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def uniform_points(encoder: Encoder, u: FloatArray) -> list[dict[str, ParamValue]]:
    """Decode uniform rows (shape ``(m, n_params)``) to valid points."""
    return encoder.decode(encoder.from_uniform(u))


def outcome_constraint_list(texts: object) -> list[OutcomeConstraint]:
    """Parse the ``outcome_constraints`` option (a list of ``"metric >= bound"`` texts)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInput(
            "outcome_constraints", "must be a list of expressions", 'e.g. ["purity >= 0.95"]'
        )
    return [
        parse_outcome_constraint(text, f"outcome_constraints[{i}]") for i, text in enumerate(texts)
    ]


def reference_point_of(
    value: Mapping[str, float] | None, objectives: Mapping[str, Direction]
) -> dict[str, float] | None:
    """Validate the ``reference_point`` option: a number per objective, several objectives."""
    if value is None:
        return None
    fix = "give a number for every objective, e.g. {yield: 0.2, cost: 50}"
    if len(objectives) < 2:
        raise InvalidInput("reference_point", "needs two or more objectives", "remove it")
    if not isinstance(value, Mapping) or set(value) != set(objectives):
        raise InvalidInput("reference_point", f"must name exactly {sorted(objectives)}", fix)
    out = {}
    for name in objectives:
        number = finite_or_none(value, name)
        if number is None:
            raise InvalidInput(f"reference_point.{name}", f"{value[name]!r} is not a number", fix)
        out[name] = number
    return out
