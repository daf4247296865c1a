"""What the adapters share: their options, the observation check and the import guard."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._base import (
    BasePlanner,
    uniform_points,
)
from genesis_platform.planning.protocols import ParamValue
from genesis_platform.planning.space import Space

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

    def __init__(
        self,
        space: Space,
        objectives: Mapping[str, str],
        *,
        seed: int = 0,
        outcome_constraints: Sequence[str] = (),
        reference_point: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            outcome_constraints=outcome_constraints,
            reference_point=reference_point,
        )
        self.n_fallback = 0
        """Points the adapter drew itself because the library had no new one (not persisted)."""

    def _draw_uniform(self, rng: np.random.Generator) -> dict[str, ParamValue]:
        """A uniform random point (``_fill_randomly`` moves it onto the constraints)."""
        return uniform_points(self.encoder, rng.random((1, self.encoder.n_params)))[0]
