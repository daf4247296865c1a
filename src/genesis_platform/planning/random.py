"""Uniform random search: the reference planner and the baseline every other one must beat."""

from __future__ import annotations

import numpy as np

from genesis_platform.planning._base import BasePlanner
from genesis_platform.planning.protocols import ParamValue

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

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        excluded = self._excluded(pending)
        draw = self._uniform_draw(rng)
        return [self._fill_randomly(draw, excluded, rng) for _ in range(n)]
