"""Edge cases of the gp planner found in review: each once crashed or misled."""

from __future__ import annotations

import numpy as np

from genesis_platform.planning.gp import GaussianProcessPlanner, GaussianProcessSurrogate
from genesis_platform.planning.protocols import Observation
from genesis_platform.planning.space import Real, Space

FAST = {"n_candidates": 256, "n_starts": 4}


def test_noisy_logei_with_a_pending_point_before_anything_is_feasible() -> None:
    space = Space({"x": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(
        space,
        {"y": "max"},
        acquisition="noisy-logei",
        outcome_constraints=["c >= 0.46"],
        **FAST,  # type: ignore[arg-type]
    )
    xs = np.linspace(0.0, 0.45, 10)
    planner.tell([Observation({"x": float(x)}, {"y": float(x), "c": float(x)}) for x in xs])
    [point] = planner.ask(1, pending=[{"x": 0.5}])
    assert 0.0 <= float(point["x"]) <= 1.0 and point["x"] != 0.5


def test_several_objectives_are_never_logged_so_any_reference_point_works() -> None:
    space = Space({"x": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(
        space,
        {"a": "max", "b": "min"},
        output_transform="log",
        reference_point={"a": 0.0, "b": 10.0},
        n_initial=4,
        **FAST,  # type: ignore[arg-type]
    )
    for _ in range(6):
        [p] = planner.ask(1)
        x = float(p["x"])
        planner.tell([Observation(p, {"a": 1.0 + x, "b": 2.0 + (1 - x) ** 2})])
    surrogate = planner.surrogate()
    assert surrogate is not None and surrogate.log is False


def test_surrogate_of_several_objectives_matches_the_planners_model() -> None:
    space = Space({"x": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(space, {"a": "max", "b": "min"}, n_initial=4, **FAST)  # type: ignore[arg-type]
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, -20.0]  # one outlier at x = 1
    planner.tell(
        [Observation({"x": x}, {"a": v, "b": 1.0}) for x, v in zip(xs, values, strict=True)]
    )
    surrogate = planner.surrogate()
    assert surrogate is not None
    rebuilt = GaussianProcessSurrogate.from_json(surrogate.to_json())
    [mean], _ = rebuilt.predict([{"x": 1.0}])
    assert mean < -10.0  # not winsorized: the model sees the outlier as the planner does
