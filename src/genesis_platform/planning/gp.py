"""Bayesian optimization with a Gaussian process and log expected improvement (NumPy/SciPy).

Modelling choices (measured in ``PLANNER-NOTES.md``; BoTorch's defaults where not said):

- **Inputs** are encoded to the unit cube (:mod:`~genesis_platform.planning.encoding`):
  reals and integers linearly or on a log scale, choices one-hot.
- **Outputs**: a minimized objective is negated; the bad tail is winsorized at Tukey's lower
  fence (``Q1 - 1.5 IQR``) so a few disastrous trials do not flatten the model; then the
  values are standardized.
- **Model**: constant mean (estimated by generalized least squares, i.e. profiled out of
  the likelihood) plus a Matérn-5/2 kernel with one lengthscale per encoded column, an
  outputscale and a learned Gaussian noise variance bounded below by ``noise_floor``.
- **Hyperparameters**: maximum a posteriori. Lengthscales have BoTorch's current
  dimension-scaled log-normal prior (``mu = sqrt(2) + log(d)/2``, ``sigma = sqrt(3)``, mode
  growing with ``sqrt(d)``), noise the log-normal ``(-4, 1)``, the log outputscale a unit
  normal. L-BFGS-B with analytic gradients, from the previous fit and from the prior modes
  (a warm start alone can linger in a poor mode; beyond 64 observations the second start
  is used at every 8th fit only). The warm start is part of
  :meth:`GaussianProcessPlanner.state_dict`, so a resumed planner fits exactly as the
  original would have.
- **Acquisition**: analytic log expected improvement (Ament et al., 2023), whose
  incumbent is the best *posterior mean* at the observed points (not the best noisy
  observation). It is maximized by scoring a randomly shifted Sobol' set plus Gaussian
  perturbations of the five best points, then running L-BFGS-B (analytic gradients, all
  starts in one call) from the best of both.
- **Mixed spaces**: integers are relaxed to the continuum and rounded. With at most
  ``max_enumerated`` combinations of the choice parameters, every combination is kept
  exact and only the continuous part is optimized (each combination gets a start);
  otherwise the one-hot columns are relaxed and rounded by argmax. Finite spaces with at
  most ``n_candidates`` points are scored exhaustively.
- **Batches and pending points**: kriging believer. Each pending point, and each point
  already chosen in the batch, is added to the model with its posterior mean as a fantasy
  observation (same hyperparameters), and the incumbent rises to the best fantasy. This
  collapses the uncertainty, hence the expected improvement, around points that are
  running, so the next choice goes elsewhere. It is chosen over local penalization
  because it needs no Lipschitz constant, reuses the exact acquisition, handles
  categorical columns without a distance and costs one small Cholesky per point.
- **Initial design**: Sobol' points (the same sequence as ``SobolPlanner``) until
  ``n_initial`` successful observations are in or pending, and whenever fewer than two
  successful observations exist.
- **Failures**: a failed observation (or a non-finite value) is not data, but its point is
  never proposed again; neither is an observed or pending point.
- **Threads**: all linear algebra runs under ``threadpool_limits(1)``: for matrices of this
  size a second BLAS thread only adds overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._acquisition import AcquisitionOptimizer
from genesis_platform.planning._base import BasePlanner, finite_or_none, uniform_points
from genesis_platform.planning._gp_model import (
    Hyperparameters,
    OutputTransform,
    Posterior,
    default_hyperparameters,
    fit_hyperparameters,
)
from genesis_platform.planning.encoding import Encoder, FloatArray, PointKey, point_key
from genesis_platform.planning.protocols import Direction, Observation, Params, ParamValue
from genesis_platform.planning.sobol import SobolSequence
from genesis_platform.planning.space import Space

__all__ = ["GaussianProcessPlanner", "GaussianProcessSurrogate"]

_N_INCUMBENTS = 5
"""Best observed points around which local candidates are drawn."""

_ALWAYS_RESTART = 64
_RESTART_EVERY = 8
"""Up to ``_ALWAYS_RESTART`` observations every fit also starts from the prior mode; beyond,
every ``_RESTART_EVERY``-th."""


class GaussianProcessSurrogate:
    """A fitted GP of one objective, in the objective's own units.

    Args:
        space: The search space.
        objective: Objective name.
        direction: ``"max"`` or ``"min"``.
        hyperparameters: Kernel hyperparameters (standardized units).
        inputs: Training points (successful observations), in order.
        outputs: Their objective values, shape ``(n,)``.
    """

    kind = "gp"

    def __init__(
        self,
        space: Space,
        objective: str,
        direction: Direction,
        hyperparameters: Hyperparameters,
        inputs: Sequence[Params],
        outputs: Sequence[float],
    ) -> None:
        self.space = space
        self.objective = objective
        self.direction = direction
        self.hyperparameters = hyperparameters
        self.inputs = [space.validate(p, where=f"inputs[{i}]") for i, p in enumerate(inputs)]
        self.outputs = [float(v) for v in outputs]
        self._encoder = Encoder(space)
        y = np.array(self.outputs)
        self._transform = OutputTransform.fit(y, 1.0 if direction == "max" else -1.0)
        with threadpool_limits(1):
            self._posterior = Posterior(
                self._encoder.encode(self.inputs), self._transform.forward(y), hyperparameters
            )

    def predict(self, points: Sequence[Params]) -> tuple[list[float], list[float]]:
        """Posterior mean and standard deviation of the latent objective at ``points``.

        Returns:
            ``(mean, std)``, each a list of ``len(points)`` floats in the objective's units.
            Values below the winsorizing fence are modelled at the fence.
        """
        checked = [self.space.validate(p, where=f"points[{i}]") for i, p in enumerate(points)]
        if not checked:
            return [], []
        with threadpool_limits(1):
            mean, var = self._posterior.predict(self._encoder.encode(checked))
        own_mean = self._transform.mean_back(mean)
        own_std = np.sqrt(var) * self._transform.scale
        return [float(v) for v in own_mean], [float(v) for v in own_std]

    def to_json(self) -> dict[str, Any]:
        """Everything :meth:`from_json` needs, as JSON-serializable data."""
        return {
            "kind": self.kind,
            "format": 1,
            "objective": {"name": self.objective, "direction": self.direction},
            "space": self.space.to_dict(),
            "hyperparameters": self.hyperparameters.to_json(),
            "inputs": [dict(p) for p in self.inputs],
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GaussianProcessSurrogate:
        """Rebuild from :meth:`to_json` output.

        Raises:
            InvalidInput: naming the missing or malformed key.
        """
        try:
            objective = data["objective"]
            direction = objective["direction"]
            if direction not in ("max", "min"):
                raise InvalidInput("surrogate.objective.direction", f"bad value {direction!r}")
            return cls(
                space=Space.from_dict(data["space"]),
                objective=str(objective["name"]),
                direction="max" if direction == "max" else "min",
                hyperparameters=Hyperparameters.from_json(dict(data["hyperparameters"])),
                inputs=list(data["inputs"]),
                outputs=list(data["outputs"]),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(
                "surrogate", f"not a gp surrogate description: {exc!r}", "pass to_json() output"
            ) from exc


@dataclass(frozen=True)
class _Fit:
    transform: OutputTransform
    hyper: Hyperparameters
    posterior: Posterior


class GaussianProcessPlanner(BasePlanner):
    """Bayesian optimization of one objective with a GP and log expected improvement.

    See the module docstring for the modelling choices.

    Args:
        space: The search space (real, integer and choice parameters).
        objectives: Exactly one objective name with ``"max"`` or ``"min"``.
        seed: Seed; one ``ask`` draws from ``default_rng([seed, n_asked])``.
        n_initial: Sobol' points before the GP takes over; default
            ``min(max(4, 2 * n_params), 20)``.
        n_candidates: Size of the space-filling candidate set scored per proposal.
        n_starts: L-BFGS-B starts of the acquisition optimization.
        max_enumerated: Up to this many combinations of the choice parameters are each
            optimized exactly; beyond it the one-hot columns are relaxed and rounded.
        noise_floor: Smallest noise variance, in standardized output units.

    Raises:
        InvalidInput: for several objectives or a bad option (the field is the option name).
    """

    kind = "gp"

    def __init__(
        self,
        space: Space,
        objectives: Mapping[str, str],
        *,
        seed: int = 0,
        n_initial: int | None = None,
        n_candidates: int = 1024,
        n_starts: int = 8,
        max_enumerated: int = 16,
        noise_floor: float = 1e-6,
    ) -> None:
        super().__init__(space, objectives, seed=seed)
        if len(self.objectives) != 1:
            raise InvalidInput(
                "objectives",
                "the gp planner supports one objective in this version",
                "use planner random or sobol for several objectives",
            )
        self.objective, self.direction = next(iter(self.objectives.items()))
        default_initial = min(max(4, 2 * len(space)), 20)
        self.n_initial = _count("n_initial", default_initial if n_initial is None else n_initial, 0)
        self.n_candidates = _count("n_candidates", n_candidates, 16)
        self.n_starts = _count("n_starts", n_starts, 1)
        self.max_enumerated = _count("max_enumerated", max_enumerated, 0)
        if not isinstance(noise_floor, float | int) or not 0.0 < float(noise_floor) < 1.0:
            raise InvalidInput("noise_floor", f"must be in (0, 1), got {noise_floor!r}", "1e-6")
        self.noise_floor = float(noise_floor)
        self.n_sobol = 0
        self._warm: Hyperparameters | None = None
        self._x_rows: list[FloatArray] = []
        self._y: list[float] = []
        self._good: list[dict[str, ParamValue]] = []
        self._cache: tuple[tuple[Any, ...], _Fit] | None = None
        self._sequence: SobolSequence | None = None
        self._optimizer: AcquisitionOptimizer | None = None

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "seed", "n_asked", "n_sobol", "hyperparameters"}``.

        ``hyperparameters`` is the warm start of the next fit (None before the first).
        """
        warm = None if self._warm is None else self._warm.to_json()
        return {**super().state_dict(), "n_sobol": self.n_sobol, "hyperparameters": warm}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (before telling the observations again)."""
        super().load_state_dict(state)
        n_sobol = state.get("n_sobol", self.n_sobol)
        if not isinstance(n_sobol, int) or isinstance(n_sobol, bool) or n_sobol < 0:
            raise InvalidInput("state.n_sobol", f"must be a non-negative integer, got {n_sobol!r}")
        self.n_sobol = n_sobol
        if "hyperparameters" in state:
            self._warm = self._load_warm(state["hyperparameters"])
        self._cache = None
        self._sequence = None
        self._optimizer = None

    def _load_warm(self, data: Any) -> Hyperparameters | None:
        if data is None:
            return None
        try:
            warm = Hyperparameters.from_json(dict(data))
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise InvalidInput("state.hyperparameters", f"malformed: {exc!r}") from exc
        if len(warm.lengthscales) != self.encoder.dim:
            raise InvalidInput(
                "state.hyperparameters.lengthscales",
                f"expected {self.encoder.dim} values, got {len(warm.lengthscales)}",
                "the state belongs to another search space",
            )
        return warm

    # -- observations ------------------------------------------------------------------------

    def _check_observation(self, index: int, obs: Observation) -> Observation:
        checked = super()._check_observation(index, obs)
        if checked.failed:
            return checked
        if self.objective not in checked.values:
            raise InvalidInput(
                f"observations[{index}].values.{self.objective}",
                "missing from a successful observation",
                "report the objective or mark the observation failed",
            )
        if finite_or_none(checked.values, self.objective) is None:
            return Observation(params=checked.params, values=checked.values, failed=True)
        return checked

    def _after_tell(self, observations: list[Observation]) -> None:
        good = [o for o in observations if not o.failed]
        if not good:
            return
        params = [dict(o.params) for o in good]
        x = self.encoder.encode(params)
        for row, p, o in zip(x, params, good, strict=True):
            self._x_rows.append(row)
            self._good.append(p)
            self._y.append(float(o.values[self.objective]))

    # -- model -------------------------------------------------------------------------------

    def surrogate(self) -> GaussianProcessSurrogate | None:
        """The GP fitted to the successful observations; None before two of them."""
        if len(self._y) < 2:
            return None
        with threadpool_limits(1):
            fit = self._fit()
        return GaussianProcessSurrogate(
            self.space, self.objective, self.direction, fit.hyper, self._good, self._y
        )

    def _fit(self) -> _Fit:
        """Fit on the current data from the warm start (a pure function of both, cached)."""
        warm = None if self._warm is None else tuple(self._warm.to_vector())
        key = (len(self._y), warm)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        x = np.array(self._x_rows)
        y_raw = np.array(self._y)
        transform = OutputTransform.fit(y_raw, 1.0 if self.direction == "max" else -1.0)
        y = transform.forward(y_raw)
        # A warm start alone can linger in a poor mode, so the prior mode is a second start;
        # with much data (where each start costs more and the fit moves less) only sometimes.
        n = len(self._y)
        starts = [default_hyperparameters(self.encoder.dim)]
        if self._warm is not None:
            restart = n <= _ALWAYS_RESTART or n % _RESTART_EVERY == 0
            starts = [self._warm, *starts] if restart else [self._warm]
        hyper = fit_hyperparameters(x, y, starts=starts, noise_floor=self.noise_floor)
        fit = _Fit(transform, hyper, Posterior(x, y, hyper))
        self._cache = (key, fit)
        return fit

    # -- proposals ---------------------------------------------------------------------------

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        excluded = self._excluded(pending)
        n_good = len(self._y)
        n_init = n if n_good < 2 else min(n, max(0, self.n_initial - n_good - len(pending)))
        points = [self._fill_randomly(self._next_sobol, excluded, rng) for _ in range(n_init)]
        if n_init < n:
            with threadpool_limits(1):
                points += self._bayes_batch(n - n_init, [*pending, *points], excluded, rng)
        return points

    def _next_sobol(self) -> dict[str, ParamValue]:
        if self._sequence is None:
            self._sequence = SobolSequence(self.encoder.n_params, self.seed)
        u = self._sequence.take(self.n_sobol, 1)
        self.n_sobol += 1
        return uniform_points(self.encoder, u)[0]

    def _acquisition_optimizer(self) -> AcquisitionOptimizer:
        if self._optimizer is None:
            base = SobolSequence(self.encoder.n_params, self.seed, stream=1)
            self._optimizer = AcquisitionOptimizer(
                self.encoder,
                base.take(0, self.n_candidates),
                n_starts=self.n_starts,
                max_enumerated=self.max_enumerated,
                n_local=max(16, self.n_candidates // 4),
            )
        return self._optimizer

    def _bayes_batch(
        self,
        k: int,
        pending: list[dict[str, ParamValue]],
        excluded: set[PointKey],
        rng: np.random.Generator,
    ) -> list[dict[str, ParamValue]]:
        """``k`` points by kriging believer, conditioned on ``pending`` fantasies."""
        fit = self._fit()
        self._warm = fit.hyper
        model = fit.posterior
        observed_mean, _ = model.predict(model.x)
        best = float(np.max(observed_mean))
        order = np.argsort(-observed_mean, kind="stable")[:_N_INCUMBENTS]
        incumbents = model.x[order]
        if pending:
            model, best = _believe(model, self.encoder.encode(pending), best)
        optimizer = self._acquisition_optimizer()
        points: list[dict[str, ParamValue]] = []
        for i in range(k):
            ranked = optimizer.ranked(model, best, incumbents, rng)
            point = self._first_unseen(ranked, excluded)
            if point is None:
                point = self._fill_randomly(self._uniform_draw(rng), excluded, rng)
            points.append(point)
            if i + 1 < k:
                model, best = _believe(model, self.encoder.encode([point]), best)
        return points

    def _first_unseen(
        self, ranked: FloatArray, excluded: set[PointKey]
    ) -> dict[str, ParamValue] | None:
        for row in ranked:
            point = self.encoder.decode(row[None, :])[0]
            key = point_key(self.space, point)
            if key not in excluded:
                excluded.add(key)
                return point
        return None

    def _uniform_draw(self, rng: np.random.Generator) -> Callable[[], dict[str, ParamValue]]:
        def draw() -> dict[str, ParamValue]:
            return uniform_points(self.encoder, rng.random((1, self.encoder.n_params)))[0]

        return draw


def _believe(model: Posterior, x: FloatArray, best: float) -> tuple[Posterior, float]:
    """Kriging believer: condition on fantasies equal to the posterior mean at ``x`` (m, d).

    Returns:
        The conditioned model and the incumbent raised to the best fantasy, since a
        believed value counts as observed (else EI stays high next to a good fantasy).
    """
    mean, _ = model.predict(x)
    return model.condition_on(x, mean), max(best, float(np.max(mean)))


def _count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidInput(name, f"must be an integer >= {minimum}, got {value!r}")
    return value
