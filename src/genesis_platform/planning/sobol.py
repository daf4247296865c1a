"""Scrambled Sobol' sequence: space-filling points, the usual initial design.

The i-th point this planner proposes is the i-th point of one scrambled Sobol' sequence
(seeded by ``seed``), with one coordinate per parameter. Points that would repeat an
observed, failed or pending point (possible only with integer or choice parameters) are
skipped, so the sequence position is kept in the state next to ``n_asked``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._base import (
    BasePlanner,
    uniform_points,
)
from genesis_platform.planning.encoding import FloatArray
from genesis_platform.planning.protocols import ParamValue

__all__ = ["SobolPlanner", "SobolSequence"]


class SobolSequence:
    """Random access to a scrambled Sobol' sequence in ``[0, 1)^d``.

    Args:
        d: Dimension.
        seed: Seed of the scrambling.
        stream: Selects an independent scrambling for the same seed.
    """

    def __init__(self, d: int, seed: int, stream: int = 0) -> None:
        from scipy.stats import qmc  # scipy.stats takes about a second to import

        generator = np.random.default_rng([seed, 0x50B01, stream])
        try:
            self._engine = qmc.Sobol(d, scramble=True, rng=generator)
        except TypeError:  # scipy < 1.15 names it seed
            self._engine = qmc.Sobol(d, scramble=True, seed=generator)
        self.d = d

    def take(self, start: int, count: int) -> FloatArray:
        """Points ``start`` to ``start + count - 1`` of the sequence. Shape ``(count, d)``."""
        if self._engine.num_generated != start:
            self._engine.reset()
            if start:  # SciPy's fast_forward(0) overflows after a reset
                self._engine.fast_forward(start)
        with warnings.catch_warnings():
            # Sobol' warns when a draw is not a power of two; single points are intended here.
            warnings.simplefilter("ignore", UserWarning)
            points: FloatArray = self._engine.random(count)
        return points


class SobolPlanner(BasePlanner):
    """Proposes successive points of a scrambled, seeded Sobol' sequence.

    Args:
        space: The search space.
        objectives: Objective names and directions; any number of objectives.
        seed: Seed of the scrambling (and of the rare fallback draw in exhausted discrete
            spaces).
        outcome_constraints: Accepted and validated so that a campaign can switch
            planners; not used by this search.
        reference_point: The same, for several objectives.
        fidelity: The same, for several fidelities (drawn like any choice parameter).
    """

    kind = "sobol"
    n_sobol = 0
    """Position in the sequence of the next point (part of the state)."""
    _sequence: SobolSequence | None = None

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "seed", "n_asked", "n_sobol"}``; ``n_sobol`` is the sequence position."""
        return {**super().state_dict(), "n_sobol": self.n_sobol}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        super().load_state_dict(state)
        self.n_sobol = _position(state, "n_sobol", self.n_sobol)
        self._sequence = None

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        excluded = self._excluded(pending)
        return [self._fill_randomly(self._next_point, excluded, rng) for _ in range(n)]

    def _next_point(self) -> dict[str, ParamValue]:
        if self._sequence is None:
            self._sequence = SobolSequence(self.encoder.n_params, self.seed)
        u = self._sequence.take(self.n_sobol, 1)
        self.n_sobol += 1
        return uniform_points(self.encoder, u)[0]


def _position(state: Mapping[str, Any], key: str, default: int) -> int:
    value = state.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"state.{key}", f"must be a non-negative integer, got {value!r}")
    return value
