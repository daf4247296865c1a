"""Ax as a planner (``planner: ax``, extra ``planners-ax``): Meta's Ax with its default strategy.

The planner drives Ax's ``Client`` API and uses Ax's default generation strategy (the
center of the space, Sobol' points, then BoTorch's modular Bayesian optimization), so
benchmarks compare against Ax as its users get it. Outcome constraints, several
objectives (with the reference point as objective thresholds) and linear inequality
parameter constraints go to Ax natively.

Bookkeeping between the two worlds:

- Every proposal is an Ax trial; the point's key maps to its trial index so that
  :meth:`~AxPlanner.tell` completes (or marks failed) the right trial. A point told but
  never asked (a planner rebuilt from the catalog) is attached to Ax and completed; a
  pending point Ax does not know is attached as a running trial, and a trial asked but
  neither pending nor told any more is marked failed (it is not data, and no longer
  pending), so Ax's running trials are the caller's pending points.
- Ax may propose a point that was observed, failed or is pending (it re-proposes failed
  points): the adapter declines it and marks its trial abandoned, which Ax counts as
  pending from then on, so it does not propose it again.
- Ax parses names with SymPy (``yield`` or ``E`` would not survive), so inside Ax the
  parameters are ``p0, p1, ...`` and the metrics ``m0, m1, ...``; choices are string labels.
- Ax's default strategy does not propose more than its initialization budget before data
  arrives, and may have no new point in a small finite space. The slots it leaves empty
  are filled with uniform random points that satisfy the constraints, attached to Ax as
  running trials (counted in :attr:`~AxPlanner.n_fallback`), so ``ask(n)`` always
  returns ``n`` points.
- Observations outside Ax's parameter constraints are kept for duplicate checks but not
  given to Ax, which refuses arms outside its search space.

Ax reseeds NumPy and PyTorch from ``seed`` on every proposal (``Client(random_seed=seed)``),
and a rebuilt planner advances Ax's strategy to the step the data allows before its first
proposal, so it usually proposes what the original would have. Not always: the rebuilt
experiment lacks the original's declined (abandoned) trials, for one.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput, PlannerError
from genesis_platform.planning._base import check_count
from genesis_platform.planning.adapters._common import AdapterPlanner, import_extra
from genesis_platform.planning.encoding import PointKey, point_key
from genesis_platform.planning.protocols import Observation, Params, ParamValue
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

__all__ = ["AxPlanner"]

_MAX_ROUNDS = 4
"""``get_next_trials`` calls per ``ask`` before the adapter fills the remaining slots."""

_REPAIR_TOLERANCE = 1e-6
"""Largest move (unit-cube coordinates) that puts an Ax point back onto the constraints."""

_DROPPED = "neither pending nor told: dropped by the caller"

_torch_configured = False


@dataclass(frozen=True)
class _Ax:
    """The parts of Ax the adapter uses, imported when the first planner is built."""

    Client: Any
    RangeParameterConfig: Any
    ChoiceParameterConfig: Any
    choose_generation_strategy: Any
    GenerationStrategyDispatchStruct: Any
    cannot_propose: tuple[type[Exception], ...]
    set_ax_logger_levels: Any


def _load_ax() -> _Ax:
    global _torch_configured
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)  # Ax logs at INFO while it imports
    try:
        import_extra("ax", "ax", "Ax", "planners-ax")
        import torch
        from ax import ChoiceParameterConfig, Client, RangeParameterConfig
        from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
        from ax.api.utils.structs import GenerationStrategyDispatchStruct
        from ax.exceptions.core import DataRequiredError, OptimizationComplete
        from ax.exceptions.generation_strategy import MaxParallelismReachedException
        from ax.utils.common.logger import set_ax_logger_levels
    finally:
        logging.disable(disabled)
    set_ax_logger_levels(logging.WARNING)
    if not _torch_configured:
        # One thread: the platform runs on 2-core machines, where PyTorch's default of a
        # thread per core competes with the campaign's own workers and gains nothing on
        # fits this small.
        torch.set_num_threads(1)
        _torch_configured = True
    logging.getLogger("ax.api.client").addFilter(_ShortBatchFilter())
    return _Ax(
        Client=Client,
        RangeParameterConfig=RangeParameterConfig,
        ChoiceParameterConfig=ChoiceParameterConfig,
        choose_generation_strategy=choose_generation_strategy,
        GenerationStrategyDispatchStruct=GenerationStrategyDispatchStruct,
        # Ax needs data first (initialization), or has nothing new (finite spaces).
        cannot_propose=(DataRequiredError, MaxParallelismReachedException, OptimizationComplete),
        set_ax_logger_levels=set_ax_logger_levels,
    )


class _ShortBatchFilter(logging.Filter):
    """Drops Ax's warning that a batch came out short: the adapter fills the gap itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "could be generated" not in record.getMessage()

    def __eq__(self, other: object) -> bool:  # addFilter adds one filter however often called
        return isinstance(other, _ShortBatchFilter)

    def __hash__(self) -> int:
        return hash(_ShortBatchFilter)


@dataclass(frozen=True)
class _Param:
    """One parameter of the space and its Ax counterpart."""

    name: str
    alias: str
    spec: Parameter
    labels: dict[ParamValue, str]
    """Choice value to Ax label (empty for real and integer parameters)."""

    def to_ax(self, value: ParamValue) -> ParamValue:
        if isinstance(self.spec, Choice):
            return self.labels[value]
        return int(value) if isinstance(self.spec, Int) else float(value)

    def from_ax(self, value: Any) -> ParamValue | None:
        spec = self.spec
        if isinstance(spec, Choice):
            for choice, label in self.labels.items():
                if label == value:
                    return choice
            return None
        if isinstance(spec, Int):
            return min(max(round(float(value)), spec.low), spec.high)
        return min(max(float(value), float(spec.low)), float(spec.high))


class AxPlanner(AdapterPlanner):
    """Ax's default generation strategy behind the ``Planner`` protocol.

    See the module docstring for how trials, names and short batches are handled.

    Args:
        space: The search space; its constraints must be linear inequalities on parameters
            that are not log-scaled (what Ax supports).
        objectives: One objective, or several (Ax then optimizes the Pareto front).
        seed: Seed of Ax (``Client(random_seed=seed)``) and of the adapter's fill-ins.
        outcome_constraints: Bounds on measured values, e.g. ``["purity >= 0.95"]``.
        reference_point: For several objectives, Ax's objective thresholds.
        initialization_budget: Ax's number of initialization trials (the center and
            Sobol' points); None keeps Ax's default (5).

    Raises:
        InvalidInput: ``planner`` when Ax is not installed; ``constraints`` for a parameter
            constraint Ax cannot take; the option's name for a bad option.
    """

    kind = "ax"

    def __init__(
        self,
        space: Space,
        objectives: Mapping[str, str],
        *,
        seed: int = 0,
        outcome_constraints: Sequence[str] = (),
        reference_point: Mapping[str, float] | None = None,
        initialization_budget: int | None = None,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            outcome_constraints=outcome_constraints,
            reference_point=reference_point,
        )
        if initialization_budget is not None:
            check_count(
                "initialization_budget",
                initialization_budget,
                0,
                "e.g. 8, or leave it out for Ax's default",
            )
        self.initialization_budget = initialization_budget
        for c in self.outcome_constraints:
            if c.metric in self.objectives:
                raise InvalidInput(
                    "outcome_constraints",
                    f"{c.text!r}: Ax cannot bound an objective",
                    "bound another measured value; with several objectives, use reference_point",
                )
        self._params = [_param(name, f"p{i}", spec) for i, (name, spec) in enumerate(space.items())]
        self._parameter_constraints = _parameter_constraints(space, self._params)
        self._metrics = {name: f"m{i}" for i, name in enumerate(self.metric_names())}
        self._ax = _load_ax()
        self._client: Any = None
        self._open: dict[PointKey, list[int]] = {}

    @property
    def client(self) -> Any:
        """Ax's ``Client``, for inspection (``summarize()``, analyses); None before use.

        Do not create or finish trials through it: the planner keeps them in step with
        what it was asked and told.
        """
        return self._client

    # -- state -------------------------------------------------------------------------------

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; Ax's experiment is rebuilt at the next ask.

        The rebuilt experiment holds the observations told so far; points asked before and
        still pending are attached again when the next ``ask`` names them in ``pending``.
        """
        super().load_state_dict(state)
        self._client = None
        self._open = {}

    # -- the Planner protocol's work ---------------------------------------------------------

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        client = self._ensure_client()
        self._sync_pending(client, pending)
        excluded = self._excluded(pending)
        points: list[dict[str, ParamValue]] = []
        size = self.encoder.size()
        # In a finite space with every point taken, Ax's deduplication would retry for
        # a long time (about 30 s during the Sobol' phase) before giving up.
        rounds = 0 if size is not None and len(excluded) >= size else _MAX_ROUNDS
        for _ in range(rounds):
            if len(points) == n:
                break
            accepted = 0
            for index, parameters in self._generate(client, n - len(points)).items():
                point = self._from_ax(parameters)
                if point is None or point_key(self.space, point) in excluded:
                    self._call(client.mark_trial_abandoned, index)
                    continue
                excluded.add(point_key(self.space, point))
                self._open.setdefault(point_key(self.space, point), []).append(index)
                points.append(point)
                accepted += 1
            if not accepted:
                break
        while len(points) < n:
            point = self._fill_randomly(self._uniform_draw(rng), excluded, rng)
            self._attach_running(client, point)
            points.append(point)
            self.n_fallback += 1
        return points

    def _after_tell(self, observations: list[Observation]) -> None:
        if self._client is not None:
            for obs in observations:
                self._push(self._client, obs)

    # -- Ax ----------------------------------------------------------------------------------

    def _ensure_client(self) -> Any:
        """The Ax client; built (and told every observation so far) on first use."""
        if self._client is not None:
            return self._client
        ax = self._ax
        client = ax.Client(random_seed=self.seed)
        parameters = [self._config(p) for p in self._params]
        objective = ", ".join(
            (alias if self.objectives[name] == "max" else f"-{alias}")
            for name, alias in self._metrics.items()
            if name in self.objectives
        )
        bounds = [f"{self._metrics[c.metric]} {c.op} {c.bound!r}" for c in self.outcome_constraints]
        for name, value in (self.reference_point or {}).items():
            op = ">=" if self.objectives[name] == "max" else "<="
            bounds.append(f"{self._metrics[name]} {op} {value!r}")
        with self._quiet():
            client.configure_experiment(
                parameters=parameters,
                parameter_constraints=self._parameter_constraints or None,
                name="genesis",
            )
            client.configure_optimization(objective=objective, outcome_constraints=bounds or None)
            # Ax's default strategy, built as Client.configure_generation_strategy() builds
            # it; keeping it lets a rebuilt planner catch up with the original below.
            strategy = ax.choose_generation_strategy(
                struct=ax.GenerationStrategyDispatchStruct(
                    initialization_budget=self.initialization_budget
                )
            )
            client.set_generation_strategy(generation_strategy=strategy)
        self._client = client
        self._open = {}
        for obs in self.observations:
            self._push(client, obs)
        if self.observations:
            # A fresh strategy moves one step per proposal (center, Sobol', then BO), so
            # after replaying a campaign it would first spend a Sobol' point the original
            # would not have; advance it as far as the data allows, as the original was.
            self._call(strategy.current_generator_run_limit)
        return client

    def _config(self, p: _Param) -> Any:
        spec = p.spec
        if isinstance(spec, Choice):
            return self._ax.ChoiceParameterConfig(
                name=p.alias,
                values=list(p.labels.values()),
                parameter_type="str",
                is_ordered=False,
            )
        return self._ax.RangeParameterConfig(
            name=p.alias,
            parameter_type="int" if isinstance(spec, Int) else "float",
            bounds=(spec.low, spec.high)
            if isinstance(spec, Int)
            else (float(spec.low), float(spec.high)),
            scaling="log" if spec.log else "linear",
        )

    def _generate(self, client: Any, n: int) -> dict[int, Mapping[str, Any]]:
        """Up to ``n`` new Ax trials (index to Ax parameters); none when Ax cannot propose."""
        try:
            with self._quiet():
                return dict(client.get_next_trials(max_trials=n))
        except self._ax.cannot_propose:
            return {}
        except Exception as exc:  # Ax, BoTorch or PyTorch failed while proposing
            raise PlannerError(f"Ax could not propose points: {type(exc).__name__}: {exc}") from exc

    def _sync_pending(self, client: Any, pending: Sequence[Params]) -> None:
        """Make Ax's running trials exactly the pending points."""
        wanted = Counter(point_key(self.space, p) for p in pending)
        for key, indices in list(self._open.items()):
            for index in indices[wanted[key] :]:
                self._call(client.mark_trial_failed, index, failed_reason=_DROPPED)
            del indices[wanted[key] :]
            if not indices:
                del self._open[key]
        for p in pending:
            if len(self._open.get(point_key(self.space, p), ())) < wanted[point_key(self.space, p)]:
                self._attach_running(client, p)

    def _attach_running(self, client: Any, point: Params) -> None:
        index = self._attach(client, point)
        if index is not None:
            self._open.setdefault(point_key(self.space, point), []).append(index)

    def _attach(self, client: Any, point: Params) -> int | None:
        """Attach a running trial; None when Ax refuses the point (outside its constraints)."""
        parameters = {p.alias: p.to_ax(point[p.name]) for p in self._params}
        try:
            with self._quiet():
                index: int = client.attach_trial(parameters=parameters)
        except ValueError:
            return None
        return index

    def _push(self, client: Any, obs: Observation) -> None:
        """Complete (or mark failed) the trial of an observation, attaching it if needed."""
        indices = self._open.get(point_key(self.space, obs.params))
        index = indices.pop(0) if indices else self._attach(client, obs.params)
        if index is None:
            return
        if obs.failed:
            self._call(client.mark_trial_failed, index)
            return
        raw = {alias: float(obs.values[name]) for name, alias in self._metrics.items()}
        self._call(client.complete_trial, index, raw_data=raw)

    def _from_ax(self, parameters: Mapping[str, Any]) -> dict[str, ParamValue] | None:
        """The point of an Ax parameterization, or None if it is not a feasible point.

        Ax keeps linear constraints to about 1e-8, looser than the space's tolerance; a
        point just outside is moved onto the constraints.
        """
        point: dict[str, ParamValue] = {}
        for p in self._params:
            if p.alias not in parameters:  # Ax may leave out a choice with one value
                if not isinstance(p.spec, Choice) or len(p.spec.values) != 1:
                    return None
                point[p.name] = p.spec.values[0]
                continue
            value = p.from_ax(parameters[p.alias])
            if value is None:
                return None
            point[p.name] = value
        try:
            checked = self.space.validate(point)
        except InvalidInput:
            return None
        if self.space.is_feasible(checked):
            return checked
        repaired = self._feasible(checked)
        if repaired is None:
            return None
        moved = np.abs(self.encoder.encode([repaired]) - self.encoder.encode([checked])).max()
        return repaired if moved <= _REPAIR_TOLERANCE else None

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        with self._quiet():
            return method(*args, **kwargs)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Ax's log records below WARNING and its warnings are not for platform users."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                yield
            finally:
                # Ax creates loggers (at INFO) as it imports modules lazily; level them too.
                self._ax.set_ax_logger_levels(logging.WARNING)


def _param(name: str, alias: str, spec: Parameter) -> _Param:
    labels: dict[ParamValue, str] = {}
    if isinstance(spec, Choice):
        plain = all(isinstance(v, str) for v in spec.values)
        labels = {v: str(v) if plain else repr(v) for v in spec.values}
    return _Param(name, alias, spec, labels)


def _parameter_constraints(space: Space, params: Sequence[_Param]) -> list[str]:
    """The space's constraints as Ax inequalities on the aliases.

    Raises:
        InvalidInput: ``constraints`` for an equality, a nonlinear constraint, or one on a
            log-scaled parameter (Ax takes linear inequalities on linear scales only).
    """
    alias = {p.name: p.alias for p in params}
    fix = (
        "the ax planner takes linear inequalities on parameters that are not log-scaled; "
        "use the gp, random or sobol planner for this space"
    )
    out = []
    for constraint in space.constraints:
        text = constraint.text
        if constraint.op == "==":
            raise InvalidInput("constraints", f"{text!r}: Ax does not support equalities", fix)
        if constraint.linear is None:
            raise InvalidInput("constraints", f"{text!r}: Ax supports linear ones only", fix)
        coefficients, bound = constraint.linear
        for name in sorted(coefficients):
            spec: Real | Int | Choice = space[name]
            if not isinstance(spec, Choice) and spec.log:
                raise InvalidInput(
                    "constraints", f"{text!r}: Ax cannot constrain log-scaled {name!r}", fix
                )
        if not coefficients:
            if bound < 0:
                raise InvalidInput("constraints", f"{text!r} can never hold", "remove it")
            continue  # always holds
        lhs = " + ".join(f"{c!r} * {alias[name]}" for name, c in coefficients.items())
        out.append(f"{lhs} <= {bound!r}")
    return out
