"""Options of the gp planner: acquisitions, output transform, state; acquisition gradients."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._acquisition import (
    Acquisition,
    LogEI,
    LogNoisyEI,
    OutcomeBound,
    UpperConfidenceBound,
    WithFeasibility,
)
from genesis_platform.planning._gp_model import (
    Hyperparameters,
    OutputTransform,
    Posterior,
    matern52,
    scaled_sqdist,
)
from genesis_platform.planning.encoding import FloatArray, point_key
from genesis_platform.planning.gp import ACQUISITIONS, GaussianProcessPlanner
from genesis_platform.planning.protocols import Observation, Params
from genesis_platform.planning.random import RandomPlanner
from genesis_platform.planning.registry import make_planner
from genesis_platform.planning.space import Real, Space

from .conftest import mixed_objective

FAST: dict[str, int] = {"n_candidates": 256, "n_starts": 4}

BRANIN_SPACE = Space({"x1": Real(-5.0, 10.0), "x2": Real(0.0, 15.0)})
BRANIN_MIN = 0.397887
LINE = Space({"x": Real(0.0, 1.0)})
SQUARE = Space({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})


def _branin(p: Params) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def _best_of(planner: GaussianProcessPlanner | RandomPlanner, budget: int) -> float:
    best = math.inf
    for _ in range(budget):
        [point] = planner.ask(1)
        value = _branin(point)
        best = min(best, value)
        planner.tell([Observation(point, {"y": value})])
    return best


@pytest.fixture(scope="module")
def random_regret() -> float:
    """Median regret of random search on Branin with the same budget, over ten seeds."""
    return float(
        np.median(
            [
                _best_of(RandomPlanner(BRANIN_SPACE, {"y": "min"}, seed=s), 25) - BRANIN_MIN
                for s in range(10)
            ]
        )
    )


@pytest.mark.parametrize("acquisition", ACQUISITIONS)
def test_every_acquisition_beats_random_search(acquisition: str, random_regret: float) -> None:
    regrets = [
        _best_of(
            GaussianProcessPlanner(
                BRANIN_SPACE, {"y": "min"}, seed=s, acquisition=acquisition, **FAST
            ),
            25,
        )
        - BRANIN_MIN
        for s in range(3)
    ]
    assert np.median(regrets) < 0.1 * random_regret
    assert min(regrets) < 0.05 * random_regret


@pytest.mark.parametrize("acquisition", ["thompson", "auto"])
def test_large_batches_are_distinct_and_new(acquisition: str, mixed_space: Space) -> None:
    planner = GaussianProcessPlanner(
        mixed_space, {"y": "max"}, seed=4, acquisition=acquisition, n_initial=6, **FAST
    )
    done = planner.ask(8)
    planner.tell([Observation(p, {"y": mixed_objective(p)}) for p in done])
    pending = planner.ask(3)
    batch = planner.ask(8, pending)
    keys = [point_key(mixed_space, p) for p in batch]
    assert len(set(keys)) == 8
    assert not set(keys) & {point_key(mixed_space, p) for p in [*done, *pending]}
    for p in batch:
        assert mixed_space.validate(p) == p


def test_auto_uses_thompson_sampling_for_batches_of_eight() -> None:
    """auto with 8 points plans like thompson (one posterior draw per point), not like logei."""

    def batch(acquisition: str) -> list[Params]:
        planner = GaussianProcessPlanner(
            BRANIN_SPACE, {"y": "min"}, seed=2, acquisition=acquisition, n_initial=6, **FAST
        )
        first = planner.ask(6)
        planner.tell([Observation(p, {"y": _branin(p)}) for p in first])
        return planner.ask(8)

    assert batch("auto") == batch("thompson")
    assert batch("auto") != batch("logei")


# -- option validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"acquisition": "ei"}, "acquisition"),
        ({"acquisition": None}, "acquisition"),
        ({"ucb_beta": 0.0}, "ucb_beta"),
        ({"ucb_beta": -1.0}, "ucb_beta"),
        ({"ucb_beta": "2"}, "ucb_beta"),
        ({"ucb_beta": math.nan}, "ucb_beta"),
        ({"ucb_beta": math.inf}, "ucb_beta"),
        ({"output_transform": "logs"}, "output_transform"),
        ({"output_transform": True}, "output_transform"),
        ({"outcome_constraints": "g <= 1"}, "outcome_constraints"),
        ({"outcome_constraints": {"g": 1}}, "outcome_constraints"),
        ({"outcome_constraints": ["g <= 1", "g == 1"]}, "outcome_constraints[1]"),
        ({"outcome_constraints": ["g + h <= 1"]}, "outcome_constraints[0]"),
        ({"reference_point": {"y": 0.0}}, "reference_point"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        GaussianProcessPlanner(LINE, {"y": "max"}, **options)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("reference_point", "field", "words"),
    [
        ({"y": 0.0}, "reference_point", ["exactly", "'z'"]),
        ({"y": 0.0, "z": 1.0, "w": 2.0}, "reference_point", ["exactly"]),
        ({"y": 0.0, "z": "high"}, "reference_point.z", ["'high'"]),
        ({"y": math.nan, "z": 1.0}, "reference_point.y", ["nan"]),
    ],
)
def test_reference_point_must_name_every_objective(
    reference_point: dict[str, object], field: str, words: list[str]
) -> None:
    with pytest.raises(InvalidInput) as info:
        GaussianProcessPlanner(
            LINE,
            {"y": "max", "z": "min"},
            reference_point=reference_point,  # type: ignore[arg-type]
        )
    assert info.value.field == field
    for word in words:
        assert word in str(info.value)


def test_make_planner_names_the_option() -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner("gp", LINE, {"y": "max"}, options={"acquisition": "pi"})
    assert info.value.field == "planner.options.acquisition"
    assert "ucb" in info.value.fix  # lists the allowed values


def test_ucb_beta_refuses_a_bool() -> None:
    with pytest.raises(InvalidInput) as info:
        GaussianProcessPlanner(LINE, {"y": "max"}, ucb_beta=True)
    assert info.value.field == "ucb_beta"


# -- output transform ------------------------------------------------------------------------


def _told(
    values: Callable[[float], float],
    output_transform: str = "auto",
    direction: str = "max",
    n: int = 12,
) -> GaussianProcessPlanner:
    planner = GaussianProcessPlanner(
        LINE, {"y": direction}, output_transform=output_transform, **FAST
    )
    xs = np.linspace(0.0, 1.0, n)
    planner.tell([Observation({"x": float(x)}, {"y": values(float(x))}) for x in xs])
    return planner


def _log_flag(planner: GaussianProcessPlanner) -> bool:
    surrogate = planner.surrogate()
    assert surrogate is not None
    return bool(surrogate.to_json()["log"])


def _decades(x: float) -> float:
    return math.exp(8.0 * x)  # positive, from 1 to 3000, right-skewed


def _symmetric(x: float) -> float:
    return math.sin(6.0 * x) + x + 5.0


@pytest.mark.parametrize(
    ("values", "option", "expected"),
    [
        (_decades, "auto", True),
        (_symmetric, "auto", False),
        (lambda x: 1.0 + x, "auto", False),
        (lambda x: _decades(x) - 10.0, "auto", False),  # skewed but not all positive
        (_decades, "none", False),
        (_symmetric, "log", True),
        (lambda x: x - 0.5, "log", False),  # logs need positive values
    ],
    ids=["skewed", "symmetric", "uniform", "non-positive", "none", "forced", "forced-negative"],
)
def test_output_transform_chooses_logs(
    values: Callable[[float], float], option: str, expected: bool
) -> None:
    assert _log_flag(_told(values, option)) is expected
    assert _log_flag(_told(values, option, direction="min")) is expected


def test_output_transform_auto_does_not_log_left_skewed_values() -> None:
    assert _log_flag(_told(lambda x: 100.0 - _decades(x) / 30.0)) is False


@pytest.mark.parametrize("direction", ["max", "min"])
def test_log_surrogate_predicts_in_the_objective_units(direction: str) -> None:
    planner = _told(_decades, "auto", direction=direction)
    surrogate = planner.surrogate()
    assert surrogate is not None and surrogate.to_json()["log"] is True
    observed = [{"x": float(x)} for x in np.linspace(0.0, 1.0, 12)]
    mean, std = surrogate.predict(observed)
    truth = np.array([_decades(float(p["x"])) for p in observed])
    assert np.allclose(mean, truth, rtol=0.05)
    assert np.all(np.array(std) < 0.05 * truth)  # standard deviations scale with the value
    # Between observations the prediction lies between the neighbours, in the same units.
    between = [{"x": float(x)} for x in (0.5 / 11, 5.5 / 11, 10.5 / 11)]
    mid, _ = surrogate.predict(between)
    for value, p in zip(mid, between, strict=True):
        x = float(p["x"])
        assert _decades(x - 0.5 / 11) < value < _decades(x + 0.5 / 11)
    rebuilt = type(surrogate).from_json(json.loads(json.dumps(surrogate.to_json())))
    assert rebuilt.predict(between) == surrogate.predict(between)


def test_output_transform_round_trip() -> None:
    y = np.array([0.5, 3.0, 40.0, 700.0, 2.0, 9000.0])
    for sign in (1.0, -1.0):
        transform = OutputTransform.fit(y, sign, winsorize=False, log=None)
        assert transform.log
        standardized = transform.forward(y)
        assert np.mean(standardized) == pytest.approx(0.0, abs=1e-12)
        assert np.std(standardized) == pytest.approx(1.0)
        assert np.allclose(transform.mean_back(standardized), y)
        # Higher is better after the transform.
        order = np.argsort(standardized)
        assert np.array_equal(order, np.argsort(sign * y))
        assert transform.forward_bound(40.0) == pytest.approx(standardized[2])


# -- posterior samples -----------------------------------------------------------------------


def _posterior(seed: int = 0) -> Posterior:
    rng = np.random.default_rng(seed)
    x = rng.random((12, 2))
    y = np.sin(5.0 * x[:, 0]) + x[:, 1] ** 2
    return Posterior(x, (y - y.mean()) / y.std(), Hyperparameters((0.3, 0.5), 1.3, 1e-3))


def test_posterior_samples_have_the_posterior_mean_and_covariance() -> None:
    model = _posterior()
    at = np.vstack([model.x[0], model.x[0] + 0.02, np.random.default_rng(1).random((3, 2))])
    n = 20_000
    draws = model.sample(at, n, np.random.default_rng(2))
    assert draws.shape == (n, at.shape[0])
    mean, var = model.predict(at)
    assert np.all(np.abs(draws.mean(0) - mean) < 5.0 * np.sqrt(var / n))
    assert np.allclose(draws.var(0), var, rtol=5.0 * math.sqrt(2.0 / n), atol=1e-8)
    # The joint covariance: k(a, b) - k(a, X) K^-1 k(X, b), with the same kernel.
    inv_ls = 1.0 / np.array(model.hyper.lengthscales)
    s2 = model.hyper.outputscale

    def k(a: FloatArray, b: FloatArray) -> FloatArray:
        out: FloatArray = s2 * matern52(np.sqrt(scaled_sqdist(a * inv_ls, b * inv_ls)))
        return out

    cov = k(at, at) - k(at, model.x) @ model.kinv @ k(model.x, at)
    sample_cov = np.cov(draws, rowvar=False)
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.all(np.abs(sample_cov - cov) <= 6.0 * scale / math.sqrt(n) + 1e-7)
    # The same generator state gives the same draws.
    again = model.sample(at, n, np.random.default_rng(2))
    assert np.array_equal(draws, again)


# -- acquisition gradients -------------------------------------------------------------------


def _check_gradient(acquisition: Acquisition, x: FloatArray) -> None:
    value, grad = acquisition.with_grad(x)
    assert np.allclose(value, acquisition(x), rtol=1e-12, atol=1e-12)
    assert grad.shape == x.shape
    h = 1e-6
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = h
        numeric = (acquisition(x + step) - acquisition(x - step)) / (2.0 * h)
        assert np.allclose(grad[:, j], numeric, rtol=1e-4, atol=1e-5), (j, grad[:, j], numeric)


def _points() -> FloatArray:
    # Near the data, far from it, and one point on top of an observation (variance ~ noise).
    rng = np.random.default_rng(3)
    model = _posterior()
    return np.vstack([rng.random((5, 2)), model.x[3] + 1e-3, [[0.98, 0.02]]])


def test_log_noisy_ei_gradient() -> None:
    model = _posterior()
    bests = np.quantile(model.y, [0.6, 0.8, 0.9, 1.0]) + np.array([0.0, 0.1, 0.3, 0.5])
    _check_gradient(LogNoisyEI(model, bests), _points())
    # With a single incumbent, the noisy form is plain LogEI.
    one = LogNoisyEI(model, np.array([0.7]))
    assert np.allclose(one(_points()), LogEI(model, 0.7)(_points()))


@pytest.mark.parametrize("beta", [0.1, 2.0, 25.0])
def test_upper_confidence_bound_gradient(beta: float) -> None:
    model = _posterior()
    ucb = UpperConfidenceBound(model, beta)
    _check_gradient(ucb, _points())
    mean, var = model.predict(_points())
    assert np.allclose(ucb(_points()), mean + math.sqrt(beta) * np.sqrt(var))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_outcome_bound_gradient(sign: float) -> None:
    model = _posterior(seed=5)
    bound = OutcomeBound(model, 0.2, sign)

    class _Probability:
        def __call__(self, x: FloatArray) -> FloatArray:
            return bound.log_probability(x)

        def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
            return bound.log_probability_with_grad(x)

    _check_gradient(_Probability(), _points())
    # log P(y >= 0.2) and log P(y <= 0.2) are the logs of complementary probabilities.
    other = OutcomeBound(model, 0.2, -sign)
    total = np.exp(bound.log_probability(_points())) + np.exp(other.log_probability(_points()))
    assert np.allclose(total, 1.0)


def test_with_feasibility_gradient_and_value() -> None:
    model = _posterior()
    bounds = (OutcomeBound(_posterior(seed=5), 0.2, 1.0), OutcomeBound(_posterior(7), 0.5, -1.0))
    for base in (LogEI(model, 0.8), LogEI(model, -10.0), UpperConfidenceBound(model, 2.0)):
        combined = WithFeasibility(base, bounds)
        _check_gradient(combined, _points())
        expected = base(_points()) + sum(b.log_probability(_points()) for b in bounds)
        assert np.allclose(combined(_points()), expected)


# -- state -----------------------------------------------------------------------------------


def _circle(p: Params) -> dict[str, float]:
    x, y = float(p["x"]), float(p["y"])
    return {"f": (x - 0.9) ** 2 + (y - 0.6) ** 2, "g": x * x + y * y}


@pytest.mark.parametrize("acquisition", ["logei", "noisy-logei", "ucb", "thompson"])
def test_state_round_trip_with_an_outcome_constraint(acquisition: str) -> None:
    def build(seed: int) -> GaussianProcessPlanner:
        return GaussianProcessPlanner(
            SQUARE,
            {"f": "min"},
            seed=seed,
            n_initial=5,
            acquisition=acquisition,
            outcome_constraints=["g <= 0.5"],
            **FAST,
        )

    original = build(seed=11)
    told: list[Observation] = []
    for n in (5, 1, 2, 1):
        observations = [Observation(p, _circle(p)) for p in original.ask(n)]
        original.tell(observations)
        told += observations
    pending = original.ask(2)
    state = json.loads(json.dumps(original.state_dict()))
    assert state["hyperparameters"]["constraints"]["g"] is not None
    assert state["hyperparameters"]["objectives"]["f"] is not None
    original.surrogate()  # must not change the plan

    rebuilt = build(seed=0)
    rebuilt.load_state_dict(state)
    rebuilt.tell(told)
    assert rebuilt.ask(2, pending) == original.ask(2, pending)
    assert rebuilt.state_dict() == original.state_dict()


def _sine_planner(seed: int = 5) -> tuple[GaussianProcessPlanner, list[Observation]]:
    planner = GaussianProcessPlanner(LINE, {"y": "max"}, seed=seed, n_initial=4, **FAST)
    told: list[Observation] = []
    for n in (4, 1, 1):
        observations = [Observation(p, {"y": _symmetric(float(p["x"]))}) for p in planner.ask(n)]
        planner.tell(observations)
        told += observations
    return planner, told


def test_previous_state_format_still_loads() -> None:
    original, told = _sine_planner()
    state = json.loads(json.dumps(original.state_dict()))
    warm = state["hyperparameters"]["objectives"]["y"]
    assert set(warm) == {"lengthscales", "outputscale", "noise"}
    old = {**state, "hyperparameters": warm}  # the one-objective form of earlier versions

    rebuilt = GaussianProcessPlanner(LINE, {"y": "max"}, n_initial=4, **FAST)
    rebuilt.load_state_dict(old)
    rebuilt.tell(told)
    assert rebuilt.state_dict() == state  # saved again in the current form
    assert rebuilt.ask(1) == original.ask(1)


def test_previous_state_format_before_any_fit() -> None:
    fresh = GaussianProcessPlanner(LINE, {"y": "max"}, seed=2, **FAST)
    first = fresh.ask(3)
    state = fresh.state_dict()
    old = {**state, "hyperparameters": None}
    rebuilt = GaussianProcessPlanner(LINE, {"y": "max"}, **FAST)
    rebuilt.load_state_dict(old)
    assert rebuilt.state_dict() == state
    assert rebuilt.ask(2, first) == fresh.ask(2, first)


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"objectives": {"y": {"lengthscales": "long"}}}, "state.hyperparameters.objectives.y"),
        ({"objectives": {"y": {"outputscale": 1.0}}}, "state.hyperparameters.objectives.y"),
        ("warm", "state.hyperparameters"),
        ({"lengthscales": [0.1], "outputscale": 1.0}, "state.hyperparameters"),
    ],
)
def test_malformed_state_names_the_field(hyperparameters: object, field: str) -> None:
    planner = GaussianProcessPlanner(LINE, {"y": "max"})
    with pytest.raises(InvalidInput) as info:
        planner.load_state_dict({"hyperparameters": hyperparameters})
    assert info.value.field == field
