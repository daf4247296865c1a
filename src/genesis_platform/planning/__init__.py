"""Planners: propose experiments from what earlier ones measured. Pure computation.

>>> from genesis_platform.planning import Real, Space, make_planner
>>> planner = make_planner("sobol", Space({"x": Real(0.0, 1.0)}), {"y": "max"}, seed=1)
>>> [point] = planner.ask(1)
>>> 0.0 <= point["x"] <= 1.0
True

The planner classes are imported on first use (SciPy's ``stats`` is slow to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genesis_platform.planning.protocols import (
    Direction,
    Observation,
    Params,
    ParamValue,
    Planner,
    Surrogate,
)
from genesis_platform.planning.registry import builtin_planners, load_surrogate, make_planner
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

if TYPE_CHECKING:
    from genesis_platform.planning.gp import GaussianProcessPlanner, GaussianProcessSurrogate
    from genesis_platform.planning.random import RandomPlanner
    from genesis_platform.planning.sobol import SobolPlanner

__all__ = [
    "Choice",
    "Direction",
    "GaussianProcessPlanner",
    "GaussianProcessSurrogate",
    "Int",
    "Observation",
    "ParamValue",
    "Parameter",
    "Params",
    "Planner",
    "RandomPlanner",
    "Real",
    "SobolPlanner",
    "Space",
    "Surrogate",
    "builtin_planners",
    "load_surrogate",
    "make_planner",
]

_LAZY = {
    "GaussianProcessPlanner": "genesis_platform.planning.gp",
    "GaussianProcessSurrogate": "genesis_platform.planning.gp",
    "RandomPlanner": "genesis_platform.planning.random",
    "SobolPlanner": "genesis_platform.planning.sobol",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
