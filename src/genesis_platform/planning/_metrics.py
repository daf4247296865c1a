"""One Gaussian process per modelled metric (each objective, each constrained outcome).

A :class:`MetricModel` keeps a metric's training values, fits its output transform and MAP
hyperparameters (warm-started from the previous fit, with the prior mode as a second
start), and caches the fit until new data arrives or the warm start changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._gp_model import (
    Hyperparameters,
    OutputTransform,
    Posterior,
    default_hyperparameters,
    fit_hyperparameters,
)
from genesis_platform.planning.encoding import FloatArray

__all__ = ["MetricFit", "MetricModel"]

_ALWAYS_RESTART = 64
_RESTART_EVERY = 8
"""Up to ``_ALWAYS_RESTART`` observations every fit also starts from the prior mode; beyond,
every ``_RESTART_EVERY``-th."""


@dataclass(frozen=True)
class MetricFit:
    """A fitted metric: transform to standardized units, hyperparameters, posterior."""

    transform: OutputTransform
    hyper: Hyperparameters
    posterior: Posterior


@dataclass
class MetricModel:
    """Training data and fit of one metric.

    Args:
        name: Metric name.
        sign: ``+1`` when higher is better (or for a constraint metric), ``-1`` otherwise.
        dim: Encoded input dimension.
        noise_floor: Smallest noise variance (standardized units).
        winsorize: Raise the bad tail to Tukey's fence before standardizing.
        log: Log-transform: True, False, or None for automatic (positive and skewed).
    """

    name: str
    sign: float
    dim: int
    noise_floor: float
    winsorize: bool = True
    log: bool | None = False
    x_rows: list[FloatArray] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    warm: Hyperparameters | None = None
    _cache: tuple[tuple[Any, ...], MetricFit] | None = None

    def add(self, x: FloatArray, value: float) -> None:
        """Add one encoded input (shape ``(dim,)``) and its raw value."""
        self.x_rows.append(x)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def fit(self) -> MetricFit:
        """Fit on the current data from the warm start (a pure function of both, cached)."""
        warm = None if self.warm is None else tuple(self.warm.to_vector())
        key = (len(self.values), warm)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        x = np.array(self.x_rows)
        raw = np.array(self.values)
        transform = OutputTransform.fit(raw, self.sign, winsorize=self.winsorize, log=self.log)
        y = transform.forward(raw)
        n = len(self.values)
        # A warm start alone can linger in a poor mode, so the prior mode is a second start;
        # with much data (where each start costs more and the fit moves less) only sometimes.
        starts = [default_hyperparameters(self.dim)]
        if self.warm is not None:
            restart = n <= _ALWAYS_RESTART or n % _RESTART_EVERY == 0
            starts = [self.warm, *starts] if restart else [self.warm]
        hyper = fit_hyperparameters(x, y, starts=starts, noise_floor=self.noise_floor)
        fit = MetricFit(transform, hyper, Posterior(x, y, hyper))
        self._cache = (key, fit)
        return fit

    def load_warm(self, data: Any, field_name: str) -> None:
        """Restore the warm start from its JSON form (None clears it).

        Raises:
            InvalidInput: on ``field_name`` when malformed or for another dimension.
        """
        self._cache = None
        if data is None:
            self.warm = None
            return
        try:
            warm = Hyperparameters.from_json(dict(data))
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise InvalidInput(field_name, f"malformed: {exc!r}") from exc
        if len(warm.lengthscales) != self.dim:
            raise InvalidInput(
                f"{field_name}.lengthscales",
                f"expected {self.dim} values, got {len(warm.lengthscales)}",
                "the state belongs to another search space",
            )
        self.warm = warm
