from __future__ import annotations

import itertools

import numpy as np
import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.pareto import (
    default_reference_point,
    hypervolume,
    non_dominated_boxes,
    pareto_mask,
)


def _brute_force_mask(y: np.ndarray) -> np.ndarray:
    n = y.shape[0]
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            dominated = np.all(y[j] >= y[i]) and np.any(y[j] > y[i])
            earlier_copy = j < i and np.array_equal(y[j], y[i])
            if dominated or earlier_copy:
                mask[i] = False
    return mask


def _union_volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume of the union of the boxes [ref, point] by inclusion-exclusion."""
    g = np.maximum(points - ref, 0.0)
    total = 0.0
    for size in range(1, g.shape[0] + 1):
        for subset in itertools.combinations(range(g.shape[0]), size):
            total += (-1) ** (size + 1) * float(np.prod(g[list(subset)].min(axis=0)))
    return total


def _dominated(x: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Which rows of ``x`` some row of ``front`` weakly dominates."""
    return np.any(np.all(front[None, :, :] >= x[:, None, :], axis=2), axis=1)


def _random_points(rng: np.random.Generator, n: int, m: int, ties: bool) -> np.ndarray:
    if ties:  # a coarse grid: many equal coordinates and duplicate rows
        return rng.integers(0, 5, size=(n, m)).astype(float)
    # A curved front plus noise, so that a good share of the points is non-dominated.
    x = np.abs(rng.standard_normal((n, m)))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * (1.0 - 0.3 * rng.random((n, 1)))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("ties", [False, True])
def test_pareto_mask_matches_brute_force(m: int, ties: bool) -> None:
    rng = np.random.default_rng(10 * m + ties)
    for _ in range(5):
        y = _random_points(rng, 40, m, ties)
        np.testing.assert_array_equal(pareto_mask(y), _brute_force_mask(y))


def test_pareto_mask_keeps_only_the_first_of_identical_rows() -> None:
    y = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0], [1.0, 1.0], [0.0, 2.0], [2.0, 0.5]])
    np.testing.assert_array_equal(pareto_mask(y), [False, True, True, False, False, True])
    assert pareto_mask(np.empty((0, 3))).shape == (0,)


def test_hypervolume_of_hand_computed_sets() -> None:
    stairs = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(stairs, np.zeros(2)) == pytest.approx(6.0)
    # Above (0.5, 1.5) only (1, 3) and (2, 2) count: 0.5 * 1.5 + (2 - 1) * 0.5.
    assert hypervolume(stairs, np.array([0.5, 1.5])) == pytest.approx(1.25)
    # (5, 0) is not better than the reference in the second objective: it adds nothing.
    assert hypervolume(np.vstack([stairs, [[5.0, 0.0]]]), np.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(np.array([[1.0, 2.0, 3.0]]), np.zeros(3)) == pytest.approx(6.0)
    pair = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]])
    assert hypervolume(pair, np.zeros(3)) == pytest.approx(3.0)
    # Two boxes overlapping in [0,1]x[0,1]x[0,1]: 2*1*3 + 1*2*2 - 1*1*2 = 8.
    assert hypervolume(np.array([[2.0, 1.0, 3.0], [1.0, 2.0, 2.0]]), np.zeros(3)) == 8.0
    assert hypervolume(np.array([[1.0, 1.0, 1.0]]), np.ones(3)) == 0.0
    assert hypervolume(np.empty((0, 2)), np.zeros(2)) == 0.0
    assert hypervolume(np.array([[3.0], [1.0]]), np.array([0.5])) == pytest.approx(2.5)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(m: int) -> None:
    rng = np.random.default_rng(m)
    for ties in (False, True):
        for _ in range(4):
            y = _random_points(rng, 9, m, ties)
            ref = np.full(m, 0.1 if not ties else 0.5)
            expected = _union_volume(y, ref)
            assert hypervolume(y, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)
            shuffled = y[rng.permutation(y.shape[0])]
            assert hypervolume(shuffled, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_monte_carlo(m: int) -> None:
    rng = np.random.default_rng(100 + m)
    y = _random_points(rng, 60, m, ties=False) - 0.05  # some points fall below ref
    ref = np.zeros(m)
    top = y.max(axis=0)
    n = 200_000
    x = ref + rng.random((n, m)) * (top - ref)
    hit = _dominated(x, y)
    box = float(np.prod(top - ref))
    estimate = box * hit.mean()
    error = box * np.sqrt(hit.mean() * (1.0 - hit.mean()) / n)
    assert abs(hypervolume(y, ref) - estimate) < 5.0 * error


def test_default_reference_point_sits_below_the_front() -> None:
    y = np.array([[1.0, 4.0], [3.0, 2.0], [2.0, 3.0], [0.0, 0.0], [-5.0, 1.0]])
    # Front (1, 4), (3, 2), (2, 3): nadir (1, 2), range (2, 2); dominated rows ignored.
    np.testing.assert_allclose(default_reference_point(y), [0.8, 1.8])
    # One point: range 0, so 10% of |value| (or of 1.0 where the value is 0).
    np.testing.assert_allclose(
        default_reference_point(np.array([[2.0, -3.0, 0.0]])), [1.8, -3.3, -0.1]
    )
    equal = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 1.0]])
    np.testing.assert_allclose(default_reference_point(equal), [0.8, 4.5, 0.9])


def test_every_front_point_adds_hypervolume_over_the_default_reference() -> None:
    rng = np.random.default_rng(7)
    y = _random_points(rng, 30, 3, ties=False)
    ref = default_reference_point(y)
    front = y[pareto_mask(y)]
    assert np.all(front > ref)
    whole = hypervolume(front, ref)
    for i in range(front.shape[0]):
        assert hypervolume(np.delete(front, i, axis=0), ref) < whole


def test_boxes_for_two_objectives_are_the_strips_of_the_staircase() -> None:
    front = np.array([[2.0, 2.0], [1.0, 3.0], [3.0, 1.0], [1.5, 1.5], [4.0, -1.0]])
    lower, upper = non_dominated_boxes(front, np.zeros(2))
    order = np.argsort(lower[:, 0])
    np.testing.assert_array_equal(lower[order], [[0, 3], [1, 2], [2, 1], [3, 0]])
    np.testing.assert_array_equal(
        upper[order], [[1, np.inf], [2, np.inf], [3, np.inf], [np.inf, np.inf]]
    )


def test_boxes_without_a_front_above_ref_are_the_whole_orthant() -> None:
    lower, upper = non_dominated_boxes(np.array([[1.0, -1.0, 2.0], [-3.0, 4.0, 4.0]]), np.zeros(3))
    np.testing.assert_array_equal(lower, [[0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(upper, [[np.inf] * 3])


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("ties", [False, True])
def test_boxes_and_dominated_volume_fill_the_capped_orthant(m: int, ties: bool) -> None:
    rng = np.random.default_rng(20 * m + ties)
    y = _random_points(rng, 25 if m < 4 else 12, m, ties)
    ref = np.full(m, 0.5 if ties else 0.05)
    k = int(np.count_nonzero(pareto_mask(y[np.all(y > ref, axis=1)])))
    lower, upper = non_dominated_boxes(y, ref)
    if m == 2:
        assert lower.shape[0] == k + 1
    assert lower.shape[0] <= (k + 1) ** (m - 1)
    assert np.all(lower >= ref) and np.all(upper > lower) and np.all(np.isinf(upper[:, -1]))
    cap = y.max(axis=0) + 0.7
    free = float(np.prod(np.minimum(upper, cap) - lower, axis=1).sum())
    assert free + hypervolume(y, ref) == pytest.approx(float(np.prod(cap - ref)), rel=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("ties", [False, True])
def test_boxes_are_disjoint_and_cover_exactly_the_non_dominated_region(m: int, ties: bool) -> None:
    rng = np.random.default_rng(30 * m + ties)
    y = _random_points(rng, 25 if m < 4 else 12, m, ties)
    ref = np.full(m, 0.5 if ties else 0.05)
    lower, upper = non_dominated_boxes(y, ref)
    cap = y.max(axis=0) + 0.5
    x = ref + rng.random((20_000, m)) * (cap - ref)
    inside = np.all((x[:, None, :] > lower) & (x[:, None, :] < upper), axis=2)
    count = inside.sum(axis=1)
    assert count.max() <= 1
    np.testing.assert_array_equal(count == 1, ~_dominated(x, y))
    assert 0 < np.count_nonzero(count == 0) < count.size  # both kinds of samples occur


def test_inputs_are_validated() -> None:
    with pytest.raises(InvalidInput):
        hypervolume(np.ones((3, 2)), np.zeros(3))
    with pytest.raises(InvalidInput):
        pareto_mask(np.array([[1.0, np.nan]]))
    with pytest.raises(InvalidInput):
        non_dominated_boxes(np.ones(3), np.zeros(3))
    with pytest.raises(InvalidInput):
        default_reference_point(np.empty((0, 2)))
