"""Bayesian optimization with Gaussian processes (NumPy/SciPy, no PyTorch).

Modelling choices (measured in ``PLANNER-NOTES.md``; BoTorch's defaults where not said):

- **Inputs** are encoded to the unit cube (:mod:`~genesis_platform.planning.encoding`):
  reals and integers linearly or on a log scale, choices one-hot.
- **Outputs**: positive values with a long high tail (skewness above 1) are modelled on a
  log scale (``output_transform``); a minimized objective is negated; the bad tail is
  winsorized at Tukey's lower fence (``Q1 - 1.5 IQR``) so a few disastrous trials do not
  flatten the model; then the values are standardized. Every objective and every
  outcome-constrained metric gets its own GP (several objectives and constrained metrics
  are standardized only, so bounds and reference points keep their meaning).
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
- **Acquisition** (:mod:`~genesis_platform.planning._acquisition`): analytic log expected
  improvement (Ament et al., 2023), whose incumbent is the best *posterior mean* at the
  observed points (not the best noisy observation); its noisy form averages EI over
  incumbents drawn from the joint posterior at the observed points, used when the fitted
  noise exceeds 5% of the output scale; upper confidence bound on request; Thompson
  sampling (joint draws over the 512 most promising candidates) for batches of 8 or more,
  once an observation meets the outcome constraints.
  Outcome constraints multiply in the probability that every bound holds (Gardner et al.,
  2014); before any feasible observation, LogEI measures improvement from the lowest
  plausible objective value (the smallest ``mean - 6 sd`` at the observed points, after
  BoTorch's infeasible cost), so the feasible region is sought where the objective is good
  rather than wherever feasibility is most certain. Several objectives use expected
  hypervolume improvement, exact for independent GPs
  (:mod:`~genesis_platform.planning._ehvi`), over the front of posterior means.
- **Optimization** (:mod:`~genesis_platform.planning._optimize`): score a randomly shifted
  Sobol' set plus Gaussian perturbations of the five best points (or of Pareto points),
  then one joint L-BFGS-B run (analytic gradients) from the best of both.
- **Parameter constraints** (:mod:`~genesis_platform.planning._feasible`): candidates are
  projected onto the linear constraints and filtered by the others; the local search
  switches to SLSQP with the constraints; rounded rows are checked again, so every
  proposal satisfies every constraint.
- **Several fidelities** (:mod:`~genesis_platform.planning.fidelity`): the fidelity is a
  one-hot input of the same GP; the point maximizes the acquisition at the target
  fidelity and the fidelity is chosen by augmented EI (correlation with the target,
  remaining uncertainty, cost ratio).
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
- **Initial design**: the centre of the space (as Ax does), then Sobol' points (the same
  sequence as ``SobolPlanner``) until ``n_initial`` successful observations are in or
  pending, and whenever fewer than two successful observations exist.
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
from genesis_platform.planning._acquisition import (
    Acquisition,
    LogEHVI,
    LogEI,
    LogNoisyEI,
    OutcomeBound,
    UpperConfidenceBound,
    WithFeasibility,
)
from genesis_platform.planning._base import (
    BasePlanner,
    check_count,
    uniform_points,
)
from genesis_platform.planning._gp_model import Hyperparameters, OutputTransform, Posterior
from genesis_platform.planning._metrics import MetricFit, MetricModel
from genesis_platform.planning._optimize import AcquisitionOptimizer
from genesis_platform.planning.encoding import Encoder, FloatArray, PointKey, point_key
from genesis_platform.planning.pareto import (
    default_reference_point,
    non_dominated_boxes,
    pareto_mask,
)
from genesis_platform.planning.protocols import Direction, Observation, Params, ParamValue
from genesis_platform.planning.sobol import SobolSequence
from genesis_platform.planning.space import Space

__all__ = [
    "ACQUISITIONS",
    "OUTPUT_TRANSFORMS",
    "GaussianProcessPlanner",
    "GaussianProcessSurrogate",
]


class GaussianProcessSurrogate:
    """A fitted GP of one objective, in the objective's own units.

    Args:
        space: The search space.
        objective: Objective name.
        direction: ``"max"`` or ``"min"``.
        hyperparameters: Kernel hyperparameters (standardized units).
        inputs: Training points (successful observations), in order.
        outputs: Their objective values, shape ``(n,)``.
        log: Whether the values are modelled on a log scale.
        winsorize: Whether the bad tail is raised to Tukey's fence (one objective).
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
        log: bool = False,
        winsorize: bool = True,
    ) -> None:
        self.space = space
        self.objective = objective
        self.direction = direction
        self.hyperparameters = hyperparameters
        self.inputs = [space.validate(p, where=f"inputs[{i}]") for i, p in enumerate(inputs)]
        self.outputs = [float(v) for v in outputs]
        self._encoder = Encoder(space)
        y = np.array(self.outputs)
        sign = 1.0 if direction == "max" else -1.0
        self._transform = OutputTransform.fit(y, sign, winsorize=winsorize, log=log)
        self.log = self._transform.log
        self.winsorize = winsorize
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
        own_std = self._transform.std_back(mean, np.sqrt(var))
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
            "log": self.log,
            "winsorize": self.winsorize,
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
                log=bool(data.get("log", False)),
                winsorize=bool(data.get("winsorize", True)),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(
                "surrogate", f"not a gp surrogate description: {exc!r}", "pass to_json() output"
            ) from exc


ACQUISITIONS = ("auto", "logei", "noisy-logei", "ucb", "thompson")
"""Values of the ``acquisition`` option."""

OUTPUT_TRANSFORMS = ("auto", "log", "none")
"""Values of the ``output_transform`` option."""

_N_INCUMBENTS = 5
"""Best observed points around which local candidates are drawn."""

_THOMPSON_BATCH = 8
"""With ``acquisition: auto``, batches of at least this many points use Thompson sampling."""

_THOMPSON_POOL = 512
"""Candidates (the best by an optimistic bound) over which Thompson draws are made jointly."""

_NOISY_SAMPLES = 16
"""Incumbent draws of the noisy LogEI."""

_NOISY_RATIO = 0.05
"""With ``acquisition: auto``, the noisy LogEI is used when the fitted noise variance
exceeds this fraction of the output scale."""

_MAX_OBJECTIVES = 3

_LOWEST_SDS = 6.0
"""Before any feasible observation, the incumbent is the smallest posterior mean minus this
many posterior standard deviations at the observed points."""


@dataclass(frozen=True)
class _Beliefs:
    """The models one batch is planned with, including fantasies of the points chosen.

    Standardized units, higher is better. ``best`` is the single-objective incumbent (None
    before a feasible observation); ``front`` the multi-objective Pareto points, ``(p, k)``.
    """

    objectives: tuple[Posterior, ...]
    bounds: tuple[OutcomeBound, ...]
    best: float | None
    front: FloatArray

    def believe(self, x: FloatArray, at_target: Callable[[FloatArray], FloatArray]) -> _Beliefs:
        """Kriging believer: condition every model on its posterior mean at ``x`` (m, d).

        A believed point counts as observed: it raises the incumbent (or joins the front)
        when its believed outcomes meet the constraints, else EI would stay high next to it.
        The incumbent is raised by the believed value at the target fidelity
        (``at_target(x)``; the identity without fidelities).
        """
        means = [m.predict(x)[0] for m in self.objectives]
        target_means = [m.predict(at_target(x))[0] for m in self.objectives]
        feasible = np.ones(x.shape[0], dtype=bool)
        bounds = []
        for b in self.bounds:
            mean, _ = b.model.predict(x)
            feasible &= b.sign * (mean - b.bound) >= 0.0
            bounds.append(OutcomeBound(b.model.condition_on(x, mean), b.bound, b.sign))
        objectives = tuple(
            m.condition_on(x, mean) for m, mean in zip(self.objectives, means, strict=True)
        )
        best, front = self.best, self.front
        if feasible.any():
            if len(means) == 1:
                top = float(np.max(target_means[0][feasible]))
                best = top if best is None else max(best, top)
            else:
                front = _pareto(np.vstack([front, np.stack(means, axis=1)[feasible]]))
        return _Beliefs(objectives, tuple(bounds), best, front)


class GaussianProcessPlanner(BasePlanner):
    """Bayesian optimization with Gaussian processes: one to three objectives, constraints.

    See the module docstring for the modelling choices.

    Args:
        space: The search space (real, integer and choice parameters, and constraints).
        objectives: One to three objective names with ``"max"`` or ``"min"``.
        seed: Seed; one ``ask`` draws from ``default_rng([seed, n_asked])``.
        n_initial: Sobol' points before the GP takes over; default
            ``min(max(4, 2 * n_params), 20)``.
        n_candidates: Size of the space-filling candidate set scored per proposal.
        n_starts: Local-search starts of the acquisition optimization.
        max_enumerated: Up to this many combinations of the choice parameters are each
            optimized exactly; beyond it the one-hot columns are relaxed and rounded.
        noise_floor: Smallest noise variance, in standardized output units.
        acquisition: ``auto`` (LogEI, its noisy form when the fitted noise is large, and
            Thompson sampling for batches of 8 or more), ``logei``, ``noisy-logei``,
            ``ucb`` or ``thompson`` (LogEI until an observation meets the outcome
            constraints). Several objectives always use expected hypervolume improvement.
        ucb_beta: Exploration weight of ``ucb``: ``mean + sqrt(beta) * std``. With outcome
            constraints, ``ucb`` adds ``log P(feasible)`` to this bound (a penalty, not a
            product); prefer the default LogEI there.
        output_transform: ``auto`` (logs of positive, skewed values), ``log`` or ``none``.
        outcome_constraints: Bounds on measured values, e.g. ``["purity >= 0.95"]``; each
            constrained metric gets its own GP and proposals maximize the acquisition
            times the probability that every bound holds.
        reference_point: With several objectives, the worst value of each objective that
            still counts (hypervolume is measured from it); by default the nadir of the
            observed Pareto front minus 10% of its range.
        fidelity: Several fidelities (one objective only):
            ``{"parameter": "fidelity", "costs": {"simulation": 1, "robot": 20},
            "target": "robot"}``; see :mod:`~genesis_platform.planning.fidelity`.

    Raises:
        InvalidInput: for a bad option (the field is the option name).
    """

    kind = "gp"
    requires_metrics = True

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
        acquisition: str = "auto",
        ucb_beta: float = 2.0,
        output_transform: str = "auto",
        outcome_constraints: Sequence[str] = (),
        reference_point: Mapping[str, float] | None = None,
        fidelity: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            outcome_constraints=outcome_constraints,
            reference_point=reference_point,
            fidelity=fidelity,
        )
        if self.fidelity is not None and len(self.objectives) > 1:
            raise InvalidInput(
                "fidelity", "several fidelities work with one objective", "keep one objective"
            )
        self._target_columns = self._fidelity_columns()
        if len(self.objectives) > _MAX_OBJECTIVES:
            raise InvalidInput(
                "objectives",
                f"the gp planner optimizes up to {_MAX_OBJECTIVES} objectives",
                "combine objectives, or use planner random or sobol",
            )
        default_initial = min(max(4, 2 * len(space)), 20)
        initial = default_initial if n_initial is None else n_initial
        self.n_initial = check_count("n_initial", initial, 0)
        self.n_candidates = check_count("n_candidates", n_candidates, 16)
        self.n_starts = check_count("n_starts", n_starts, 1)
        self.max_enumerated = check_count("max_enumerated", max_enumerated, 0)
        if not isinstance(noise_floor, float | int) or not 0.0 < float(noise_floor) < 1.0:
            raise InvalidInput("noise_floor", f"must be in (0, 1), got {noise_floor!r}", "1e-6")
        self.noise_floor = float(noise_floor)
        self.acquisition = _one_of("acquisition", acquisition, ACQUISITIONS)
        if (
            isinstance(ucb_beta, bool)
            or not isinstance(ucb_beta, float | int)
            or not 0.0 < float(ucb_beta) < 1e6
        ):
            raise InvalidInput("ucb_beta", f"must be a positive number, got {ucb_beta!r}", "2.0")
        self.ucb_beta = float(ucb_beta)
        self.output_transform = _one_of("output_transform", output_transform, OUTPUT_TRANSFORMS)
        self.n_sobol = 0
        several = len(self.objectives) > 1
        log = {"auto": None, "log": True, "none": False}[self.output_transform]
        self._objective_models = {
            name: MetricModel(
                name,
                1.0 if direction == "max" else -1.0,
                self.encoder.dim,
                self.noise_floor,
                winsorize=not several,
                log=False if several else log,
            )
            for name, direction in self.objectives.items()
        }
        self._constraint_models = {
            c.metric: MetricModel(c.metric, 1.0, self.encoder.dim, self.noise_floor, False)
            for c in self.outcome_constraints
        }
        self._good: list[dict[str, ParamValue]] = []
        self._feasible_obs: list[bool] = []
        self._sequence: SobolSequence | None = None
        self._optimizer: AcquisitionOptimizer | None = None
        self._reference: FloatArray | None = None

    def _fidelity_columns(self) -> dict[int, float]:
        """Encoded columns of the fidelity with their values at the target fidelity."""
        if self.fidelity is None:
            return {}
        block = self.encoder.columns[list(self.space).index(self.fidelity.parameter)]
        target = block.start + list(self.fidelity.costs).index(self.fidelity.target)
        return {col: float(col == target) for col in range(block.start, block.stop)}

    def _at_target(self, x: FloatArray) -> FloatArray:
        """Encoded rows with their fidelity set to the target fidelity."""
        if not self._target_columns:
            return x
        out = x.copy()
        for col, value in self._target_columns.items():
            out[:, col] = value
        return out

    @property
    def objective(self) -> str:
        """The first objective (the one :meth:`surrogate` models)."""
        return next(iter(self.objectives))

    @property
    def direction(self) -> Direction:
        """Direction of the first objective."""
        return self.objectives[self.objective]

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "seed", "n_asked", "n_sobol", "hyperparameters"}``.

        ``hyperparameters`` holds the warm start of each metric's next fit,
        ``{"objectives": {name: ...}, "constraints": {name: ...}}`` (None before a fit).
        """
        return {
            **super().state_dict(),
            "n_sobol": self.n_sobol,
            "hyperparameters": {
                "objectives": _warm_json(self._objective_models),
                "constraints": _warm_json(self._constraint_models),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (before telling the observations again)."""
        super().load_state_dict(state)
        n_sobol = state.get("n_sobol", self.n_sobol)
        if not isinstance(n_sobol, int) or isinstance(n_sobol, bool) or n_sobol < 0:
            raise InvalidInput("state.n_sobol", f"must be a non-negative integer, got {n_sobol!r}")
        self.n_sobol = n_sobol
        if "hyperparameters" in state:
            self._load_warm(state["hyperparameters"])
        self._sequence = None
        self._optimizer = None

    def _load_warm(self, data: Any) -> None:
        if data is None or (isinstance(data, Mapping) and "lengthscales" in data):
            # The one-objective form of earlier versions.
            self._objective_models[self.objective].load_warm(data, "state.hyperparameters")
            return
        if not isinstance(data, Mapping):
            raise InvalidInput("state.hyperparameters", f"malformed: {data!r}")
        for group, models in (
            ("objectives", self._objective_models),
            ("constraints", self._constraint_models),
        ):
            stored = data.get(group) or {}
            if not isinstance(stored, Mapping):
                raise InvalidInput(f"state.hyperparameters.{group}", f"malformed: {stored!r}")
            for name, model in models.items():
                model.load_warm(stored.get(name), f"state.hyperparameters.{group}.{name}")

    # -- observations ------------------------------------------------------------------------

    def _after_tell(self, observations: list[Observation]) -> None:
        good = [o for o in observations if not o.failed]
        if not good:
            return
        params = [dict(o.params) for o in good]
        x = self.encoder.encode(params)
        for row, p, o in zip(x, params, good, strict=True):
            self._good.append(p)
            for name, model in [*self._objective_models.items(), *self._constraint_models.items()]:
                model.add(row, float(o.values[name]))
            self._feasible_obs.append(
                all(c.satisfied(float(o.values[c.metric])) for c in self.outcome_constraints)
            )

    # -- model -------------------------------------------------------------------------------

    def surrogate(self) -> GaussianProcessSurrogate | None:
        """The GP of the first objective on the successful observations; None before two."""
        model = self._objective_models[self.objective]
        if len(model) < 2:
            return None
        with threadpool_limits(1):
            fit = model.fit()
        return GaussianProcessSurrogate(
            self.space,
            self.objective,
            self.direction,
            fit.hyper,
            self._good,
            model.values,
            log=fit.transform.log,
            winsorize=model.winsorize,
        )

    def _fit_all(self) -> tuple[list[MetricFit], list[MetricFit]]:
        """Fit every metric; each fit becomes the warm start of the next."""
        fits = []
        for models in (self._objective_models, self._constraint_models):
            group = []
            for model in models.values():
                fit = model.fit()
                model.warm = fit.hyper
                group.append(fit)
            fits.append(group)
        return fits[0], fits[1]

    # -- proposals ---------------------------------------------------------------------------

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        excluded = self._excluded(pending)
        n_good = len(self._good)
        n_init = n if n_good < 2 else min(n, max(0, self.n_initial - n_good - len(pending)))
        points = [self._fill_randomly(self._next_sobol, excluded, rng) for _ in range(n_init)]
        if n_init < n:
            with threadpool_limits(1):
                points += self._bayes_batch(n - n_init, [*pending, *points], excluded, rng)
        return points

    def _next_sobol(self) -> dict[str, ParamValue]:
        """The next point of the initial design: the centre of the space, then Sobol' points."""
        if self._sequence is None:
            self._sequence = SobolSequence(self.encoder.n_params, self.seed)
        if self.n_sobol == 0:
            u = np.full((1, self.encoder.n_params), 0.5)
        else:
            u = self._sequence.take(self.n_sobol - 1, 1)
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
                fixed=self._target_columns or None,
            )
        return self._optimizer

    def _bayes_batch(
        self,
        k: int,
        pending: list[dict[str, ParamValue]],
        excluded: set[PointKey],
        rng: np.random.Generator,
    ) -> list[dict[str, ParamValue]]:
        """``k`` points, conditioned on the ``pending`` ones."""
        objective_fits, constraint_fits = self._fit_all()
        beliefs = self._beliefs(objective_fits, constraint_fits)
        incumbents = self._incumbents(beliefs, rng)
        bests = self._sampled_bests(beliefs, rng) if self._noisy(objective_fits) else None
        if pending:
            beliefs = beliefs.believe(self.encoder.encode(pending), self._at_target)
        if self._strategy(k) == "thompson" and beliefs.best is not None:
            # Draws that find no feasible point say nothing useful; before anything is
            # feasible, the batch is built point by point with LogEI times P(feasible).
            return self._thompson(k, beliefs, incumbents, excluded, rng)
        if bests is not None and beliefs.best is not None:
            bests = np.maximum(bests, beliefs.best)
        elif bests is not None:
            bests = None  # nothing is feasible yet: _score measures from the lowest value
        self._reference = self._reference_point(objective_fits)
        optimizer = self._acquisition_optimizer()
        points: list[dict[str, ParamValue]] = []
        for i in range(k):
            ranked = optimizer.ranked(self._score(beliefs, bests), incumbents, rng)
            point = self._first_unseen(ranked, excluded, beliefs)
            if point is None:
                point = self._fill_randomly(self._uniform_draw(rng), excluded, rng)
            points.append(point)
            if i + 1 < k:
                beliefs = beliefs.believe(self.encoder.encode([point]), self._at_target)
                if bests is not None and beliefs.best is not None:
                    bests = np.maximum(bests, beliefs.best)
        return points

    def _strategy(self, k: int) -> str:
        if len(self.objectives) > 1:
            return "ehvi"
        if self.acquisition == "auto":
            return "thompson" if k >= _THOMPSON_BATCH else "logei"
        return self.acquisition

    def _noisy(self, fits: list[MetricFit]) -> bool:
        if len(fits) != 1 or self.acquisition not in ("auto", "noisy-logei"):
            return False
        hyper = fits[0].hyper
        return self.acquisition == "noisy-logei" or hyper.noise > _NOISY_RATIO * hyper.outputscale

    def _beliefs(
        self, objective_fits: list[MetricFit], constraint_fits: list[MetricFit]
    ) -> _Beliefs:
        fit_of = dict(zip(self._constraint_models, constraint_fits, strict=True))
        bounds = tuple(
            OutcomeBound(
                fit_of[c.metric].posterior,
                fit_of[c.metric].transform.forward_bound(c.bound),
                1.0 if c.op == ">=" else -1.0,
            )
            for c in self.outcome_constraints
        )
        feasible = np.array(self._feasible_obs, dtype=bool)
        means = np.stack(
            [f.posterior.predict(self._at_target(f.posterior.x))[0] for f in objective_fits],
            axis=1,
        )
        means = means[feasible]
        best = float(np.max(means[:, 0])) if means.shape[0] and means.shape[1] == 1 else None
        front = _pareto(means) if means.shape[1] > 1 else means[:0]
        return _Beliefs(tuple(f.posterior for f in objective_fits), bounds, best, front)

    def _incumbents(self, beliefs: _Beliefs, rng: np.random.Generator) -> FloatArray:
        """Encoded observed points that local candidates perturb: the best, or Pareto ones."""
        x: FloatArray = np.array(self._objective_models[self.objective].x_rows)
        feasible = np.array(self._feasible_obs, dtype=bool)
        if not feasible.any():
            feasible[:] = True
        x = self._at_target(x[feasible])
        means = np.stack([m.predict(x)[0] for m in beliefs.objectives], axis=1)
        if means.shape[1] == 1:
            order = np.argsort(-means[:, 0], kind="stable")[:_N_INCUMBENTS]
        else:
            order = rng.permutation(np.flatnonzero(pareto_mask(means)))[:_N_INCUMBENTS]
        out: FloatArray = x[order]
        return out

    def _score(self, beliefs: _Beliefs, bests: FloatArray | None) -> Acquisition:
        """The acquisition for the next point of the batch."""
        base: Acquisition
        if len(beliefs.objectives) > 1:
            base = self._ehvi(beliefs)
        elif self.acquisition == "ucb":
            base = UpperConfidenceBound(beliefs.objectives[0], self.ucb_beta)
        elif beliefs.best is None:
            model = beliefs.objectives[0]
            observed = model.x[: len(self._feasible_obs)]  # not the fantasies of a batch
            base = LogEI(model, _lowest_plausible(model, self._at_target(observed)))
        elif bests is not None:
            base = LogNoisyEI(beliefs.objectives[0], bests)
        else:
            base = LogEI(beliefs.objectives[0], beliefs.best)
        return WithFeasibility(base, beliefs.bounds) if beliefs.bounds else base

    def _reference_point(self, objective_fits: list[MetricFit]) -> FloatArray | None:
        """The reference point in standardized units (several objectives), else None."""
        if len(objective_fits) < 2:
            return None
        if self.reference_point is not None:
            return np.array(
                [
                    fit.transform.forward_bound(self.reference_point[name])
                    for name, fit in zip(self._objective_models, objective_fits, strict=True)
                ]
            )
        observed = np.stack([f.posterior.y for f in objective_fits], axis=1)
        out: FloatArray = default_reference_point(observed[pareto_mask(observed)])
        return out

    def _ehvi(self, beliefs: _Beliefs) -> Acquisition:
        ref = self._reference
        assert ref is not None
        front = beliefs.front
        front = front[np.all(front > ref, axis=1)] if front.shape[0] else front
        lower, upper = non_dominated_boxes(front, ref)
        return LogEHVI(beliefs.objectives, lower, upper)

    def _sampled_bests(self, beliefs: _Beliefs, rng: np.random.Generator) -> FloatArray | None:
        """Incumbent draws for the noisy LogEI; None when no observation is feasible.

        Each is the best of one joint posterior draw at the feasible observed points (at the
        target fidelity).
        """
        model = beliefs.objectives[0]
        feasible = np.array(self._feasible_obs, dtype=bool)
        if not feasible.any():
            return None
        x = self._at_target(model.x[: feasible.size][feasible])
        draws = model.sample(x, _NOISY_SAMPLES, rng)
        out: FloatArray = np.max(draws, axis=1)
        return out

    def _thompson(
        self,
        k: int,
        beliefs: _Beliefs,
        incumbents: FloatArray,
        excluded: set[PointKey],
        rng: np.random.Generator,
    ) -> list[dict[str, ParamValue]]:
        """``k`` points, each the best of one joint posterior draw over a candidate pool."""
        pool = self._acquisition_optimizer().candidates(incumbents, rng)
        model = beliefs.objectives[0]
        optimism = UpperConfidenceBound(model, 4.0)(pool)
        pool = pool[np.argsort(-optimism, kind="stable")[:_THOMPSON_POOL]]
        draws = model.sample(pool, k, rng)
        allowed = np.ones_like(draws, dtype=bool)
        for b in beliefs.bounds:
            allowed &= b.sign * (b.model.sample(pool, k, rng) - b.bound) >= 0.0
        points: list[dict[str, ParamValue]] = []
        for draw, ok in zip(draws, allowed, strict=True):
            scores = np.where(ok, draw, draw - 1e6)  # prefer draws' feasible points
            point = self._first_unseen(pool[np.argsort(-scores, kind="stable")], excluded, beliefs)
            if point is None:
                point = self._fill_randomly(self._uniform_draw(rng), excluded, rng)
            points.append(point)
        return points

    def _first_unseen(
        self, ranked: FloatArray, excluded: set[PointKey], beliefs: _Beliefs
    ) -> dict[str, ParamValue] | None:
        """The first ranked row not yet observed or pending, at its best fidelity."""
        for row in ranked:
            for candidate in self._fidelity_options(row, beliefs):
                point = self.encoder.decode(candidate[None, :])[0]
                key = point_key(self.space, point)
                if key not in excluded and self.space.is_feasible(point):
                    excluded.add(key)
                    return point
        return None

    def _fidelity_options(self, row: FloatArray, beliefs: _Beliefs) -> list[FloatArray]:
        """``row`` at each fidelity, best first by the augmented-EI factors (see fidelity)."""
        if self.fidelity is None:
            return [row]
        labels = list(self.fidelity.costs)  # in the order of the fidelity's columns
        rows = np.repeat(row[None, :], len(labels), axis=0)
        rows[:, list(self._target_columns)] = np.eye(len(labels))
        target = self._at_target(row[None, :])
        model = beliefs.objectives[0]
        _, var = model.predict(rows)
        _, var_target = model.predict(target)
        cov = model.paired_covariance(rows, np.repeat(target, len(labels), axis=0))
        corr = np.clip(cov / np.sqrt(var * var_target[0]), 0.0, 1.0)
        noise = model.hyper.noise
        informative = 1.0 - np.sqrt(noise / (var + noise))
        costs = self.fidelity.costs
        cheap = np.array([costs[self.fidelity.target] / costs[label] for label in labels])
        score = corr * informative * cheap
        order = np.argsort(-score, kind="stable")
        return [rows[i] for i in order]


def _lowest_plausible(model: Posterior, x: FloatArray) -> float:
    """The smallest ``mean - _LOWEST_SDS * sd`` of ``model`` at ``x`` (the observed points).

    It lies below every value plausible at those points, so improvement over it is about
    ``mean - incumbent`` and, with the probability of feasibility, ranks likely-feasible
    points by their predicted objective.
    """
    mean, var = model.predict(x)
    return float(np.min(mean - _LOWEST_SDS * np.sqrt(var)))


def _pareto(y: FloatArray) -> FloatArray:
    out: FloatArray = y[pareto_mask(y)] if y.shape[0] else y
    return out


def _warm_json(models: Mapping[str, MetricModel]) -> dict[str, Any]:
    return {name: None if m.warm is None else m.warm.to_json() for name, m in models.items()}


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidInput(name, f"unknown value {value!r}", f"use one of {', '.join(allowed)}")
    return str(value)
