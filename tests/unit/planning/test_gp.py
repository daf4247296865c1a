from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from genesis_platform.errors import InvalidInput, PlannerError
from genesis_platform.planning._acquisition import log_ei, log_ei_with_grad, log_h
from genesis_platform.planning._gp_model import (
    Hyperparameters,
    Posterior,
    _neg_log_posterior,
    _Prior,
    robust_cholesky,
)
from genesis_platform.planning.gp import GaussianProcessPlanner, GaussianProcessSurrogate
from genesis_platform.planning.protocols import Observation, Params, Surrogate
from genesis_platform.planning.random import RandomPlanner
from genesis_platform.planning.registry import load_surrogate
from genesis_platform.planning.space import Choice, Int, Real, Space

from .conftest import mixed_objective

FAST = {"n_candidates": 256}


def _branin(p: Params) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


BRANIN_SPACE = Space({"x1": Real(-5.0, 10.0), "x2": Real(0.0, 15.0)})
BRANIN_MIN = 0.397887


def _sine(p: Params) -> float:
    return math.sin(6.0 * float(p["x"])) + float(p["x"])


def _run(planner: GaussianProcessPlanner | RandomPlanner, f: object, budget: int) -> float:
    best = math.inf
    for _ in range(budget):
        [point] = planner.ask(1)
        value = f(point)  # type: ignore[operator]
        best = min(best, value)
        planner.tell([Observation(point, {"y": value})])
    return best


def _fitted(n: int = 12, seed: int = 0) -> GaussianProcessPlanner:
    space = Space({"x": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(space, {"y": "max"}, seed=seed, **FAST)
    xs = np.linspace(0.0, 1.0, n)
    planner.tell([Observation({"x": float(x)}, {"y": _sine({"x": x})}) for x in xs])
    return planner


def test_gp_fits_a_known_function() -> None:
    surrogate = _fitted().surrogate()
    assert surrogate is not None
    test = [{"x": float(x)} for x in np.linspace(0.03, 0.97, 15)]
    mean, std = surrogate.predict(test)
    truth = [_sine(p) for p in test]
    assert np.max(np.abs(np.array(mean) - truth)) < 0.05
    assert max(std) < 0.1
    _, std_far = GaussianProcessSurrogate.from_json(
        {**surrogate.to_json(), "inputs": [{"x": 0.0}, {"x": 0.1}], "outputs": [0.0, 0.5]}
    ).predict([{"x": 0.05}, {"x": 0.9}])
    assert std_far[1] > 5 * std_far[0]


def test_marginal_likelihood_gradient_is_exact() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((15, 3))
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2
    y = (y - y.mean()) / y.std()
    sqdiff = ((x[:, None, :] - x[None, :, :]) ** 2).reshape(-1, 3)
    prior = _Prior.for_dim(3)
    theta = np.log([0.3, 0.5, 1.0, 1.2, 0.01])
    _, grad = _neg_log_posterior(theta, y, sqdiff, prior)
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = 1e-6
        up, _ = _neg_log_posterior(theta + step, y, sqdiff, prior)
        down, _ = _neg_log_posterior(theta - step, y, sqdiff, prior)
        assert (up - down) / 2e-6 == pytest.approx(grad[j], rel=1e-4, abs=1e-6)


def test_posterior_gradients_are_exact() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((10, 2))
    model = Posterior(x, np.sin(4 * x[:, 0]), Hyperparameters((0.3, 0.6), 1.0, 1e-4))
    at = rng.random((4, 2))
    _, _, dmean, dvar = model.predict_with_grad(at)
    for j in range(2):
        step = np.zeros(2)
        step[j] = 1e-6
        (m_up, v_up), (m_down, v_down) = model.predict(at + step), model.predict(at - step)
        assert np.allclose((m_up - m_down) / 2e-6, dmean[:, j], atol=1e-5)
        assert np.allclose((v_up - v_down) / 2e-6, dvar[:, j], atol=1e-5)


def test_log_ei_matches_the_closed_form_and_stays_finite() -> None:
    z = np.array([-30.0, -5.0, -1.5, -1.0, -0.5, 0.0, 0.5, 3.0])
    direct = np.log(norm.pdf(z) + z * norm.cdf(z))
    assert np.allclose(log_h(z), direct, rtol=1e-10)
    extreme = log_h(np.array([-1e3, -1e6, -1e10]))
    assert np.all(np.isfinite(extreme)) and np.all(np.diff(extreme) < 0)
    std = np.full(5, 0.3)
    values = log_ei(np.linspace(-2.0, 2.0, 5), std, best=0.0)
    assert np.all(np.diff(values) > 0)  # more mean, more improvement
    value, d_mean, d_std = log_ei_with_grad(np.array([-4.0, 0.2]), np.array([0.5, 0.1]), 0.0)
    up, _, _ = log_ei_with_grad(np.array([-4.0, 0.2]) + 1e-6, np.array([0.5, 0.1]), 0.0)
    assert np.allclose((up - value) / 1e-6, d_mean, rtol=1e-4)
    up, _, _ = log_ei_with_grad(np.array([-4.0, 0.2]), np.array([0.5, 0.1]) + 1e-6, 0.0)
    assert np.allclose((up - value) / 1e-6, d_std, rtol=1e-4)


def test_beats_random_search_on_branin() -> None:
    seeds = range(3)
    gp = [
        _run(GaussianProcessPlanner(BRANIN_SPACE, {"y": "min"}, seed=s, **FAST), _branin, 25)
        for s in seeds
    ]
    rand = [_run(RandomPlanner(BRANIN_SPACE, {"y": "min"}, seed=s), _branin, 25) for s in seeds]
    gp_regret = np.median(gp) - BRANIN_MIN
    assert gp_regret < 0.2
    assert gp_regret < np.median(rand) - BRANIN_MIN


def test_cholesky_adds_jitter_for_duplicated_points() -> None:
    x = np.array([[0.1, 0.2], [0.5, 0.5], [0.1, 0.2]])
    kernel = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))  # singular: rows 0 and 2
    factor = robust_cholesky(kernel, x)
    assert np.allclose(factor @ factor.T, kernel, atol=1e-5)


def test_cholesky_failure_names_duplicated_points() -> None:
    x = np.array([[0.1], [0.7], [0.1]])
    broken = np.array([[1.0, 2.0, 1.0], [2.0, 1.0, 2.0], [1.0, 2.0, 1.0]])  # indefinite
    with pytest.raises(PlannerError, match="indices 0, 2") as info:
        robust_cholesky(broken, x)
    assert info.value.details["duplicates"] == [[0, 2]]


def test_duplicated_observations_still_plan() -> None:
    space = Space({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(space, {"v": "max"}, seed=0, n_initial=2, **FAST)
    same = {"x": 0.25, "y": 0.75}
    planner.tell([Observation(same, {"v": v}) for v in (1.0, 1.1, 0.9)])
    planner.tell([Observation({"x": 0.6, "y": 0.1}, {"v": 0.0})])
    [point] = planner.ask(1)
    assert space.validate(point) == point


def test_surrogate_round_trips_through_json() -> None:
    planner = GaussianProcessPlanner(BRANIN_SPACE, {"y": "min"}, seed=1, **FAST)
    _run(planner, _branin, 12)
    surrogate = planner.surrogate()
    assert isinstance(surrogate, Surrogate)
    data = json.loads(json.dumps(surrogate.to_json()))
    assert data["kind"] == "gp"
    assert data["objective"] == {"name": "y", "direction": "min"}
    assert data["space"] == BRANIN_SPACE.to_dict()
    rebuilt = load_surrogate(data)
    points = [{"x1": 1.0, "x2": 2.0}, {"x1": -3.0, "x2": 14.0}, {"x1": 9.5, "x2": 2.5}]
    assert rebuilt.predict(points) == surrogate.predict(points)
    mean, _ = surrogate.predict([{"x1": 9.42478, "x2": 2.475}])  # a minimum of Branin
    assert mean[0] < 20.0


def test_no_surrogate_before_two_observations() -> None:
    planner = GaussianProcessPlanner(Space({"x": Real(0.0, 1.0)}), {"y": "max"})
    assert planner.surrogate() is None
    planner.tell([Observation({"x": 0.5}, {"y": 1.0}), Observation({"x": 0.2}, {}, failed=True)])
    assert planner.surrogate() is None


@pytest.mark.parametrize("max_enumerated", [16, 0])
def test_mixed_space_with_int_and_choice(mixed_space: Space, max_enumerated: int) -> None:
    planner = GaussianProcessPlanner(
        mixed_space, {"y": "max"}, seed=2, max_enumerated=max_enumerated, **FAST
    )
    best = -math.inf
    for n in (8, 1, 1, 1, 1, 1, 1, 2, 2):
        points = planner.ask(n)
        for p in points:
            assert mixed_space.validate(p) == p and type(p["steps"]) is int
        values = [mixed_objective(p) for p in points]
        best = max(best, *values)
        planner.tell([Observation(p, {"y": v}) for p, v in zip(points, values, strict=True)])
    assert best > -0.3  # the optimum is 0.4 (DMC, 55 degrees, ~2 mol, 3 steps)


def test_at_most_three_objectives() -> None:
    objectives = {"a": "max", "b": "min", "c": "max", "d": "min"}
    with pytest.raises(InvalidInput) as info:
        GaussianProcessPlanner(Space({"x": Real(0.0, 1.0)}), objectives)
    assert info.value.field == "objectives"
    assert "up to 3 objectives" in str(info.value)


def test_non_finite_values_count_as_failures() -> None:
    planner = _fitted(n=4)
    planner.tell([Observation({"x": 0.55}, {"y": math.nan})])
    assert len(planner.surrogate().to_json()["outputs"]) == 4  # type: ignore[union-attr]
    with pytest.raises(InvalidInput) as info:
        planner.tell([Observation({"x": 0.45}, {"z": 1.0})])
    assert info.value.field == "observations[5].values.y"


def test_batch_spreads_out_and_respects_pending() -> None:
    planner = _fitted(n=6)
    pending = [{"x": 0.42}]
    batch = planner.ask(4, pending)
    xs = sorted(float(p["x"]) for p in [*batch, *pending])
    assert min(np.diff(xs)) > 1e-3


def test_initial_design_then_model() -> None:
    space = Space({"a": Real(0.0, 1.0), "k": Int(1, 9), "c": Choice(["p", "q"])})
    planner = GaussianProcessPlanner(space, {"y": "min"}, seed=5, n_initial=5, **FAST)
    first = planner.ask(5)
    state = planner.state_dict()
    assert state["n_sobol"] == 5 and state["hyperparameters"]["objectives"] == {"y": None}
    planner.tell([Observation(p, {"y": float(p["k"])}) for p in first])
    planner.ask(1)
    state = planner.state_dict()
    warm = state["hyperparameters"]["objectives"]["y"]
    assert state["n_sobol"] == 5 and len(warm["lengthscales"]) == 4


def test_bad_options_name_the_option() -> None:
    space = Space({"x": Real(0.0, 1.0)})
    for name, value in [("n_initial", -1), ("n_starts", 0), ("noise_floor", 2.0)]:
        with pytest.raises(InvalidInput) as info:
            GaussianProcessPlanner(space, {"y": "max"}, **{name: value})  # type: ignore[arg-type]
        assert info.value.field == name


def test_load_state_dict_rejects_another_space() -> None:
    state = _fitted(n=4).state_dict()
    state["hyperparameters"] = {"lengthscales": [0.1, 0.2], "outputscale": 1.0, "noise": 1e-3}
    planner = GaussianProcessPlanner(Space({"x": Real(0.0, 1.0)}), {"y": "max"})
    with pytest.raises(InvalidInput) as info:
        planner.load_state_dict(state)
    assert info.value.field == "state.hyperparameters.lengthscales"


def test_choice_labels_may_be_numbers() -> None:
    space = Space({"c": Choice([1, 2.5, "x"]), "r": Real(0.0, 1.0)})
    planner = GaussianProcessPlanner(space, {"y": "max"}, n_initial=3, **FAST)
    for _ in range(5):
        [p] = planner.ask(1)
        assert p["c"] in (1, 2.5, "x")
        planner.tell([Observation(p, {"y": float(p["r"])})])
