"""Uniform random search: the reference planner and the baseline every other one must beat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genesis_platform.planning._base import (
    BasePlanner,
    uniform_points,
)
from genesis_platform.planning.protocols import ParamValue
from genesis_platform.planning.space import Space

__all__ = ["RandomPlanner"]


class RandomPlanner(BasePlanner):
    """Proposes points drawn uniformly from the space (log-uniform for ``log=True``).

    Points already observed, failed or pending are skipped; so are repeats within a batch.

    Args:
        space: The search space.
        objectives: Objective names and directions; any number of objectives.
        seed: Seed; the draws of one ``ask`` come from ``default_rng([seed, n_asked])``.
        outcome_constraints: Accepted and validated so that a campaign can switch
            planners; not used by this search.
        reference_point: The same, for several objectives.
        fidelity: The same, for several fidelities (drawn like any choice parameter).
    """

    kind = "random"

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
        super().__init__(
            space,
            objectives,
            seed=seed,
            outcome_constraints=outcome_constraints,
            reference_point=reference_point,
            fidelity=fidelity,
        )

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        excluded = self._excluded(pending)

        def draw() -> dict[str, ParamValue]:
            return uniform_points(self.encoder, rng.random((1, self.encoder.n_params)))[0]

        return [self._fill_randomly(draw, excluded, rng) for _ in range(n)]
