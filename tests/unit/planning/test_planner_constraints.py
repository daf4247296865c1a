"""Every planner's proposals satisfy the space's constraints; the gp's outcome constraints."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from genesis_platform.errors import InvalidInput, PlannerError
from genesis_platform.planning.encoding import point_key
from genesis_platform.planning.gp import GaussianProcessPlanner
from genesis_platform.planning.protocols import Observation, Params, Planner
from genesis_platform.planning.random import RandomPlanner
from genesis_platform.planning.registry import builtin_planners, make_planner
from genesis_platform.planning.space import Choice, Int, Real, Space

KINDS = builtin_planners()
# Small candidate sets and few starts keep the gp fast; feasibility does not depend on them.
OPTIONS: dict[str, dict[str, object]] = {"gp": {"n_candidates": 256, "n_starts": 4}}
# Planners backed by an optional library: the module to import, and the extra installing it.
EXTRAS = {"ax": ("ax", "planners-ax"), "optuna": ("optuna", "planners-optuna")}
FAST: dict[str, int] = {"n_candidates": 256, "n_starts": 4}

MakePlanner = Callable[..., Planner]

MIXTURE_TEXT = "a + b + c == 1"
LINEAR_TEXT = "a <= 2 * b"
NONLINEAR_TEXT = "steps * temperature <= 200"


@pytest.fixture
def constrained_space() -> Space:
    """A three-part mixture, a temperature, an integer and a choice, with three constraints."""
    return Space(
        {
            "a": Real(0.0, 1.0),
            "b": Real(0.0, 1.0),
            "c": Real(0.0, 1.0),
            "temperature": Real(20.0, 80.0),
            "steps": Int(1, 5),
            "solvent": Choice(["EC", "DMC", "PC"]),
        },
        constraints=[MIXTURE_TEXT, LINEAR_TEXT, NONLINEAR_TEXT],
    )


def _objective(p: Params) -> float:
    a, t, k = float(p["a"]), float(p["temperature"]), int(p["steps"])
    bonus = {"EC": 0.0, "DMC": 0.3, "PC": -0.2}[str(p["solvent"])]
    return -((a - 0.6) ** 2) - ((t - 45.0) / 30.0) ** 2 - 0.05 * (k - 4) ** 2 + bonus


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest) -> MakePlanner:
    kind: str = request.param
    if kind in EXTRAS:
        module, extra = EXTRAS[kind]
        pytest.importorskip(
            module, reason=f"the {kind} planner needs pip install 'genesis-platform[{extra}]'"
        )

    def build(space: Space, seed: int = 0) -> Planner:
        try:
            return make_planner(kind, space, {"y": "max"}, seed=seed, options=OPTIONS.get(kind))
        except InvalidInput as exc:
            if not exc.field.startswith("constraints"):
                raise
            # A planner may refuse constraints it cannot honour, but only on that field.
            assert space.constraints, "refused constraints on a space without any"
            pytest.skip(f"the {kind} planner refuses these constraints: {exc}")

    return build


def _check_mixture_point(space: Space, p: Params) -> None:
    assert space.validate(p) == dict(p)
    assert space.is_feasible(p), f"infeasible proposal {p}"
    a, b, c = float(p["a"]), float(p["b"]), float(p["c"])
    assert abs(a + b + c - 1.0) <= 1e-6 * 3.0
    assert a <= 2.0 * b + 1e-9
    assert int(p["steps"]) * float(p["temperature"]) <= 200.0 + 1e-6
    assert type(p["steps"]) is int


def test_every_proposal_satisfies_the_constraints(
    make: MakePlanner, constrained_space: Space
) -> None:
    planner = make(constrained_space, seed=3)
    seen: set[tuple[object, ...]] = set()
    pending: list[Params] = []
    told = 0
    for round_ in range(12):
        n = 3 if round_ % 2 == 0 else 1
        points = planner.ask(n, pending)
        assert len(points) == n
        keys = {point_key(constrained_space, p) for p in points}
        assert len(keys) == n and not keys & seen
        for p in points:
            _check_mixture_point(constrained_space, p)
        seen |= keys
        # Tell what ran before, keep the new batch pending while the next one is planned;
        # every seventh trial fails.
        observations = []
        for p in pending:
            told += 1
            failed = told % 7 == 0
            observations.append(Observation(p, {} if failed else {"y": _objective(p)}, failed))
        planner.tell(observations)
        pending = points
    assert len(seen) == 24


def test_every_proposal_of_a_large_batch_satisfies_the_constraints(
    make: MakePlanner, constrained_space: Space
) -> None:
    planner = make(constrained_space, seed=1)
    first = planner.ask(8)
    planner.tell([Observation(p, {"y": _objective(p)}) for p in first])
    batch = planner.ask(8, first[:2])
    for p in [*first, *batch]:
        _check_mixture_point(constrained_space, p)
    keys = {point_key(constrained_space, p) for p in batch}
    assert len(keys) == 8
    assert not keys & {point_key(constrained_space, p) for p in first}


def test_observations_outside_the_constraints_are_accepted(
    make: MakePlanner, constrained_space: Space
) -> None:
    """Constraints bind proposals only: an infeasible observed point is still data."""
    planner = make(constrained_space)
    outside = {
        "a": 0.9,
        "b": 0.05,
        "c": 0.5,
        "temperature": 70.0,
        "steps": 5,
        "solvent": "PC",
    }
    assert not constrained_space.is_feasible(outside)
    planner.tell([Observation(outside, {"y": _objective(outside)})])
    for p in planner.ask(2):
        _check_mixture_point(constrained_space, p)


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"a": Real(0.0, 1.0), "b": Real(0.0, 1.0), "s": Choice(["p", "q"])}, "a + b >= 3"),
        ({"i": Int(0, 10), "j": Int(0, 10), "s": Choice(["p", "q"])}, "i * j >= 101"),
    ],
    ids=["continuous", "finite"],
)
def test_infeasible_constraints_give_a_planner_error(
    make: MakePlanner, params: dict[str, Real | Int | Choice], text: str
) -> None:
    space = Space(params, constraints=["a + b <= 5" if "a" in params else "i + j <= 30", text])
    planner = make(space)
    with pytest.raises(PlannerError) as info:
        planner.ask(1)
    message = str(info.value)
    assert "constraints" in message
    if getattr(planner, "kind", None) in ("gp", "random", "sobol"):
        assert text in message  # the built-ins name the constraints they could not meet


# -- outcome constraints of the gp -----------------------------------------------------------

CIRCLE = Space({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
TARGET = np.array([0.9, 0.6])
RADIUS2 = 0.5


def _circle(p: Params) -> dict[str, float]:
    """Distance to TARGET (minimized) and the squared norm (constrained to <= RADIUS2)."""
    x, y = float(p["x"]), float(p["y"])
    return {"f": (x - TARGET[0]) ** 2 + (y - TARGET[1]) ** 2, "g": x * x + y * y}


# The unconstrained minimum (TARGET, f = 0) has g = 1.17 > 0.5; the constrained one is where
# the segment to TARGET leaves the disc: f* = (|TARGET| - sqrt(RADIUS2))**2.
CONSTRAINED_MIN = (float(np.linalg.norm(TARGET)) - math.sqrt(RADIUS2)) ** 2


def _constrained_run(planner: Planner, budget: int) -> tuple[float, list[dict[str, float]]]:
    best = math.inf
    measured = []
    for _ in range(budget):
        [p] = planner.ask(1)
        values = _circle(p)
        measured.append(values)
        if values["g"] <= RADIUS2:
            best = min(best, values["f"])
        planner.tell([Observation(p, values)])
    return best, measured


def test_gp_outcome_constraint_finds_the_constrained_optimum() -> None:
    seeds = range(3)
    gp_regret, random_regret, late_ok = [], [], []
    for seed in seeds:
        planner = GaussianProcessPlanner(
            CIRCLE, {"f": "min"}, seed=seed, outcome_constraints=[f"g <= {RADIUS2}"], **FAST
        )
        best, measured = _constrained_run(planner, 25)
        gp_regret.append(best - CONSTRAINED_MIN)
        # Late proposals hug the boundary from both sides (probability of feasibility
        # about one half there), so feasibility is judged to 1% of g's range over the space.
        late_ok.append(sum(m["g"] <= RADIUS2 + 0.02 for m in measured[-10:]))
        random_best, _ = _constrained_run(RandomPlanner(CIRCLE, {"f": "min"}, seed=seed), 25)
        random_regret.append(random_best - CONSTRAINED_MIN)
    assert min(gp_regret) >= -1e-9  # only feasible values were counted
    assert max(gp_regret) < 0.01
    assert np.median(gp_regret) < 0.1 * np.median(random_regret)
    assert min(late_ok) >= 6


def test_gp_searches_for_the_feasible_region_first() -> None:
    """Before anything feasible is observed, proposals move towards likely feasibility."""
    planner = GaussianProcessPlanner(
        CIRCLE, {"f": "min"}, seed=0, n_initial=4, outcome_constraints=["g <= 0.05"], **FAST
    )
    corner = [{"x": x, "y": y} for x, y in [(0.6, 0.7), (0.9, 0.3), (0.5, 0.95), (1.0, 1.0)]]
    planner.tell([Observation(p, _circle(p)) for p in corner])
    g = []
    for _ in range(4):
        [p] = planner.ask(1)
        g.append(_circle(p)["g"])
        planner.tell([Observation(p, _circle(p))])
    assert g[0] < min(_circle(p)["g"] for p in corner)  # already heads for lower g
    assert min(g) <= 0.05  # the disc is 4% of the square


@pytest.mark.parametrize("acquisition", ["logei", "noisy-logei", "ucb"])
def test_gp_seeks_feasibility_where_the_objective_is_good(acquisition: str) -> None:
    """With nothing feasible yet, likely-feasible proposals are ranked by the objective.

    ``g = x`` is feasible only below 0.3 and ``f`` is best at ``y = 0.9``. Every observation
    lies at ``x >= 0.5``. The probability of feasibility does not depend on ``y``, so
    maximizing it alone picks ``y`` regardless of ``f`` (0.5 here).
    """
    planner = GaussianProcessPlanner(
        CIRCLE,
        {"f": "min"},
        n_initial=6,
        acquisition=acquisition,
        outcome_constraints=["g <= 0.3"],
        **FAST,
    )
    grid = [{"x": x, "y": y} for x in (0.5, 0.75, 1.0) for y in (0.1, 0.5, 0.9)]
    planner.tell([Observation(p, {"f": (p["y"] - 0.9) ** 2, "g": p["x"]}) for p in grid])
    for p in planner.ask(2):
        assert float(p["x"]) < 0.5, p  # heads for the feasible side
        assert float(p["y"]) > 0.7, p  # where f is good


def test_large_batch_heads_for_feasibility() -> None:
    """A batch of 8 with nothing feasible yet goes mostly to the feasible side.

    Same setting as above: only ``x <= 0.3`` is feasible and every observation has
    ``x >= 0.5``. Thompson draws (``auto``'s choice for 8 points) that find no feasible
    point would rank by the objective alone, so the batch is built greedily until then.
    """
    planner = GaussianProcessPlanner(
        CIRCLE, {"f": "min"}, n_initial=6, outcome_constraints=["g <= 0.3"], **FAST
    )
    grid = [{"x": x, "y": y} for x in (0.5, 0.75, 1.0) for y in (0.1, 0.5, 0.9)]
    planner.tell([Observation(p, {"f": (p["y"] - 0.9) ** 2, "g": p["x"]}) for p in grid])
    batch = planner.ask(8)
    assert len({(p["x"], p["y"]) for p in batch}) == 8
    assert float(batch[0]["x"]) < 0.5 and float(batch[0]["y"]) > 0.7, batch
    assert sum(float(p["x"]) < 0.5 for p in batch) >= 5, batch


def test_missing_constraint_metric_names_the_field() -> None:
    planner = GaussianProcessPlanner(CIRCLE, {"f": "min"}, outcome_constraints=["g <= 0.5"])
    first = [{"x": 0.1, "y": 0.2}, {"x": 0.3, "y": 0.1}, {"x": 0.5, "y": 0.5}]
    planner.tell([Observation(p, _circle(p)) for p in first])
    planner.tell([Observation({"x": 0.9, "y": 0.9}, {}, failed=True)])  # failures need nothing
    with pytest.raises(InvalidInput) as info:
        planner.tell(
            [
                Observation({"x": 0.2, "y": 0.2}, _circle({"x": 0.2, "y": 0.2})),
                Observation({"x": 0.4, "y": 0.2}, {"f": 1.0}),
            ]
        )
    assert info.value.field == "observations[5].values.g"
    assert "missing" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_constraint_metric_is_a_failure(bad: float) -> None:
    planner = GaussianProcessPlanner(
        CIRCLE, {"f": "min"}, n_initial=2, outcome_constraints=["g <= 0.5"], **FAST
    )
    good = [{"x": 0.1, "y": 0.2}, {"x": 0.3, "y": 0.1}, {"x": 0.5, "y": 0.5}]
    planner.tell([Observation(p, _circle(p)) for p in good])
    broken = {"x": 0.05, "y": 0.05}
    planner.tell([Observation(broken, {"f": 0.0, "g": bad})])  # f = 0 would be a great value
    assert planner.observations[-1].failed
    surrogate = planner.surrogate()
    assert surrogate is not None
    data = surrogate.to_json()
    assert data["outputs"] == [_circle(p)["f"] for p in good]
    assert broken not in data["inputs"]
    state = planner.state_dict()
    rebuilt = GaussianProcessPlanner(
        CIRCLE, {"f": "min"}, n_initial=2, outcome_constraints=["g <= 0.5"], **FAST
    )
    rebuilt.load_state_dict(state)
    rebuilt.tell(planner.observations)
    proposal = planner.ask(2)
    assert proposal == rebuilt.ask(2)
    assert broken not in proposal


def test_noisy_logei_before_any_feasible_observation() -> None:
    planner = GaussianProcessPlanner(
        CIRCLE,
        {"f": "min"},
        n_initial=3,
        acquisition="noisy-logei",
        outcome_constraints=["g <= -1"],  # never met
        **FAST,
    )
    for _ in range(5):
        [p] = planner.ask(1)
        assert CIRCLE.validate(p) == p
        planner.tell([Observation(p, _circle(p))])


def test_two_bounds_on_one_metric() -> None:
    planner = GaussianProcessPlanner(
        CIRCLE, {"f": "min"}, n_initial=3, outcome_constraints=["g >= 0.2", "g <= 0.5"], **FAST
    )
    for _ in range(5):
        [p] = planner.ask(1)
        assert CIRCLE.validate(p) == p
        planner.tell([Observation(p, _circle(p))])
