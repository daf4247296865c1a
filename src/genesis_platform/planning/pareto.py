"""Pareto fronts, hypervolume and box decompositions, with every objective maximized.

Callers negate the objectives they minimize. Points are rows of an ``(n, m)`` array, one
column per objective; a reference point ``ref`` of shape ``(m,)`` bounds the region that
counts from below. A point *dominates* another when it is at least as good in every
objective and better in one; only points better than ``ref`` in every objective add
hypervolume.

:func:`non_dominated_boxes` splits the region a new point could still claim into disjoint
boxes; the expected hypervolume improvement in :mod:`genesis_platform.planning._ehvi` sums
closed-form terms over them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.encoding import FloatArray

__all__ = ["default_reference_point", "hypervolume", "non_dominated_boxes", "pareto_mask"]

BoolArray = NDArray[np.bool_]

_MARGIN = 0.1
"""Fraction of the front's range the default reference point lies below its nadir."""


def pareto_mask(y: FloatArray) -> BoolArray:
    """Which rows are non-dominated (maximization).

    Of several identical non-dominated rows only the first is marked, so ``y[mask]`` holds
    each point of the front once. Costs ``O(n k m)`` for ``k`` front points.

    Args:
        y: Objective values, shape ``(n, m)``.

    Returns:
        Boolean mask of shape ``(n,)``.

    Raises:
        InvalidInput: If ``y`` is not a finite 2-D array.
    """
    y = _points(y, "y")
    index = np.arange(y.shape[0])
    points = y
    i = 0
    while i < points.shape[0]:
        # Drop every row that row i weakly dominates (its later duplicates included): rows
        # are visited in order, so the first of identical rows is the one that survives.
        keep = np.any(points > points[i], axis=1)
        keep[i] = True
        index, points = index[keep], points[keep]
        i = int(np.count_nonzero(keep[:i])) + 1
    mask = np.zeros(y.shape[0], dtype=bool)
    mask[index] = True
    return mask


def hypervolume(y: FloatArray, ref: FloatArray) -> float:
    """The volume dominated by ``y`` and bounded below by ``ref`` (exact).

    Only rows better than ``ref`` in every objective count. Two objectives are swept in
    ``O(n log n)``; more are sliced along the last objective, each slice a hypervolume in
    one dimension fewer (HSO), which for three objectives costs ``O(k^2 log k)`` for ``k``
    front points.

    Args:
        y: Objective values, shape ``(n, m)``.
        ref: Reference point, shape ``(m,)``.

    Returns:
        The hypervolume, in the product of the objectives' units.

    Raises:
        InvalidInput: If the shapes do not match or a value is not finite.
    """
    y = _points(y, "y")
    ref = _reference(ref, y.shape[1])
    front = y[np.all(y > ref, axis=1)]
    front = front[pareto_mask(front)]
    return float(_hypervolume(front - ref))


def default_reference_point(y: FloatArray) -> FloatArray:
    """A reference point for when the user gives none: just below the Pareto front.

    Each objective takes the nadir of the front (its worst value over the Pareto points)
    minus 10% of the front's range in that objective, so every Pareto point, including
    the extreme ones, adds hypervolume. Where the range is 0 (one Pareto point, or all
    equal in that objective) it is replaced by ``|value|``, or by ``1.0`` if the value is
    0: a single point ``(2, 0)`` gives ``(1.8, -0.1)``. This is the heuristic of Ax and
    BoTorch (``infer_reference_point``, after Ishibuchi et al. 2011), which floor a zero
    range at ``1e-7`` instead.

    Args:
        y: Objective values, shape ``(n, m)`` with ``n >= 1``; dominated rows are ignored.

    Returns:
        The reference point, shape ``(m,)``.

    Raises:
        InvalidInput: If ``y`` is empty or not a finite 2-D array.
    """
    y = _points(y, "y")
    if y.shape[0] == 0:
        raise InvalidInput("y", "no point to place a reference point below", "give a ref")
    front = y[pareto_mask(y)]
    nadir = front.min(axis=0)
    span = front.max(axis=0) - nadir
    span = np.where(span > 0.0, span, np.abs(nadir))
    span = np.where(span > 0.0, span, 1.0)
    ref: FloatArray = nadir - _MARGIN * span
    return ref


def non_dominated_boxes(front: FloatArray, ref: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Disjoint boxes that tile the region above ``ref`` that ``front`` does not dominate.

    The first ``m - 1`` objectives are cut at the sorted values of the front (and at
    ``ref``), making a grid of columns; in each column the non-dominated part is one
    interval of the last objective, from the highest front point that dominates the
    column up to ``+inf``. Adjacent columns along objective ``m - 2`` with the same lower
    bound are merged. With ``k`` Pareto points above ``ref`` this gives exactly ``k + 1``
    vertical strips for ``m = 2``, at most ``(k + 1)^2`` boxes for ``m = 3`` (usually far
    fewer after merging) and at most ``(k + 1)^(m - 1)`` in general, built in time and
    memory of that order.

    Args:
        front: Objective values, shape ``(k, m)``; rows not better than ``ref`` in every
            objective and dominated rows are ignored.
        ref: Reference point, shape ``(m,)``.

    Returns:
        ``(lower, upper)``, each of shape ``(c, m)``: box ``b`` is the product of the
        intervals ``[lower[b, j], upper[b, j]]``. Lower bounds are finite; upper bounds may
        be ``+inf`` (the last objective's always is).

    Raises:
        InvalidInput: If the shapes do not match or a value is not finite.
    """
    front = _points(front, "front")
    m = front.shape[1]
    ref = _reference(ref, m)
    pts = front[np.all(front > ref, axis=1)]
    pts = pts[pareto_mask(pts)]
    if m == 1:
        top = max(float(ref[0]), float(pts[:, 0].max(initial=-np.inf)))
        return np.array([[top]]), np.array([[np.inf]])
    # Along each of the first m - 1 objectives, cell c is [edges[c], edges[c + 1]], and a
    # point whose value is the r-th smallest (from 0) reaches above the cells c <= r.
    edges, ranks = [], []
    for j in range(m - 1):
        values, rank = np.unique(pts[:, j], return_inverse=True)
        edges.append(np.concatenate([ref[j : j + 1], values, [np.inf]]))
        ranks.append(rank.reshape(-1))
    height = np.full(tuple(e.size - 1 for e in edges), ref[-1])
    np.maximum.at(height, tuple(ranks), pts[:, -1])
    for axis in range(m - 1):
        # A column is dominated up to the best point reaching above it on every axis.
        height = np.flip(np.maximum.accumulate(np.flip(height, axis), axis=axis), axis)
    return _merged_columns(height, edges)


def _merged_columns(height: FloatArray, edges: list[FloatArray]) -> tuple[FloatArray, FloatArray]:
    """One box per run of equal heights along the last grid axis."""
    rows = height.reshape(-1, height.shape[-1])
    n_rows, n_last = rows.shape
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = rows[:, 1:] != rows[:, :-1]
    flat = np.flatnonzero(starts)
    # Column 0 of every row starts a run, so the next start never lies past the row's end.
    length = np.diff(np.append(flat, n_rows * n_last))
    row, col = np.divmod(flat, n_last)
    m = len(edges) + 1
    lower = np.empty((flat.size, m))
    upper = np.empty((flat.size, m))
    outer = np.unravel_index(row, height.shape[:-1]) if m > 2 else ()
    for j, idx in enumerate(outer):
        lower[:, j] = edges[j][idx]
        upper[:, j] = edges[j][idx + 1]
    lower[:, m - 2] = edges[-1][col]
    upper[:, m - 2] = edges[-1][col + length]
    lower[:, m - 1] = rows[row, col]
    upper[:, m - 1] = np.inf
    return lower, upper


def _hypervolume(points: FloatArray) -> float:
    """Hypervolume of ``points`` (all coordinates ``> 0``) above the origin."""
    k, m = points.shape
    if k == 0:
        return 0.0
    if m == 1:
        return float(points[:, 0].max())
    if m == 2:
        order = np.argsort(-points[:, 0], kind="stable")
        x = points[order, 0]
        # Sweeping x downwards, each point adds a strip as tall as it raises the max of y.
        reach = np.maximum.accumulate(points[order, 1])
        return float(np.dot(x, np.diff(reach, prepend=0.0)))
    order = np.argsort(-points[:, -1], kind="stable")
    points = points[order]
    last = points[:, -1]
    thickness = last - np.append(last[1:], 0.0)
    total = 0.0
    for i in np.flatnonzero(thickness > 0.0):
        section = points[: i + 1, :-1]
        if m > 3:
            section = section[pareto_mask(section)]
        total += thickness[i] * _hypervolume(section)
    return total


def _points(y: FloatArray, field: str) -> FloatArray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] == 0:
        raise InvalidInput(field, f"must have shape (n, m) with m >= 1, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidInput(field, "has a value that is not finite", "drop or impute it")
    return y


def _reference(ref: FloatArray, m: int) -> FloatArray:
    ref = np.asarray(ref, dtype=np.float64)
    if ref.shape != (m,):
        raise InvalidInput("ref", f"must have shape ({m},), got {ref.shape}")
    if not np.all(np.isfinite(ref)):
        raise InvalidInput("ref", "has a value that is not finite")
    return ref
