"""The closed loop: propose, store, dispatch, observe, store, tell — until the budget ends.

Loop invariant (DESIGN.md): a trial is written before it is dispatched, together with its
external id (state ``running``), so an attempt that might have started is never started
again; its observation is written before the planner is told.

Crashes and interruptions: on resume, trials stored but never dispatched (``proposed``) are
dispatched; ``running`` ones are re-attached through their external id or, where the runner
cannot (the in-process station and process pool), marked ``interrupted`` and never re-run,
since they may have partly run. Interrupted and canceled trials do not use the trial
budget: the loop proposes new trials until ``budget.trials`` trials have a final outcome
(observed or failed) or another budget or stopping rule ends it.

A trial refused because the project's allocation on the site or station cannot cover it
(:class:`~genesis_platform.errors.AllocationExceeded`) never ran: the loop starts nothing
more, lets what is in flight finish, and marks the campaign ``stopped`` with the refusal as
its reason (the refused trial ``canceled``), to be resumed once an operator grants more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from genesis_platform.campaigns.runners import Outcome, TrialRunner, finite_values
from genesis_platform.campaigns.snapshots import Snapshotter
from genesis_platform.campaigns.spec import FIDELITY, CampaignSpec
from genesis_platform.campaigns.warmstart import WarmStart
from genesis_platform.catalog.tables import Campaign, ObservationRow, Trial, utcnow
from genesis_platform.data.service import DatasetService
from genesis_platform.errors import AllocationExceeded, CampaignError, GenesisError, InvalidInput
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.modelhub.service import ModelService
from genesis_platform.planning.constraints import OutcomeConstraint
from genesis_platform.planning.protocols import Observation, Planner
from genesis_platform.provenance import Edge, Node, ProvenanceGraph

__all__ = ["CampaignEngine", "LoopReporter", "best_of", "counts_for_best"]

_LOST = (
    "interrupted: the process running the campaign stopped while this attempt was in flight "
    "and its runner cannot re-attach; it is not re-run, since it may have partly run"
)
_ABORTED = "interrupted: the campaign was stopped while this attempt was in flight ({why})"
_FINAL = ("observed", "failed", "interrupted", "canceled")


class LoopReporter(Protocol):
    """Receives progress of a running campaign (a progress bar, a log, ...)."""

    def update(self, finished: int, total: int, failed: int, best: float | None) -> None:
        """Called when the loop starts and after each finished trial."""
        ...


@dataclass
class _Live:
    """A trial the loop holds: not yet final."""

    id: int
    number: int
    params: dict[str, Any]
    attempts: int = 0


@dataclass
class _Tally:
    """Counters of the loop."""

    total: int = 0
    observed: int = 0
    failed: int = 0
    uncounted: int = 0
    best: float | None = None
    since_best: int = 0
    core_seconds: float = 0.0
    cost: float = 0.0

    @property
    def counted(self) -> int:
        """Trials that use the trial budget: all but interrupted and canceled ones."""
        return self.total - self.uncounted


class CampaignEngine:
    """Runs one campaign's loop in this process.

    Args:
        ctx: The platform's service context (catalog, principal, audit).
        campaign_id: Catalog id of the campaign.
        spec: Its validated spec.
        planner: A planner built from the spec (state is restored by :meth:`run`).
        runner: Where trials run.
        datasets: Dataset service (observation snapshots).
        models: Model service (surrogates).
        reporter: Optional progress receiver.
        warm: Observations the planner begins from (told before the campaign's own).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        campaign_id: int,
        spec: CampaignSpec,
        planner: Planner,
        runner: TrialRunner,
        datasets: DatasetService,
        models: ModelService,
        reporter: LoopReporter | None = None,
        warm: WarmStart | None = None,
    ) -> None:
        self._ctx = ctx
        self._warm = warm
        self._outcome_constraints = spec.parsed_outcome_constraints()
        self._id = campaign_id
        self._spec = spec
        self._planner = planner
        self._runner = runner
        self._reporter = reporter
        self._snapshots = Snapshotter(ctx, campaign_id, spec, datasets, models)
        self._prov = ProvenanceGraph()
        self._resource = Resource("campaign", str(campaign_id))
        self._objective, self._direction = next(iter(spec.objectives.items()))
        self._tally = _Tally()
        self._queued: list[_Live] = []
        self._inflight: dict[Future[Outcome], _Live] = {}
        self._wall_before = 0.0
        self._started = time.monotonic()
        self._stop_reason = ""
        self._out_of_allocation = False

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> str:
        """Run until the budget or a stopping rule ends the campaign; return its final state.

        Ctrl-C (KeyboardInterrupt) or SystemExit marks the campaign ``stopped`` and
        propagates; any other error marks it ``failed``. Either way the trials in flight
        are marked ``interrupted`` and the campaign can be resumed.

        Raises:
            CampaignError: the loop failed on something other than a Genesis error.
        """
        self._load_usage()
        self._set_state("running", started=True)
        abort = False
        try:
            self._recover()
            self._loop()
            return self._finalize()
        except (KeyboardInterrupt, SystemExit) as exc:
            abort = bool(self._inflight)
            self._abandon_inflight(f"{type(exc).__name__}")
            self._set_state("stopped", reason="interrupted by the user; resume to go on")
            raise
        except GenesisError as exc:
            abort = bool(self._inflight)
            self._abandon_inflight("the loop failed")
            self._set_state("failed", error=str(exc))
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            abort = bool(self._inflight)
            self._abandon_inflight("the loop failed")
            self._set_state("failed", error=error)
            raise CampaignError(f"campaign {self._id} failed: {error}") from exc
        finally:
            self._runner.close(abort=abort)

    def _loop(self) -> None:
        self._report()
        while True:
            if not self._stop_reason:
                self._stop_reason = self._stopping()
            if not self._stop_reason:
                self._fill()
            if not self._inflight:
                return
            done, _ = wait(self._inflight, timeout=self._wait_s(), return_when=FIRST_COMPLETED)
            for future in done:
                self._finish(future)

    def _fill(self) -> None:
        free = self._runner.slots() - len(self._inflight)
        while free > 0 and self._queued:
            self._dispatch(self._queued.pop(0))
            free -= 1
        wanted = min(free, self._spec.budget.trials - self._tally.counted, self._affordable())
        if wanted > 0:
            for live, external_id in self._propose(wanted):
                self._start(live, external_id)

    def _propose(self, n: int) -> list[tuple[_Live, str]]:
        """Ask the planner and store its points as trials, in one transaction.

        The trials are stored already marked dispatched (``running``, with their external
        ids), so the caller can start them at once and a crash can never start one twice.
        """
        pending = [live.params for live in [*self._inflight.values(), *self._queued]]
        points = self._planner.ask(n, pending=pending)
        with self._ctx.mutation("run", self._resource, {"op": "propose", "n": n}) as s:
            rows = [
                Trial(campaign_id=self._id, number=self._tally.total + i + 1, params=dict(p))
                for i, p in enumerate(points)
            ]
            s.add_all(rows)
            s.flush()
            now = utcnow()
            for row in rows:
                row.state, row.attempts, row.dispatched_at = "running", 1, now
                row.external_id = self._runner.external_id(row.id, 1)
            self._prov.record(
                s,
                [
                    Edge(Node("trial", r.id), "wasStartedBy", Node("campaign", self._id))
                    for r in rows
                ],
            )
            self._save_usage(s, planner_state=self._planner.state_dict())
        self._tally.total += len(rows)
        return [(_Live(r.id, r.number, dict(r.params), 1), r.external_id) for r in rows]

    def _dispatch(self, live: _Live) -> None:
        """Mark a stored trial dispatched (next attempt, external id), then start it."""
        live.attempts += 1
        external_id = self._runner.external_id(live.id, live.attempts)
        with self._ctx.mutation("run", self._resource, {"op": "dispatch", "trial": live.id}) as s:
            _update_trial(
                s,
                live.id,
                state="running",
                attempts=live.attempts,
                external_id=external_id,
                dispatched_at=utcnow(),
            )
        self._start(live, external_id)

    def _start(self, live: _Live, external_id: str) -> None:
        try:
            future = self._runner.start(external_id, live.params)
        except GenesisError as exc:
            future = Future()
            future.set_exception(exc)
        self._inflight[future] = live

    def _finish(self, future: Future[Outcome]) -> None:
        live = self._inflight.pop(future)
        try:
            outcome = future.result()
            values = self._checked_values(outcome)
        except AllocationExceeded as exc:  # it never ran; nothing more will: stop the loop
            self._refused_by_allocation(live, exc)
            return
        except InvalidInput as exc:  # refused (a safety rule, a bad parameter): never retried
            self._failed(live, f"{type(exc).__name__}: {exc}", retry=False)
            return
        except Exception as exc:
            self._failed(live, f"{type(exc).__name__}: {exc}")
            return
        self._tally.core_seconds += float(outcome.usage.get("core_seconds", 0.0))
        self._observed(live, values)

    def _checked_values(self, outcome: Outcome) -> dict[str, float]:
        values = finite_values(outcome.values)
        missing = [name for name in self._spec.metric_names() if name not in values]
        if missing:
            what = "objective" if missing[0] in self._spec.objectives else "constrained metric"
            raise ValueError(
                f"the result has no finite value for {what} {missing[0]!r}; "
                f"it has {sorted(outcome.values)}"
            )
        return values

    def _observed(self, live: _Live, values: dict[str, float]) -> None:
        with self._ctx.mutation("write", self._resource, {"op": "observe", "trial": live.id}) as s:
            _update_trial(s, live.id, state="observed", finished_at=utcnow(), error="")
            observation_id = s.scalar(
                insert(ObservationRow)
                .values(trial_id=live.id, values=values)
                .returning(ObservationRow.id)
            )
            assert observation_id is not None
            edge = Edge(
                Node("observation", observation_id), "wasGeneratedBy", Node("trial", live.id)
            )
            self._prov.record(s, [edge])
            self._save_usage(s)
        self._planner.tell([Observation(live.params, values)])
        self._count_observation(live, values, observation_id)
        self._report()
        if self._tally.observed % self._spec.snapshot_every == 0:
            self._snapshots.snapshot(self._planner, self._tally.best)

    def _failed(self, live: _Live, error: str, retry: bool = True) -> None:
        """Record a failed attempt; retry it while the budget allows.

        Not with ``retry`` False: the same parameters would be refused again.
        """
        retry = retry and live.attempts <= self._spec.budget.retries and not self._stop_reason
        with self._ctx.mutation("write", self._resource, {"op": "fail", "trial": live.id}) as s:
            if retry:
                _update_trial(s, live.id, state="proposed", error=error)
            else:
                _update_trial(s, live.id, state="failed", error=error, finished_at=utcnow())
            self._save_usage(s)
        if retry:
            self._queued.insert(0, live)
            return
        self._planner.tell([Observation(live.params, {}, failed=True)])
        self._tally.failed += 1
        self._tally.cost += self._cost(live)
        self._report()

    def _refused_by_allocation(self, live: _Live, error: AllocationExceeded) -> None:
        """Stop starting trials; the refused one waits to be canceled with the others."""
        self._out_of_allocation = True
        self._stop_reason = self._stop_reason or f"allocation exhausted: {error}"
        with self._ctx.mutation("write", self._resource, {"op": "refused", "trial": live.id}) as s:
            _update_trial(s, live.id, state="proposed", error=str(error))
        self._queued.insert(0, live)

    # -- recovery ---------------------------------------------------------------------------

    def _load_usage(self) -> None:
        """Read the wall time and core time that earlier runs of this campaign used."""
        with self._ctx.reading(self._resource) as s:
            campaign = s.get_one(Campaign, self._id)
            self._wall_before = campaign.wall_seconds
            self._tally.core_seconds = campaign.core_seconds
        self._started = time.monotonic()

    def _recover(self) -> None:
        """Rebuild the planner and counters from the catalog; settle what was in flight."""
        with self._ctx.reading(self._resource) as s:
            state = s.get_one(Campaign, self._id).planner_state
            if state:
                self._planner.load_state_dict(state)
            if self._warm is not None:
                self._planner.tell(list(self._warm.observations))
            trials = s.scalars(select(Trial).where(Trial.campaign_id == self._id)).all()
            stored = {
                o.trial_id: (o.id, o.values)
                for o in s.scalars(
                    select(ObservationRow)
                    .join(Trial, Trial.id == ObservationRow.trial_id)
                    .where(Trial.campaign_id == self._id)
                )
            }
        self._tally.total = len(trials)
        self._planner.tell(self._replay(trials, stored))
        self._snapshots.restore()
        for t in sorted(trials, key=lambda t: t.number):
            live = _Live(t.id, t.number, dict(t.params), t.attempts)
            if t.state == "proposed":
                self._queued.append(live)
            elif t.state == "running":
                self._reattach(live, t.external_id)

    def _replay(
        self, trials: Sequence[Trial], stored: Mapping[int, tuple[int, dict[str, Any]]]
    ) -> list[Observation]:
        """Count the finished trials and return what the planner was told of them, in order."""
        finished = sorted(
            (t for t in trials if t.state in _FINAL),
            key=lambda t: (t.finished_at or t.proposed_at, t.id),
        )
        observations = []
        for t in finished:
            live = _Live(t.id, t.number, dict(t.params), t.attempts)
            if t.state == "observed":
                observation_id, values = stored[t.id]
                observations.append(Observation(live.params, values))
                self._count_observation(live, values, observation_id)
                continue
            observations.append(Observation(live.params, {}, failed=True))
            if t.state == "failed":
                self._tally.failed += 1
                self._tally.cost += self._cost(live)
            else:
                self._tally.uncounted += 1
        return observations

    def _reattach(self, live: _Live, external_id: str) -> None:
        future = self._runner.reattach(external_id)
        if future is not None:
            self._inflight[future] = live
            return
        self._mark_interrupted([live], _LOST)
        self._planner.tell([Observation(live.params, {}, failed=True)])

    def _abandon_inflight(self, why: str) -> None:
        """Mark every trial in flight ``interrupted`` (the loop is leaving without them)."""
        lives = list(self._inflight.values())
        if lives:
            self._mark_interrupted(lives, _ABORTED.format(why=why))
            self._inflight.clear()

    def _mark_interrupted(self, lives: Sequence[_Live], error: str) -> None:
        ids = [live.id for live in lives]
        with self._ctx.mutation("write", self._resource, {"op": "interrupt", "trials": ids}) as s:
            s.execute(
                update(Trial)
                .where(Trial.id.in_(ids))
                .values(state="interrupted", finished_at=utcnow(), error=error)
            )
        self._tally.uncounted += len(ids)

    # -- bookkeeping ------------------------------------------------------------------------

    def _count_observation(self, live: _Live, values: Mapping[str, float], obs_id: int) -> None:
        tally = self._tally
        tally.observed += 1
        self._snapshots.add(live.number, live.params, values, obs_id)
        self._tally.cost += self._cost(live)
        if not counts_for_best(self._spec, live.params, values, self._outcome_constraints):
            tally.since_best += 1
            return
        value = values[self._objective]
        if tally.best is None or _better(value, tally.best, self._direction):
            tally.best, tally.since_best = value, 0
        else:
            tally.since_best += 1

    def _stopping(self) -> str:
        """Why no more trials should start, or '' to go on."""
        budget, stop, tally = self._spec.budget, self._spec.stop, self._tally
        if tally.counted >= budget.trials and not self._queued:
            return f"trial budget of {budget.trials} used"
        if budget.wall_seconds is not None and self._elapsed() >= budget.wall_seconds:
            return f"wall-time budget of {budget.wall} used"
        if budget.core_hours is not None and tally.core_seconds >= budget.core_hours * 3600:
            return f"core-hour budget of {budget.core_hours} used"
        if budget.cost is not None:
            running = sum(self._cost(live) for live in self._inflight.values())
            if tally.cost + running >= budget.cost:
                return f"cost budget of {budget.cost:g} used"
        if (
            stop.target is not None
            and tally.best is not None
            and (tally.best == stop.target or _better(tally.best, stop.target, self._direction))
        ):
            return f"target {self._objective} = {stop.target} reached"
        if stop.no_improvement is not None and tally.since_best >= stop.no_improvement:
            return f"no improvement in {stop.no_improvement} trials"
        return ""

    def _affordable(self) -> int:
        """How many more trials the cost budget allows now, at the costliest fidelity.

        At least one while any cost is left, so a campaign overshoots its cost budget by
        at most one trial's cost.
        """
        budget = self._spec.budget.cost
        if budget is None or self._spec.fidelities is None:
            return self._spec.budget.trials
        running = sum(self._cost(live) for live in [*self._inflight.values(), *self._queued])
        left = budget - self._tally.cost - running
        costliest = max(f.cost for f in self._spec.fidelities.values())
        return max(1, int(left // costliest)) if left > 0 else 0

    def _cost(self, live: _Live) -> float:
        """What one trial costs at its fidelity (0 without fidelities)."""
        if self._spec.fidelities is None:
            return 0.0
        return self._spec.fidelities[str(live.params[FIDELITY])].cost

    def _wait_s(self) -> float | None:
        wall = self._spec.budget.wall_seconds
        return None if wall is None else max(0.05, wall - self._elapsed())

    def _elapsed(self) -> float:
        return self._wall_before + (time.monotonic() - self._started)

    def _report(self) -> None:
        if self._reporter is not None:
            tally = self._tally
            done = tally.observed + tally.failed
            self._reporter.update(done, self._spec.budget.trials, tally.failed, tally.best)

    def _save_usage(self, s: Session, **values: Any) -> None:
        """Store the campaign's wall and core time (and ``values``) in ``s``'s transaction."""
        s.execute(
            update(Campaign)
            .where(Campaign.id == self._id)
            .values(wall_seconds=self._elapsed(), core_seconds=self._tally.core_seconds, **values)
        )

    def _finalize(self) -> str:
        self._cancel_queued()
        self._snapshots.snapshot(self._planner, self._tally.best)
        tally = self._tally
        if self._out_of_allocation:
            self._set_state("stopped", reason=self._stop_reason)
            return "stopped"
        if tally.observed == 0 and tally.failed > 0:
            self._set_state("failed", error="every trial failed; see the trials' errors")
            return "failed"
        self._set_state("completed", reason=self._stop_reason or "budget used")
        return "completed"

    def _cancel_queued(self) -> None:
        """Trials proposed but never started when the loop ends are marked ``canceled``."""
        if not self._queued:
            return
        ids = [live.id for live in self._queued]
        with self._ctx.mutation("write", self._resource, {"op": "cancel", "trials": ids}) as s:
            s.execute(
                update(Trial)
                .where(Trial.id.in_(ids))
                .values(
                    state="canceled", finished_at=utcnow(), error=f"not run: {self._stop_reason}"
                )
            )
        self._tally.uncounted += len(ids)
        self._queued.clear()

    def _set_state(
        self, state: str, *, reason: str = "", error: str = "", started: bool = False
    ) -> None:
        with self._ctx.mutation("write", self._resource, {"op": "state", "state": state}) as s:
            campaign = s.get_one(Campaign, self._id)
            campaign.state = state
            if started:
                campaign.started_at = campaign.started_at or utcnow()
                campaign.finished_at = None
            else:
                campaign.finished_at = utcnow()
                campaign.wall_seconds = self._elapsed()
                campaign.core_seconds = self._tally.core_seconds
            campaign.stop_reason, campaign.error = reason, error


def _update_trial(s: Session, trial_id: int, **values: Any) -> None:
    s.execute(update(Trial).where(Trial.id == trial_id).values(**values))


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def best_of(
    rows: Sequence[Mapping[str, Any]], objective: str, direction: str
) -> Mapping[str, Any] | None:
    """The row whose ``values`` hold the best finite ``objective``, or None."""
    best: Mapping[str, Any] | None = None
    for row in rows:
        value = row["values"].get(objective)
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if best is None or _better(float(value), float(best["values"][objective]), direction):
            best = row
    return best


def counts_for_best(
    spec: CampaignSpec,
    params: Mapping[str, Any],
    values: Mapping[str, Any],
    constraints: Sequence[OutcomeConstraint],
) -> bool:
    """Whether an observation may be the campaign's best.

    It must be at the target fidelity (with fidelities) and meet every outcome constraint
    (``constraints``, the spec's parsed once by the caller).
    """
    if spec.target is not None and params.get(FIDELITY) != spec.target:
        return False
    for c in constraints:
        value = values.get(c.metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if not c.satisfied(float(value)):
            return False
    return True
