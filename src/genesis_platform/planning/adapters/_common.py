"""What the adapters share: their options, the observation check and the import guard."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._base import (
    BasePlanner,
)

__all__ = ["AdapterPlanner", "import_extra"]

_OTHER_PLANNERS = "or choose a built-in planner: gp, random or sobol"


def import_extra(module: str, kind: str, library: str, extra: str) -> ModuleType:
    """Import ``module``, or explain which extra installs it.

    Raises:
        InvalidInput: ``planner`` when the library is not installed.
    """
    try:
        with warnings.catch_warnings():
            # Deprecations inside the library's own imports are not for platform users.
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidInput(
            "planner",
            f"the {kind} planner needs {library}: pip install 'genesis-platform[{extra}]'",
            f"install it, {_OTHER_PLANNERS}",
        ) from exc


class AdapterPlanner(BasePlanner):
    """Options and checks of the planners that wrap another library.

    The wrapped library keeps its own trials; this base keeps the built-ins' bookkeeping
    (observed and failed points, ``n_asked``, the seed) so that duplicates are refused the
    same way and a rebuilt adapter can replay :attr:`observations` into a new library object.

    Args:
        space: The search space.
        objectives: Objective names and directions (``"max"`` or ``"min"``).
        seed: Seed of the library and of the adapter's own random fill-ins.
        outcome_constraints: Bounds on measured values, e.g. ``["purity >= 0.95"]``.
        reference_point: With several objectives, the worst value of each objective that
            still counts, e.g. ``{"yield": 0.5, "cost": 20.0}``.

    Raises:
        InvalidInput: on the option's name.
    """

    requires_metrics = True
    n_fallback = 0
    """Points the adapter drew itself because the library had no new one (not persisted)."""
