"""Map a search space to the unit cube and back.

Every parameter owns one or more columns of the encoded vector, each in ``[0, 1]``:

- ``Real(low, high)``: one column, ``(v - low) / (high - low)``; with ``log=True`` the same on
  ``log v``.
- ``Int(low, high)``: one column, the same map on the widened interval
  ``[low - 0.5, high + 0.5]`` so that every integer owns an equally wide bin (on the log
  scale with ``log=True``). Decoding rounds to the nearest integer.
- ``Choice(values)``: one column per value, one-hot. Decoding takes the argmax of the block.

Besides encoded points, planners draw *uniform* points: one number in ``[0, 1)`` per
parameter (not per column), mapped by :meth:`Encoder.from_uniform`. A ``Choice`` then takes
value ``floor(u * k)``, so low-discrepancy sequences stay stratified over the labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from genesis_platform.planning.protocols import Params, ParamValue
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

__all__ = ["Encoder", "PointKey", "point_key"]

FloatArray = NDArray[np.float64]

PointKey = tuple[ParamValue, ...]
"""A hashable identity of a point: its values in the space's order."""


def point_key(space: Space, point: Params) -> PointKey:
    """The values of ``point`` in the order of ``space`` (for exact duplicate checks)."""
    return tuple(point[name] for name in space)


@dataclass(frozen=True)
class _Scale:
    """A linear or log map from ``[lo, hi]`` onto ``[0, 1]``."""

    lo: float
    hi: float
    log: bool

    def to_unit(self, value: FloatArray) -> FloatArray:
        if self.log:
            return (np.log(value) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def from_unit(self, unit: FloatArray) -> FloatArray:
        if self.log:
            return np.exp(math.log(self.lo) + unit * (math.log(self.hi) - math.log(self.lo)))
        return self.lo + unit * (self.hi - self.lo)


def _scale_of(spec: Real | Int) -> _Scale:
    if isinstance(spec, Int):
        return _Scale(spec.low - 0.5, spec.high + 0.5, spec.log)
    return _Scale(float(spec.low), float(spec.high), spec.log)


class Encoder:
    """Encodes points of a :class:`Space` as vectors in the unit cube ``[0, 1]^dim``.

    Args:
        space: The search space.

    Attributes:
        space: The search space.
        dim: Number of encoded columns.
        columns: For each parameter (space order), the slice of its columns.
        categorical_blocks: ``(start, stop)`` column ranges of the one-hot blocks.
        integer_columns: Columns of ``Int`` parameters.
        continuous_columns: Columns of ``Real`` and ``Int`` parameters (not one-hot).
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self.columns: list[slice] = []
        self.categorical_blocks: list[tuple[int, int]] = []
        integer: list[int] = []
        continuous: list[int] = []
        self._scales: dict[int, _Scale] = {}
        col = 0
        for spec in space.values():
            width = len(spec.values) if isinstance(spec, Choice) else 1
            self.columns.append(slice(col, col + width))
            if isinstance(spec, Choice):
                self.categorical_blocks.append((col, col + width))
            else:
                self._scales[col] = _scale_of(spec)
                continuous.append(col)
                if isinstance(spec, Int):
                    integer.append(col)
            col += width
        self.dim = col
        self.integer_columns = np.array(integer, dtype=np.intp)
        self.continuous_columns = np.array(continuous, dtype=np.intp)

    @property
    def n_params(self) -> int:
        """Number of parameters (the width of a uniform point)."""
        return len(self.space)

    def scale(self, col: int) -> _Scale:
        """The map between the values of the numeric parameter at column ``col`` and [0, 1]."""
        return self._scales[col]

    def encode(self, points: Sequence[Params]) -> FloatArray:
        """Encode valid points. Returns an array of shape ``(len(points), dim)``."""
        out = np.zeros((len(points), self.dim))
        for (name, spec), cols in zip(self.space.items(), self.columns, strict=True):
            if isinstance(spec, Choice):
                index = [spec.values.index(p[name]) for p in points]
                out[np.arange(len(points)), cols.start + np.array(index, dtype=np.intp)] = 1.0
            else:
                values = np.array([float(p[name]) for p in points])
                out[:, cols.start] = self._scales[cols.start].to_unit(values)
        return out

    def decode(self, x: FloatArray) -> list[dict[str, ParamValue]]:
        """Decode encoded rows (shape ``(m, dim)``) to valid points (ints rounded, argmax)."""
        x = np.atleast_2d(x)
        per_param = [self._decode_column(spec, cols, x) for spec, cols in self._items()]
        names = list(self.space)
        return [dict(zip(names, row, strict=True)) for row in zip(*per_param, strict=True)]

    def snap(self, x: FloatArray) -> FloatArray:
        """Round encoded rows (shape ``(m, dim)``) to the encodings of valid points.

        Integer columns move to their integer's encoding and one-hot blocks to the one-hot
        of their argmax; real columns are clipped to ``[0, 1]``. Returns a new array.
        """
        out = np.clip(np.array(x, dtype=np.float64, ndmin=2), 0.0, 1.0)
        for col in self.integer_columns:
            scale = self._scales[int(col)]
            out[:, col] = scale.to_unit(self._round_int(scale, out[:, col]))
        for start, stop in self.categorical_blocks:
            out[:, start:stop] = _one_hot(np.argmax(out[:, start:stop], axis=1), stop - start)
        return out

    def from_uniform(self, u: FloatArray) -> FloatArray:
        """Map uniform rows (shape ``(m, n_params)``, values in ``[0, 1)``) to snapped encodings.

        Returns:
            Shape ``(m, dim)``: uniformly distributed valid points of the space.
        """
        u = np.atleast_2d(u)
        out = np.zeros((u.shape[0], self.dim))
        for j, (spec, cols) in enumerate(self._items()):
            if isinstance(spec, Choice):
                k = len(spec.values)
                index = np.minimum((u[:, j] * k).astype(np.intp), k - 1)
                out[:, cols] = _one_hot(index, k)
            else:
                out[:, cols.start] = u[:, j]
        return self.snap(out)

    def size(self) -> int | None:
        """Number of distinct points, or None when the space has a ``Real`` parameter."""
        total = 1
        for spec in self.space.values():
            if isinstance(spec, Real):
                return None
            total *= len(spec.values) if isinstance(spec, Choice) else spec.high - spec.low + 1
        return total

    def enumerate(self) -> FloatArray:
        """Every point of a finite space, encoded. Shape ``(size(), dim)``.

        Raises:
            ValueError: if the space has a ``Real`` parameter.
        """
        if self.size() is None:
            raise ValueError("a space with a Real parameter cannot be enumerated")
        axes: list[list[FloatArray]] = []
        for spec, cols in self._items():
            axes.append(list(self._enumerate_param(spec, cols)))
        rows = [np.concatenate(combo) for combo in itertools.product(*axes)]
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.dim)

    def categorical_combinations(self) -> int:
        """Number of combinations of the ``Choice`` parameters (1 when there are none)."""
        return math.prod(stop - start for start, stop in self.categorical_blocks)

    def enumerate_categorical(self) -> FloatArray:
        """Every combination of the one-hot blocks. Shape ``(combinations, n_categorical_cols)``.

        Columns are those of the categorical blocks, in order.
        """
        blocks = [np.eye(stop - start) for start, stop in self.categorical_blocks]
        rows = [np.concatenate(combo) for combo in itertools.product(*blocks)]
        width = sum(stop - start for start, stop in self.categorical_blocks)
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)

    def categorical_columns(self) -> NDArray[np.intp]:
        """Columns of the one-hot blocks, in order."""
        cols = [c for start, stop in self.categorical_blocks for c in range(start, stop)]
        return np.array(cols, dtype=np.intp)

    def _items(self) -> Iterator[tuple[Parameter, slice]]:
        return zip(self.space.values(), self.columns, strict=True)

    def _decode_column(self, spec: Parameter, cols: slice, x: FloatArray) -> list[ParamValue]:
        if isinstance(spec, Choice):
            return [spec.values[i] for i in np.argmax(x[:, cols], axis=1)]
        scale = self._scales[cols.start]
        unit = np.clip(x[:, cols.start], 0.0, 1.0)
        if isinstance(spec, Int):
            return [int(v) for v in self._round_int(scale, unit)]
        values = np.clip(scale.from_unit(unit), spec.low, spec.high)
        return [float(v) for v in values]

    def _enumerate_param(self, spec: Parameter, cols: slice) -> Iterator[FloatArray]:
        if isinstance(spec, Choice):
            yield from np.eye(len(spec.values))
        elif isinstance(spec, Int):
            scale = self._scales[cols.start]
            for value in range(spec.low, spec.high + 1):
                yield scale.to_unit(np.array([float(value)]))

    @staticmethod
    def _round_int(scale: _Scale, unit: FloatArray) -> FloatArray:
        low, high = scale.lo + 0.5, scale.hi - 0.5
        return np.clip(np.round(scale.from_unit(unit)), low, high)


def _one_hot(index: NDArray[np.intp], k: int) -> FloatArray:
    out = np.zeros((index.shape[0], k))
    out[np.arange(index.shape[0]), index] = 1.0
    return out
