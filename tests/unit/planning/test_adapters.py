"""What the ax and optuna adapters do beyond the planner contract (which covers the rest)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.encoding import point_key
from genesis_platform.planning.protocols import Observation, Params
from genesis_platform.planning.registry import make_planner
from genesis_platform.planning.space import Choice, Int, Real, Space

needs_ax = pytest.mark.skipif(
    importlib.util.find_spec("ax") is None,
    reason="needs Ax: pip install 'genesis-platform[planners-ax]'",
)
needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None,
    reason="needs Optuna: pip install 'genesis-platform[planners-optuna]'",
)

PLANE = Space({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})


def bowl(p: Params) -> float:
    return -((float(p["x"]) - 0.3) ** 2) - (float(p["y"]) - 0.6) ** 2


def two_goals(p: Params) -> dict[str, float]:
    x, y = float(p["x"]), float(p["y"])
    return {"a": x + y, "b": (x - 0.2) ** 2 + (y - 0.9) ** 2}


def run(planner: Any, batches: tuple[int, ...], measure: Callable[[Params], Any]) -> list[Params]:
    """Ask and tell ``batches``; returns every point asked."""
    seen: list[Params] = []
    for n in batches:
        points = planner.ask(n)
        values = [measure(p) for p in points]
        planner.tell(
            [
                Observation(p, v if isinstance(v, dict) else {"y": v})
                for p, v in zip(points, values, strict=True)
            ]
        )
        seen += points
    return seen


def statuses(planner: Any) -> Counter[str]:
    return Counter(planner.client.summarize()["trial_status"])


# -- both -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "module", "library", "extra"),
    [("ax", "ax", "Ax", "planners-ax"), ("optuna", "optuna", "Optuna", "planners-optuna")],
)
def test_a_missing_library_says_which_extra_installs_it(
    monkeypatch: pytest.MonkeyPatch, kind: str, module: str, library: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    adapter = f"genesis_platform.planning.adapters.{kind}"
    monkeypatch.delitem(sys.modules, adapter, raising=False)
    importlib.import_module(adapter)  # the adapter module itself imports without it
    with pytest.raises(InvalidInput) as info:
        make_planner(kind, PLANE, {"y": "max"})
    assert info.value.field == "planner"
    assert info.value.problem == (
        f"the {kind} planner needs {library}: pip install 'genesis-platform[{extra}]'"
    )


@pytest.mark.parametrize(
    ("kind", "option", "value"),
    [
        ("ax", "initialization_budget", -1),
        ("optuna", "n_startup_trials", "ten"),
        ("optuna", "reference_point", {"y": 1.0}),
    ],
)
def test_bad_options_name_the_option(kind: str, option: str, value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner(kind, PLANE, {"y": "max"}, options={option: value})
    assert info.value.field == f"planner.options.{option}"


# -- ax -------------------------------------------------------------------------------------


@pytest.fixture
def ax_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """The keyword arguments the planner configures Ax with, by ``Client`` method."""
    ax = pytest.importorskip("ax", reason="needs Ax: pip install 'genesis-platform[planners-ax]'")
    calls: dict[str, dict[str, Any]] = {}
    for name in ("configure_experiment", "configure_optimization"):
        original = getattr(ax.Client, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original, **kw: Any):
            calls[_name] = kw
            return _original(self, *args, **kw)

        monkeypatch.setattr(ax.Client, name, spy)
    return calls


@needs_ax
def test_ax_gets_the_outcome_constraints(ax_calls: dict[str, dict[str, Any]]) -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    # "yield" is a Python keyword, which Ax's parser would refuse as a metric name.
    planner = AxPlanner(PLANE, {"yield": "max"}, outcome_constraints=["purity >= 0.95"])
    run(planner, (3,), lambda p: {"yield": bowl(p), "purity": float(p["x"])})
    assert ax_calls["configure_optimization"] == {
        "objective": "m0",
        "outcome_constraints": ["m1 >= 0.95"],
    }
    assert statuses(planner) == {"COMPLETED": 3}


def test_ax_refuses_to_bound_an_objective() -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    with pytest.raises(InvalidInput) as info:
        AxPlanner(PLANE, {"y": "max"}, outcome_constraints=["y >= 0.5"])
    assert info.value.field == "outcome_constraints"
    assert "Ax cannot bound an objective" in info.value.problem


@needs_ax
@pytest.mark.slow
def test_ax_several_objectives_with_a_reference_point(
    ax_calls: dict[str, dict[str, Any]],
) -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    planner = AxPlanner(
        PLANE, {"a": "max", "b": "min"}, seed=2, reference_point={"a": 0.5, "b": 0.8}
    )
    seen = run(planner, (5, 2, 1), two_goals)  # the last two batches are Ax's BO (qNEHVI)
    assert ax_calls["configure_optimization"] == {
        "objective": "m0, -m1",
        "outcome_constraints": ["m0 >= 0.5", "m1 <= 0.8"],
    }
    assert len({point_key(PLANE, p) for p in seen}) == 8
    assert planner.n_fallback == 0
    assert statuses(planner) == {"COMPLETED": 8}


@needs_ax
@pytest.mark.slow
def test_ax_keeps_a_linear_constraint(ax_calls: dict[str, dict[str, Any]]) -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    space = Space(dict(PLANE), constraints=["x + 2 * y <= 1.2"])
    planner = AxPlanner(space, {"y": "max"}, seed=1)
    seen = run(planner, (5, 1), bowl)  # Sobol' points, then one BO point
    assert ax_calls["configure_experiment"]["parameter_constraints"] == [
        "1.0 * p0 + 2.0 * p1 <= 1.2"
    ]
    assert all(space.is_feasible(p) for p in seen)
    assert planner.n_fallback == 0


@pytest.mark.parametrize(
    ("constraint", "problem"),
    [
        ("x + y == 1", "Ax does not support equalities"),
        ("x * y <= 0.2", "Ax supports linear ones only"),
        ("c + x <= 5", "Ax cannot constrain log-scaled 'c'"),
    ],
)
def test_ax_refuses_constraints_it_cannot_take(constraint: str, problem: str) -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    space = Space({**PLANE, "c": Real(0.1, 10.0, log=True)}, constraints=[constraint])
    with pytest.raises(InvalidInput) as info:
        AxPlanner(space, {"y": "max"})
    assert info.value.field == "constraints"
    assert info.value.problem == f"{constraint!r}: {problem}"
    assert "linear inequalities" in info.value.fix


@needs_ax
def test_ax_choice_and_integer_values_keep_their_types() -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    space = Space({"n": Choice([1, 2.5, "1"]), "one": Choice(["only"]), "k": Int(1, 9, log=True)})
    planner = AxPlanner(space, {"y": "max"})
    points = planner.ask(5)
    for p in points:
        assert space.validate(p) == p
        assert any(p["n"] == v and type(p["n"]) is type(v) for v in (1, 2.5, "1"))
        assert p["one"] == "only" and type(p["k"]) is int
    planner.tell([Observation(p, {"y": float(p["k"])}) for p in points])
    assert statuses(planner) == {"COMPLETED": 5}


@needs_ax
def test_ax_fills_a_batch_beyond_its_initialization() -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    planner = AxPlanner(PLANE, {"y": "max"})
    first = planner.ask(6)  # Ax's center and Sobol' points
    assert planner.n_fallback == 0
    more = planner.ask(3, first)  # Ax now waits for data on its initialization trials
    assert planner.n_fallback == 3
    assert len({point_key(PLANE, p) for p in [*first, *more]}) == 9
    assert statuses(planner) == {"RUNNING": 9}


@needs_ax
def test_ax_follows_what_it_is_told_and_what_is_pending() -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    planner = AxPlanner(PLANE, {"y": "max"})
    told = [{"x": 0.1, "y": 0.2}, {"x": 0.5, "y": 0.5}, {"x": 0.9, "y": 0.1}]
    planner.tell([Observation(p, {"y": bowl(p)}) for p in told[:2]])  # never asked
    planner.tell([Observation(told[2], {}, failed=True)])
    foreign = {"x": 0.7, "y": 0.7}  # pending, but not proposed by this planner
    points = planner.ask(2, [foreign])
    assert not {point_key(PLANE, p) for p in points} & {
        point_key(PLANE, p) for p in [*told, foreign]
    }
    assert statuses(planner) == {"COMPLETED": 2, "FAILED": 1, "RUNNING": 3}

    later = planner.ask(1, [points[0]])  # foreign and points[1] are dropped: marked failed
    assert statuses(planner) == {"COMPLETED": 2, "FAILED": 3, "RUNNING": 2}
    planner.tell([Observation(p, {"y": bowl(p)}) for p in [points[1], points[0], *later]])
    assert statuses(planner) == {"COMPLETED": 5, "FAILED": 3}


@needs_ax
@pytest.mark.slow
def test_ax_rebuilt_from_observations_proposes_as_the_original() -> None:
    from genesis_platform.planning.adapters.ax import AxPlanner

    original = AxPlanner(PLANE, {"y": "max"}, seed=4)
    told: list[Observation] = []
    for n in (4, 3, 1):  # Ax's BO from the second batch on
        points = original.ask(n)
        obs = [Observation(p, {"y": bowl(p)}) for p in points]
        original.tell(obs)
        told += obs
    pending = original.ask(2)
    state = json.loads(json.dumps(original.state_dict()))
    assert state == {"kind": "ax", "seed": 4, "n_asked": 10}

    rebuilt = AxPlanner(PLANE, {"y": "max"})
    rebuilt.load_state_dict(state)
    rebuilt.tell(told)
    assert rebuilt.ask(2, pending) == original.ask(2, pending)
    assert statuses(rebuilt) == {"COMPLETED": 8, "RUNNING": 4}


# -- optuna ---------------------------------------------------------------------------------


def test_optuna_refuses_parameter_constraints() -> None:
    from genesis_platform.planning.adapters.optuna import OptunaPlanner

    space = Space(dict(PLANE), constraints=["x + y <= 1"])
    with pytest.raises(InvalidInput) as info:
        OptunaPlanner(space, {"y": "max"})
    assert info.value.field == "constraints"
    assert "cannot keep parameter constraints" in info.value.problem


@needs_optuna
def test_optuna_outcome_constraints_become_trial_constraints() -> None:
    from genesis_platform.planning.adapters.optuna import OptunaPlanner

    planner = OptunaPlanner(PLANE, {"yield": "max"}, outcome_constraints=["purity >= 0.95"])
    p, q = planner.ask(2)
    planner.tell(
        [
            Observation(p, {"yield": 1.0, "purity": 0.9}),
            Observation(q, {"yield": 0.5, "purity": 0.99}),
            Observation({"x": 0.5, "y": 0.5}, {"yield": 0.1, "purity": 1.0}),  # never asked
        ]
    )
    assert planner.study is not None
    trials = planner.study.trials
    assert [t.values for t in trials] == [[1.0], [0.5], [0.1]]
    found = [t.constraints["purity >= 0.95"] for t in trials]
    assert found == pytest.approx([0.05, -0.04, -0.05])


@needs_optuna
def test_optuna_several_objectives_with_a_reference_point() -> None:
    import optuna

    from genesis_platform.planning.adapters.optuna import OptunaPlanner

    planner = OptunaPlanner(
        PLANE, {"a": "max", "b": "min"}, seed=3, reference_point={"a": 1.0, "b": 0.5}
    )
    seen = run(planner, (6, 6, 2, 2), two_goals)  # past the 10 random start-up trials
    assert len({point_key(PLANE, p) for p in seen}) == 16
    study = planner.study
    assert study is not None
    assert study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    for trial in study.trials:
        a, b = trial.values
        assert trial.constraints == pytest.approx(
            {"reference_point.a": 1.0 - a, "reference_point.b": b - 0.5}
        )


@needs_optuna
def test_optuna_follows_what_it_is_told_and_what_is_pending() -> None:
    import optuna

    from genesis_platform.planning.adapters.optuna import OptunaPlanner

    state = optuna.trial.TrialState
    original = OptunaPlanner(PLANE, {"y": "max"}, seed=5)
    seen = run(original, (6, 6), bowl)
    pending = original.ask(2)

    rebuilt = OptunaPlanner(PLANE, {"y": "max"})
    rebuilt.load_state_dict(original.state_dict())
    rebuilt.tell([Observation(p, {"y": bowl(p)}) for p in seen])
    points = rebuilt.ask(3, pending)
    assert points == original.ask(3, pending)
    study = rebuilt.study
    assert study is not None
    assert Counter(t.state for t in study.trials) == {state.COMPLETE: 12, state.RUNNING: 5}
    running = [t.params for t in study.trials if t.state == state.RUNNING]
    assert running == [*pending, *points]

    rebuilt.ask(1, points)  # the pending two are gone: finished as failed, marked abandoned
    abandoned = [t for t in study.trials if t.user_attrs.get("genesis_abandoned")]
    assert [t.params for t in abandoned] == pending
    assert all(t.state == state.FAIL for t in abandoned)
    rebuilt.tell([Observation(pending[0], {"y": 1.0}), Observation(points[0], {}, failed=True)])
    trials = study.trials
    assert trials[-1].params == pending[0] and trials[-1].values == [1.0]  # added anew
    assert [t.state for t in trials if t.params == points[0]] == [state.FAIL]


@needs_optuna
def test_optuna_non_finite_objective_counts_as_failed() -> None:
    import optuna

    from genesis_platform.planning.adapters.optuna import OptunaPlanner

    planner = OptunaPlanner(PLANE, {"y": "max"})
    [p] = planner.ask(1)
    planner.tell([Observation(p, {"y": math.nan})])
    assert planner.study is not None
    assert [t.state for t in planner.study.trials] == [optuna.trial.TrialState.FAIL]
    with pytest.raises(InvalidInput) as info:
        planner.tell([Observation({"x": 0.1, "y": 0.1}, {"z": 1.0})])
    assert info.value.field == "observations[1].values.y"
