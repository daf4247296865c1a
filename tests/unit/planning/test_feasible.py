"""The feasible region of a constrained space: mask, repair, sampling, SLSQP constraints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.optimize import minimize

from genesis_platform.planning._feasible import FeasibleRegion
from genesis_platform.planning._optimize import AcquisitionOptimizer
from genesis_platform.planning.encoding import Encoder, FloatArray
from genesis_platform.planning.sobol import SobolSequence
from genesis_platform.planning.space import Choice, Int, Real, Space


def _region(params: dict[str, Real | Int | Choice], constraints: list[str]) -> FeasibleRegion:
    return FeasibleRegion(Encoder(Space(params, constraints=constraints)))


MIXTURE = {
    "a": Real(0.0, 1.0),
    "solvent": Choice(["EC", "DMC", "PC"]),
    "b": Real(0.0, 2.0),  # a wider range: the encoded coefficients differ
    "c": Real(0.1, 0.9),  # a lower bound above zero: the encoded bound moves
    "k": Int(1, 4),
}


def _decoded_sums(region: FeasibleRegion, x: FloatArray) -> np.ndarray:
    points = region.encoder.decode(x)
    return np.array([float(p["a"]) + float(p["b"]) + float(p["c"]) for p in points])


def test_repair_lands_on_a_mixture_equality_inside_the_box() -> None:
    region = _region(MIXTURE, ["a + b + c == 1"])
    enc = region.encoder
    rng = np.random.default_rng(0)
    x = rng.random((2000, enc.dim))
    x[:5, enc.continuous_columns] = [0.0, 0.0, 0.0, 0.0]  # a corner: sum 0.1
    x[5:10, enc.continuous_columns] = [1.0, 1.0, 1.0, 1.0]  # the other: sum 3.9
    repaired = region.repair(x)
    assert repaired is not x and repaired.shape == x.shape
    cont = enc.continuous_columns
    assert np.all(repaired[:, cont] >= 0.0) and np.all(repaired[:, cont] <= 1.0)
    # Columns the constraint does not involve are left alone (choices, the integer).
    untouched = np.setdiff1d(np.arange(enc.dim), [0, 4, 5])
    assert np.array_equal(repaired[:, untouched], x[:, untouched])
    snapped = enc.snap(repaired)
    assert np.all(region.mask(snapped))
    assert np.max(np.abs(_decoded_sums(region, snapped) - 1.0)) < 1e-9
    for p in enc.decode(snapped):
        assert Space(MIXTURE).validate(p) == p


def test_repair_keeps_feasible_rows_and_is_idempotent() -> None:
    region = _region(MIXTURE, ["a + b + c == 1", "a <= 2 * c"])
    enc = region.encoder
    rng = np.random.default_rng(1)
    once = region.repair(rng.random((300, enc.dim)))
    twice = region.repair(once)
    assert np.allclose(once, twice, atol=1e-9)
    feasible = enc.encode([{"a": 0.2, "solvent": "PC", "b": 0.5, "c": 0.3, "k": 2}])
    assert np.allclose(region.repair(feasible), feasible, atol=1e-12)


def test_repair_with_several_linear_constraints() -> None:
    params = {
        "a": Real(0.0, 1.0),
        "b": Real(0.0, 1.0),
        "c": Real(0.0, 1.0),
        "t": Real(0.0, 10.0),
    }
    texts = ["a + b + c == 1", "a - b >= 0.1", "c <= 0.3", "t + 5 * a <= 6"]
    region = _region(params, texts)
    assert not region.nonlinear
    rng = np.random.default_rng(2)
    repaired = region.repair(rng.random((1000, region.encoder.dim)))
    assert np.all((repaired >= 0.0) & (repaired <= 1.0))
    assert np.all(region.mask(repaired))
    space = region.encoder.space
    for p in region.encoder.decode(repaired[:200]):
        assert space.is_feasible(p)
        a, b, c, t = (float(p[n]) for n in "abct")
        assert abs(a + b + c - 1.0) < 1e-6 and a - b >= 0.1 - 1e-9
        assert c <= 0.3 + 1e-9 and t + 5 * a <= 6 + 1e-9


def test_repair_leaves_nonlinear_and_log_constraints_to_the_mask() -> None:
    params = {"x": Real(0.0, 1.0), "conc": Real(0.01, 10.0, log=True)}
    region = _region(params, ["x * conc <= 0.5", "conc <= 1"])
    assert len(region.nonlinear) == 2  # "conc <= 1" is not linear in encoded units
    x = np.random.default_rng(3).random((50, 2))
    assert np.array_equal(region.repair(x), x)


@pytest.mark.parametrize(
    "texts",
    [
        ["a + b + c == 1", "k * a <= 1.5"],
        ["a * b <= 0.1", "k + 2 * c >= 3", "sqrt(a) + b <= 1.2"],
        ["conc * k <= 4", "a <= b"],
    ],
)
def test_mask_agrees_with_space_is_feasible(texts: list[str]) -> None:
    params = {**MIXTURE, "conc": Real(0.01, 10.0, log=True)}
    region = _region(params, texts)
    enc = region.encoder
    rng = np.random.default_rng(4)
    x = enc.from_uniform(rng.random((600, enc.n_params)))
    x = np.vstack([x, enc.snap(region.repair(x))])  # many rows on the equality too
    mask = region.mask(x)
    space = enc.space
    assert mask.tolist() == [space.is_feasible(p) for p in enc.decode(x)]
    assert 0 < mask.sum() < mask.size  # both outcomes are exercised


def test_unconstrained_region_accepts_everything() -> None:
    region = _region(MIXTURE, [])
    assert not region.constrained
    x = np.random.default_rng(5).random((20, region.encoder.dim))
    assert np.all(region.mask(x))
    assert np.array_equal(region.repair(x), x)
    assert region.slsqp_constraints(x, np.arange(3)) == []


def test_sampling_with_a_nonlinear_constraint() -> None:
    region = _region({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)}, ["x * y <= 0.1"])
    enc = region.encoder
    rng = np.random.default_rng(6)
    m = 4000
    rows = region.sample(rng.random((m, 2)))
    points = enc.decode(rows)
    assert all(float(p["x"]) * float(p["y"]) <= 0.1 + 1e-12 for p in points)
    # Area of {x y <= 0.1} in the unit square: 0.1 + 0.1 ln 10.
    area = 0.1 + 0.1 * np.log(10.0)
    assert rows.shape[0] / m == pytest.approx(area, abs=4 * np.sqrt(area * (1 - area) / m))
    # Accepted points cover the region, including the thin arms along the axes.
    xs = np.array([float(p["x"]) for p in points])
    assert xs.max() > 0.95 and np.mean(xs > 0.5) > 0.15
    pool = region.feasible_pool(rng, 1000)
    assert pool.shape == (1000, 2)
    assert all(enc.space.is_feasible(p) for p in enc.decode(pool))


def test_sampling_in_a_mixed_space_keeps_valid_encodings() -> None:
    region = _region(MIXTURE, ["a + b + c == 1", "k * a <= 1"])
    enc = region.encoder
    rows = region.sample(np.random.default_rng(7).random((500, enc.n_params)))
    assert rows.shape[0] > 100
    assert np.array_equal(enc.snap(rows), rows)
    for p in enc.decode(rows):
        assert enc.space.is_feasible(p)
        assert enc.space.validate(p) == p
    labels = {p["solvent"] for p in enc.decode(rows)}
    ks = {p["k"] for p in enc.decode(rows)}
    assert labels == {"EC", "DMC", "PC"} and ks == {1, 2, 3, 4}


def test_feasible_pool_is_empty_for_an_impossible_space() -> None:
    region = _region({"a": Real(0.0, 1.0), "b": Real(0.0, 1.0)}, ["a + b >= 3"])
    pool = region.feasible_pool(np.random.default_rng(8), 256)
    assert pool.shape == (0, 2)


def test_slsqp_constraints_are_nonnegative_where_feasible() -> None:
    params = {"a": Real(0.0, 1.0), "b": Real(0.0, 1.0), "c": Real(0.0, 1.0)}
    region = _region(params, ["a + b + c == 1", "a * b <= 0.1", "c >= 0.2"])
    enc = region.encoder
    rows = enc.encode(
        [
            {"a": 0.1, "b": 0.5, "c": 0.4},  # feasible
            {"a": 0.5, "b": 0.4, "c": 0.1},  # a b = 0.2 > 0.1, c < 0.2
            {"a": 0.3, "b": 0.3, "c": 0.6},  # sum 1.2
        ]
    )
    free = np.arange(3)
    by_type = {d["type"]: d["fun"] for d in region.slsqp_constraints(rows, free)}
    assert set(by_type) == {"ineq", "eq"}
    ineq = by_type["ineq"](rows[:, free].ravel())
    eq = by_type["eq"](rows[:, free].ravel())
    # One value per constraint and start: the <= constraints in order, each over the rows.
    assert ineq.shape == (6,) and eq.shape == (3,)
    product, lower = ineq[:3], ineq[3:]
    assert np.allclose(product, [0.1 - 0.05, 0.1 - 0.2, 0.1 - 0.09])
    assert np.allclose(lower, [0.2, -0.1, 0.4])
    assert np.allclose(eq, [0.0, 0.0, 0.2])
    by_slsqp = (product >= 0) & (lower >= 0) & (np.abs(eq) <= 1e-12)
    assert by_slsqp.tolist() == region.mask(rows).tolist() == [True, False, False]


def test_slsqp_with_the_region_constraints_finds_the_constrained_optimum() -> None:
    """With the sign convention right, SLSQP ends on the constraints, not beyond them."""
    params = {"a": Real(0.0, 1.0), "b": Real(0.0, 1.0), "c": Real(0.0, 1.0)}
    region = _region(params, ["a + b + c == 1", "a * b <= 0.1"])
    starts = region.encoder.encode([{"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.6, "b": 0.1, "c": 0.3}])
    free = np.arange(3)
    target = np.array([0.9, 0.9, 0.0])  # far outside: a b = 0.81, a + b + c = 1.8

    def objective(z: FloatArray) -> float:
        return float(((z.reshape(2, 3) - target) ** 2).sum())

    result = minimize(
        objective,
        starts.ravel(),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * 6,
        constraints=region.slsqp_constraints(starts, free),
    )
    rows = result.x.reshape(2, 3)
    values = region.values(rows)
    assert np.allclose(values["a"] + values["b"] + values["c"], 1.0, atol=1e-6)
    assert np.all(values["a"] * values["b"] <= 0.1 + 1e-6)
    # The product constraint is active at the optimum (it pulls a and b apart).
    assert np.allclose(values["a"] * values["b"], 0.1, atol=1e-4)


@dataclass(frozen=True)
class _Quadratic:
    """``-|x[cols] - target|^2``: an acquisition whose unconstrained best is ``target``."""

    cols: np.ndarray
    target: np.ndarray

    def __call__(self, x: FloatArray) -> FloatArray:
        out: FloatArray = -((x[:, self.cols] - self.target) ** 2).sum(1)
        return out

    def with_grad(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        grad = np.zeros_like(x)
        grad[:, self.cols] = -2.0 * (x[:, self.cols] - self.target)
        return self(x), grad


@pytest.mark.parametrize(
    "texts",
    [["a + b + c == 1"], ["a + b + c == 1", "a * b <= 0.12"], ["a + b <= 0.8", "k * c <= 1"]],
)
def test_acquisition_optimizer_ranks_only_feasible_rows_best_first(texts: list[str]) -> None:
    params = {
        "a": Real(0.0, 1.0),
        "b": Real(0.0, 1.0),
        "c": Real(0.0, 1.0),
        "k": Int(1, 3),
        "s": Choice(["x", "y"]),
    }
    space = Space(params, constraints=texts)
    enc = Encoder(space)
    optimizer = AcquisitionOptimizer(
        enc, SobolSequence(enc.n_params, 0, stream=1).take(0, 256), n_starts=4
    )
    acquisition = _Quadratic(np.array([0, 1, 2]), np.array([0.9, 0.9, 0.1]))
    ranked = optimizer.ranked(acquisition, np.zeros((0, enc.dim)), np.random.default_rng(9))
    assert ranked.shape[0] > 0
    assert np.all(optimizer.region.mask(ranked))
    assert all(space.is_feasible(p) for p in enc.decode(ranked))
    scores = acquisition(ranked)
    assert np.all(np.diff(scores) <= 1e-12)
    # No better feasible point on a fine grid: the optimizer found the constrained best.
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, 101)] * 3, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    # k = 1 leaves c the most room; the choice does not enter the acquisition.
    full = np.repeat(enc.encode([{"a": 0.0, "b": 0.0, "c": 0.0, "k": 1, "s": "x"}]), len(grid), 0)
    full[:, :3] = grid
    grid_best = float(np.max(acquisition(full[FeasibleRegion(enc).mask(full)])))
    assert scores[0] >= grid_best - 1e-3
