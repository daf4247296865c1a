"""Several fidelities: a cheap approximation and the expensive real thing, with costs.

A multi-fidelity campaign has a choice parameter (by default ``fidelity``) whose labels are
the fidelities (``simulation``, ``robot``), each with a cost per trial. The planner models
the fidelity as an input of one Gaussian process, so cheap results inform predictions of
the expensive one as far as the data show them to be correlated, and picks the point and
fidelity that promise the most improvement *at the target fidelity* per unit of cost.

The choice follows the augmented expected improvement of Huang et al. (2006): the point
``x`` maximizes LogEI at the target fidelity; then the fidelity ``l`` maximizes::

    corr(f(x, l), f(x, target)) * (1 - sqrt(noise / (var(x, l) + noise))) * cost[target] / cost[l]

where the first factor discounts a fidelity that says little about the target, the second
one that the data already pin down at ``x``, and the third rewards cheapness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.space import Choice, Space

__all__ = ["Fidelity", "fidelity_of"]

_FIX = "e.g. fidelity: {parameter: fidelity, costs: {simulation: 1, robot: 20}, target: robot}"


@dataclass(frozen=True)
class Fidelity:
    """Which parameter is the fidelity, what each level costs, and which one counts.

    Attributes:
        parameter: Name of the choice parameter holding the fidelity.
        costs: Cost of one trial at each level (positive), in the order of the parameter's
            values.
        target: The level whose objective is optimized (by default the costliest).
    """

    parameter: str
    costs: dict[str, float]
    target: str

    def to_dict(self) -> dict[str, Any]:
        """The option's JSON form."""
        return {"parameter": self.parameter, "costs": dict(self.costs), "target": self.target}


def fidelity_of(value: Mapping[str, Any] | None, space: Space) -> Fidelity | None:
    """Validate the ``fidelity`` planner option against ``space``.

    Raises:
        InvalidInput: on ``fidelity...`` naming what is wrong.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("fidelity", "must be a mapping", _FIX)
    unknown = set(value) - {"parameter", "costs", "target"}
    if unknown:
        raise InvalidInput(f"fidelity.{sorted(unknown)[0]}", "unknown key", _FIX)
    parameter = value.get("parameter", "fidelity")
    spec = space.get(parameter) if isinstance(parameter, str) else None
    if not isinstance(spec, Choice):
        raise InvalidInput(
            "fidelity.parameter",
            f"{parameter!r} is not a choice parameter of the space",
            "add a choice parameter whose values are the fidelities",
        )
    costs = _costs(value.get("costs"), spec)
    target = value.get("target", max(costs, key=lambda level: costs[level]))
    if target not in costs:
        raise InvalidInput(
            "fidelity.target", f"{target!r} is not a fidelity", f"one of {list(costs)}"
        )
    return Fidelity(parameter, costs, str(target))


def _costs(value: Any, spec: Choice) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidInput("fidelity.costs", "must map each fidelity to its cost", _FIX)
    labels = [str(v) for v in spec.values]
    if sorted(map(str, value)) != sorted(labels):
        raise InvalidInput(
            "fidelity.costs", f"must give a cost for exactly {labels}, got {list(value)}", _FIX
        )
    out = {}
    for label in labels:
        cost = value[label]
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise InvalidInput(f"fidelity.costs.{label}", f"{cost!r} is not a number", _FIX)
        if not (math.isfinite(cost) and cost > 0):
            raise InvalidInput(f"fidelity.costs.{label}", f"must be positive, got {cost}", _FIX)
        out[label] = float(cost)
    return out
