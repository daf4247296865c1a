"""Optuna as a planner (``planner: optuna``, extra ``planners-optuna``): its TPE sampler.

The planner drives an in-memory Optuna study through its ask-and-tell interface with a
``TPESampler`` (Optuna's defaults; pending trials are "constant liars"). Outcome
constraints become Optuna trial constraints (the amount by which a measured value misses
its bound); with several objectives, the reference point
does too: a trial that does not beat it counts as infeasible, so TPE ranks it below every
trial that does, the way hypervolume-based methods give it no weight. Optuna has no
parameter constraints, so a space with constraints is refused.

Bookkeeping between the two worlds:

- Every proposal is an Optuna trial; the point's key maps to the trial so that
  :meth:`~OptunaPlanner.tell` finishes the right one. A point told but never asked (a
  planner rebuilt from the catalog) is added with ``study.add_trial``; a pending point the
  study does not know is enqueued and started, so the constant liar accounts for it; a
  trial asked but neither pending nor told any more is finished as failed (user attribute
  ``genesis_abandoned``).
- TPE may repeat an observed or pending point in a finite space: that trial is finished
  as failed (user attribute ``genesis_duplicate``) and drawn again; after a few repeats the
  slot is filled with a uniform random unseen point, enqueued so it is an Optuna trial too
  (counted in :attr:`~OptunaPlanner.n_fallback`).

Each ``ask`` uses a new ``TPESampler`` seeded from ``(seed, n_asked)``, so a planner rebuilt
with :meth:`~OptunaPlanner.load_state_dict` and told the same observations *in the order
they were asked* proposes what the original would have (TPE keeps no other state between
trials). When trials finished out of order, the rebuilt study numbers them in the order
they were told, which TPE may weigh differently: the next proposals can differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning._base import check_count
from genesis_platform.planning.adapters._common import AdapterPlanner, import_extra
from genesis_platform.planning.encoding import PointKey, point_key
from genesis_platform.planning.protocols import Observation, Params, ParamValue
from genesis_platform.planning.space import Choice, Int, Space

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaPlanner"]

_TPE_ATTEMPTS = 4
"""TPE draws per slot before a repeated point is replaced by a random unseen one."""

_DUPLICATE = "genesis_duplicate"
_ABANDONED = "genesis_abandoned"


class OptunaPlanner(AdapterPlanner):
    """Optuna's TPE sampler behind the ``Planner`` protocol.

    See the module docstring for how trials, constraints and repeats are handled.

    Args:
        space: The search space; it may not have parameter constraints.
        objectives: One objective, or several (a multi-objective study).
        seed: Seed; the sampler of one ``ask`` is seeded from ``(seed, n_asked)``.
        outcome_constraints: Bounds on measured values, e.g. ``["purity >= 0.95"]``.
        reference_point: For several objectives, values a trial must beat to count as
            feasible.
        n_startup_trials: Trials TPE draws at random before it models the data.

    Raises:
        InvalidInput: ``planner`` when Optuna is not installed; ``constraints`` for a
            space with parameter constraints; the option's name for a bad option.
    """

    kind = "optuna"

    def __init__(
        self,
        space: Space,
        objectives: Mapping[str, str],
        *,
        seed: int = 0,
        outcome_constraints: Sequence[str] = (),
        reference_point: Mapping[str, float] | None = None,
        n_startup_trials: int = 10,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            outcome_constraints=outcome_constraints,
            reference_point=reference_point,
        )
        if space.constraints:
            raise InvalidInput(
                "constraints",
                "the optuna planner cannot keep parameter constraints: Optuna's samplers "
                "have no way to express them",
                "use the gp, random or sobol planner, or ax for linear inequalities",
            )
        self.n_startup_trials = check_count("n_startup_trials", n_startup_trials, 0, "e.g. 10")
        self._optuna = import_extra("optuna", "optuna", "Optuna", "planners-optuna")
        self._optuna.logging.set_verbosity(self._optuna.logging.WARNING)
        self._distributions = {name: self._distribution(spec) for name, spec in space.items()}
        self._study: optuna.Study | None = None
        self._open: dict[PointKey, list[optuna.Trial]] = {}

    @property
    def study(self) -> optuna.Study | None:
        """The Optuna study, for inspection (trials, visualizations); None before use.

        Do not create or finish trials through it: the planner keeps them in step with
        what it was asked and told.
        """
        return self._study

    # -- state -------------------------------------------------------------------------------

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the study is rebuilt at the next ask.

        The rebuilt study holds the observations told so far; points asked before and
        still pending are started again when the next ``ask`` names them in ``pending``.
        """
        super().load_state_dict(state)
        self._study = None
        self._open = {}

    # -- the Planner protocol's work ---------------------------------------------------------

    def _propose(
        self, n: int, pending: list[dict[str, ParamValue]], rng: np.random.Generator
    ) -> list[dict[str, ParamValue]]:
        study = self._ensure_study()
        self._sync_pending(study, pending)
        study.sampler = self._sampler(int(rng.integers(2**31 - 1)))
        excluded = self._excluded(pending)
        points: list[dict[str, ParamValue]] = []
        for _ in range(n):
            point, trial = self._draw_new(study, excluded)
            if trial is None:
                point = self._fill_randomly(self._uniform_draw(rng), excluded, rng)
                trial = self._start(study, point)
                self.n_fallback += 1
            else:
                excluded.add(point_key(self.space, point))
            self._open.setdefault(point_key(self.space, point), []).append(trial)
            points.append(point)
        return points

    def _after_tell(self, observations: list[Observation]) -> None:
        if self._study is not None:
            for obs in observations:
                self._push(self._study, obs)

    # -- Optuna ------------------------------------------------------------------------------

    def _ensure_study(self) -> optuna.Study:
        """The study; created (and told every observation so far) on first use."""
        if self._study is not None:
            return self._study
        directions = ["maximize" if d == "max" else "minimize" for d in self.objectives.values()]
        study: optuna.Study = self._optuna.create_study(
            directions=directions, sampler=self._sampler(self.seed)
        )
        self._study = study
        self._open = {}
        for obs in self.observations:
            self._push(study, obs)
        return study

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        sampler: optuna.samplers.BaseSampler = self._optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, constant_liar=True
        )
        return sampler

    def _distribution(self, spec: Any) -> optuna.distributions.BaseDistribution:
        distributions = self._optuna.distributions
        out: optuna.distributions.BaseDistribution
        if isinstance(spec, Choice):
            out = distributions.CategoricalDistribution(list(spec.values))
        elif isinstance(spec, Int):
            out = distributions.IntDistribution(spec.low, spec.high, log=spec.log)
        else:
            out = distributions.FloatDistribution(float(spec.low), float(spec.high), log=spec.log)
        return out

    def _draw_new(
        self, study: optuna.Study, excluded: set[PointKey]
    ) -> tuple[dict[str, ParamValue], optuna.Trial | None]:
        """A TPE point outside ``excluded`` and its trial, or ``({}, None)`` after repeats."""
        for _ in range(_TPE_ATTEMPTS):
            trial = study.ask(self._distributions)
            point = self._point(trial.params)
            if point_key(self.space, point) not in excluded:
                return point, trial
            trial.set_user_attr(_DUPLICATE, True)
            study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        return {}, None

    def _point(self, params: Mapping[str, Any]) -> dict[str, ParamValue]:
        point: dict[str, ParamValue] = {}
        for name, spec in self.space.items():
            value = params[name]
            if isinstance(spec, Int):
                point[name] = int(value)
            elif isinstance(spec, Choice):
                point[name] = value
            else:
                point[name] = min(max(float(value), float(spec.low)), float(spec.high))
        return self.space.validate(point)

    def _start(self, study: optuna.Study, point: Params) -> optuna.Trial:
        """A running trial at ``point`` (enqueued, then asked)."""
        study.enqueue_trial(dict(point))
        return study.ask(self._distributions)

    def _sync_pending(self, study: optuna.Study, pending: Sequence[Params]) -> None:
        """Make the study's running trials exactly the pending points."""
        wanted = Counter(point_key(self.space, p) for p in pending)
        for key, trials in list(self._open.items()):
            for trial in trials[wanted[key] :]:
                trial.set_user_attr(_ABANDONED, True)
                study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            del trials[wanted[key] :]
            if not trials:
                del self._open[key]
        for p in pending:
            key = point_key(self.space, p)
            if len(self._open.get(key, ())) < wanted[key]:
                self._open.setdefault(key, []).append(self._start(study, p))

    def _push(self, study: optuna.Study, obs: Observation) -> None:
        """Finish the trial of an observation, or add it to the study if it has none."""
        trials = self._open.get(point_key(self.space, obs.params))
        TrialState = self._optuna.trial.TrialState
        values = None if obs.failed else [float(obs.values[name]) for name in self.objectives]
        constraints = None if obs.failed else self._constraints(obs.values)
        if trials:
            trial = trials.pop(0)
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
                return
            for key, violation in (constraints or {}).items():
                trial.set_constraint(key, violation)
            study.tell(trial, values)
            return
        study.add_trial(
            self._optuna.trial.create_trial(
                state=TrialState.FAIL if values is None else TrialState.COMPLETE,
                values=values,
                params=dict(obs.params),
                distributions=self._distributions,
                constraints=constraints,
            )
        )

    def _constraints(self, values: Mapping[str, float]) -> dict[str, float] | None:
        """Constraint values of a success (feasible when at most 0); None without any."""
        out: dict[str, float] = {}
        for c in self.outcome_constraints:
            value = float(values[c.metric])
            out[c.text] = c.bound - value if c.op == ">=" else value - c.bound
        for name, bound in (self.reference_point or {}).items():
            value = float(values[name])
            out[f"reference_point.{name}"] = (
                bound - value if self.objectives[name] == "max" else value - bound
            )
        return out or None
