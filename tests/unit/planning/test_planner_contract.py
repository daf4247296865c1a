"""The contract every planner keeps; a new planner adds itself to ``KINDS``, not a test file."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.encoding import point_key
from genesis_platform.planning.protocols import Observation, Params, Planner, Surrogate
from genesis_platform.planning.registry import builtin_planners, make_planner
from genesis_platform.planning.space import Choice, Int, Real, Space

from .conftest import mixed_objective

KINDS = builtin_planners()
# Small candidate sets keep the gp fast in tests; every option is a real one.
# A long initialization keeps Ax in its quick Sobol' phase here; test_adapters.py covers its
# Bayesian optimization.
OPTIONS: dict[str, dict[str, object]] = {
    "gp": {"n_candidates": 256},
    "ax": {"initialization_budget": 20},
}
# Planners backed by an optional library: the module to import, and the extra installing it.
EXTRAS = {"ax": ("ax", "planners-ax"), "optuna": ("optuna", "planners-optuna")}

MakePlanner = Callable[..., Planner]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest) -> MakePlanner:
    kind: str = request.param
    if kind in EXTRAS:
        module, extra = EXTRAS[kind]
        pytest.importorskip(
            module, reason=f"the {kind} planner needs pip install 'genesis-platform[{extra}]'"
        )

    def build(space: Space, seed: int = 0) -> Planner:
        return make_planner(kind, space, {"y": "max"}, seed=seed, options=OPTIONS.get(kind))

    return build


@pytest.fixture
def tiny_space() -> Space:
    """Six points in all."""
    return Space({"k": Int(0, 2), "c": Choice(["a", "b"])})


def _observe(points: list[Params], fail_every: int = 0) -> list[Observation]:
    return [
        Observation(p, {}, failed=True)
        if fail_every and i % fail_every == fail_every - 1
        else Observation(p, {"y": mixed_objective(p)})
        for i, p in enumerate(points)
    ]


def _assert_valid(space: Space, points: list[Params]) -> None:
    for p in points:
        assert space.validate(p) == dict(p)
        for name, spec in space.items():
            value = p[name]
            if isinstance(spec, Int):
                assert type(value) is int
            elif isinstance(spec, Real):
                assert type(value) is float
            else:
                assert isinstance(spec, Choice)
                assert any(value == v and type(value) is type(v) for v in spec.values)


def _keys(space: Space, points: list[Params]) -> set[tuple[object, ...]]:
    return {point_key(space, p) for p in points}


def test_satisfies_the_protocol(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    assert isinstance(planner, Planner)
    surrogate = planner.surrogate()
    assert surrogate is None or isinstance(surrogate, Surrogate)


def test_points_are_valid_and_distinct(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    points = planner.ask(6)
    assert len(points) == 6
    _assert_valid(mixed_space, points)
    assert len(_keys(mixed_space, points)) == 6


def test_points_stay_valid_after_observations(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    seen: list[Params] = []
    for n in (6, 3, 1, 2):
        points = planner.ask(n)
        _assert_valid(mixed_space, points)
        assert not _keys(mixed_space, points) & _keys(mixed_space, seen)
        seen += points
        planner.tell(_observe(points))


def test_pending_points_are_respected(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    done = planner.ask(10)
    planner.tell(_observe(done))
    pending = planner.ask(3)
    points = planner.ask(4, pending)
    assert len(_keys(mixed_space, points)) == 4
    assert not _keys(mixed_space, points) & _keys(mixed_space, [*pending, *done])


def test_pending_in_a_finite_space(make: MakePlanner, tiny_space: Space) -> None:
    planner = make(tiny_space)
    pending = [{"k": 0, "c": "a"}, {"k": 1, "c": "b"}, {"k": 2, "c": "a"}]
    points = planner.ask(3, pending)
    assert _keys(tiny_space, points) == {(0, "b"), (1, "a"), (2, "b")}


def test_state_dict_and_tell_rebuild_the_same_planner(
    make: MakePlanner, mixed_space: Space
) -> None:
    original = make(mixed_space, seed=7)
    told: list[Observation] = []
    for n in (4, 4, 2, 1):
        obs = _observe(original.ask(n), fail_every=5)
        original.tell(obs)
        told += obs
    pending = original.ask(2)
    state = json.loads(json.dumps(original.state_dict()))
    assert state["seed"] == 7
    assert state["n_asked"] == 13

    original.surrogate()  # refitting a surrogate for the model hub must not change the plan

    rebuilt = make(mixed_space, seed=0)
    rebuilt.load_state_dict(state)
    rebuilt.tell(told)
    assert rebuilt.ask(3, pending) == original.ask(3, pending)
    assert rebuilt.state_dict() == original.state_dict()


def test_empty_state_leaves_a_fresh_planner(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space, seed=5)
    planner.load_state_dict({})
    assert planner.ask(2) == make(mixed_space, seed=5).ask(2)
    assert planner.state_dict()["seed"] == 5


def test_same_seed_same_proposals(make: MakePlanner, mixed_space: Space) -> None:
    first, second = make(mixed_space, seed=3), make(mixed_space, seed=3)
    assert first.ask(3) == second.ask(3)
    assert first.ask(3) != make(mixed_space, seed=4).ask(3)


def test_failed_observations_are_accepted(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    points = planner.ask(8)
    planner.tell([Observation(p, {}, failed=True) for p in points])
    more = planner.ask(3)
    _assert_valid(mixed_space, more)
    assert not _keys(mixed_space, more) & _keys(mixed_space, points)


def test_failed_points_are_not_proposed_again(make: MakePlanner, tiny_space: Space) -> None:
    planner = make(tiny_space)
    everything = [{"k": k, "c": c} for k in range(3) for c in "ab"]
    planner.tell([Observation(p, {"y": float(p["k"])}) for p in everything[:3]])
    planner.tell([Observation(p, {}, failed=True) for p in everything[3:5]])
    assert planner.ask(1) == [everything[5]]


def test_exhausted_finite_space_still_answers(make: MakePlanner, tiny_space: Space) -> None:
    planner = make(tiny_space)
    first = planner.ask(6)
    assert len(_keys(tiny_space, first)) == 6
    planner.tell([Observation(p, {"y": 1.0}) for p in first])
    again = planner.ask(2)
    _assert_valid(tiny_space, again)


def test_ask_zero_and_bad_n(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    assert planner.ask(0) == []
    with pytest.raises(InvalidInput) as info:
        planner.ask(-1)
    assert info.value.field == "n"


def test_bad_pending_and_observations_name_the_field(make: MakePlanner, mixed_space: Space) -> None:
    planner = make(mixed_space)
    with pytest.raises(InvalidInput) as info:
        planner.ask(1, [{"temperature": 30.0}])
    assert info.value.field == "pending[0].concentration"
    with pytest.raises(InvalidInput) as info:
        planner.tell([Observation({"temperature": 1.0}, {"y": 1.0})])
    assert info.value.field.startswith("observations[0].params.")
