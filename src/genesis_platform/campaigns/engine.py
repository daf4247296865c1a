"""The closed loop: propose, store, dispatch, observe, store, tell — until the budget ends.

Loop invariant (DESIGN.md): a trial is written (``proposed``) before it is dispatched; its
external id is written (``running``) *before* the runner is called, so an attempt that
might have started is never started again; its observation is written before the planner
is told. On resume, ``proposed`` trials are dispatched, ``running`` ones are re-attached
through their external id or, where the runner cannot (in-process backends), marked
``interrupted`` and not re-run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from genesis_platform.campaigns.runners import Outcome, TrialRunner, finite_values
from genesis_platform.campaigns.spec import CampaignSpec
from genesis_platform.catalog.tables import (
    Campaign,
    Dataset,
    DatasetVersion,
    Model,
    ObservationRow,
    ProvenanceEdge,
    Trial,
    utcnow,
)
from genesis_platform.data.service import DatasetService, DatasetVersionInfo
from genesis_platform.errors import GenesisError
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.modelhub.service import SURROGATE_FRAMEWORK, ModelService
from genesis_platform.planning.protocols import Observation, Planner
from genesis_platform.provenance import Edge, Node, ProvenanceGraph

__all__ = ["CampaignEngine", "LoopReporter", "dataset_name", "model_name"]

_INTERRUPTED = (
    "interrupted: the process running the campaign stopped while this attempt was in flight "
    "and its runner cannot re-attach; it is not re-run, since it may have partly run"
)


def dataset_name(campaign_id: int, name: str) -> str:
    """Name of a campaign's observation dataset."""
    return f"{name}-{campaign_id}-observations"


def model_name(campaign_id: int, name: str) -> str:
    """Name of a campaign's surrogate model."""
    return f"{name}-{campaign_id}-surrogate"


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
    best: float | None = None
    since_best: int = 0
    core_seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    unsnapshotted: list[int] = field(default_factory=list)
    last_version: DatasetVersionInfo | None = None


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
    ) -> None:
        self._ctx = ctx
        self._id = campaign_id
        self._spec = spec
        self._planner = planner
        self._runner = runner
        self._datasets = datasets
        self._models = models
        self._reporter = reporter
        self._prov = ProvenanceGraph()
        self._resource = Resource("campaign", str(campaign_id))
        self._objective, self._direction = next(iter(spec.objectives.items()))
        self._tally = _Tally()
        self._queued: list[_Live] = []
        self._inflight: dict[Future[Outcome], _Live] = {}
        self._wall_before = 0.0
        self._started = time.monotonic()
        self._stop_reason = ""

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> str:
        """Run until the budget or a stopping rule ends the campaign; return its final state.

        KeyboardInterrupt marks the campaign ``stopped`` (resumable) and propagates.
        """
        self._set_state("running", started=True)
        try:
            self._recover()
            self._report()
            while True:
                if not self._stop_reason:
                    self._stop_reason = self._stopping()
                if not self._stop_reason:
                    self._fill()
                if not self._inflight:
                    break
                done, _ = wait(self._inflight, timeout=self._wait_s(), return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(future)
            return self._finalize()
        except KeyboardInterrupt:
            self._set_state("stopped", reason="interrupted by the user; resume to go on")
            raise
        except GenesisError as exc:
            self._set_state("failed", error=str(exc))
            raise
        finally:
            self._runner.close()

    def _fill(self) -> None:
        free = self._runner.slots() - len(self._inflight)
        while free > 0 and self._queued:
            self._dispatch(self._queued.pop(0))
            free -= 1
        wanted = min(free, self._spec.budget.trials - self._tally.total)
        if wanted > 0:
            for live, external_id in self._propose(wanted):
                self._start(live, external_id)

    def _propose(self, n: int) -> list[tuple[_Live, str]]:
        """Ask the planner and store its points as trials, in one transaction.

        The trials are stored already marked dispatched (``running``, with their external
        ids), so the caller can start them at once and a crash can never start one twice.
        """
        pending = [live.params for live in self._inflight.values()]
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
            self._update_campaign(
                s, planner_state=self._planner.state_dict(), wall_seconds=self._elapsed()
            )
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
        except Exception as exc:
            self._failed(live, f"{type(exc).__name__}: {exc}")
            return
        self._tally.core_seconds += float(outcome.usage.get("core_seconds", 0.0))
        self._observed(live, values)

    def _checked_values(self, outcome: Outcome) -> dict[str, float]:
        values = finite_values(outcome.values)
        missing = [name for name in self._spec.objectives if name not in values]
        if missing:
            raise ValueError(
                f"the result has no finite value for objective {missing[0]!r}; "
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
            self._prov.record(
                s,
                [
                    Edge(
                        Node("observation", observation_id),
                        "wasGeneratedBy",
                        Node("trial", live.id),
                    )
                ],
            )
            self._update_campaign(s, wall_seconds=self._elapsed())
        self._planner.tell([Observation(live.params, values)])
        self._count_observation(live, values, observation_id)
        self._report()
        if self._tally.observed % self._spec.snapshot_every == 0:
            self._snapshot()

    def _failed(self, live: _Live, error: str) -> None:
        retry = live.attempts <= self._spec.budget.retries and not self._stop_reason
        with self._ctx.mutation("write", self._resource, {"op": "fail", "trial": live.id}) as s:
            if retry:
                _update_trial(s, live.id, state="proposed", error=error)
            else:
                _update_trial(s, live.id, state="failed", error=error, finished_at=utcnow())
        if retry:
            self._queued.insert(0, live)
            return
        self._planner.tell([Observation(live.params, {}, failed=True)])
        self._tally.failed += 1
        self._report()

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the planner and counters from the catalog; settle what was in flight."""
        with self._ctx.reading(self._resource) as s:
            campaign = s.get_one(Campaign, self._id)
            self._wall_before = campaign.wall_seconds
            if campaign.planner_state:
                self._planner.load_state_dict(campaign.planner_state)
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
        self._tally.last_version = self._latest_snapshot()
        finished = sorted(
            (t for t in trials if t.state in ("observed", "failed", "interrupted")),
            key=lambda t: (t.finished_at or t.proposed_at, t.id),
        )
        observations = []
        for t in finished:
            live = _Live(t.id, t.number, dict(t.params), t.attempts)
            if t.state == "observed":
                observation_id, values = stored[t.id]
                observations.append(Observation(live.params, values))
                self._count_observation(live, values, observation_id)
            else:
                observations.append(Observation(live.params, {}, failed=True))
                self._tally.failed += 1
        members = self._snapshot_members()
        self._tally.unsnapshotted = [i for i in self._tally.unsnapshotted if i not in members]
        if observations:
            self._planner.tell(observations)
        for t in sorted(trials, key=lambda t: t.number):
            live = _Live(t.id, t.number, dict(t.params), t.attempts)
            if t.state == "proposed":
                self._queued.append(live)
            elif t.state == "running":
                self._reattach(live, t.external_id)

    def _reattach(self, live: _Live, external_id: str) -> None:
        future = self._runner.reattach(external_id)
        if future is not None:
            self._inflight[future] = live
            return
        with self._ctx.mutation(
            "write", self._resource, {"op": "interrupt", "trial": live.id}
        ) as s:
            _update_trial(s, live.id, state="interrupted", finished_at=utcnow(), error=_INTERRUPTED)
        self._planner.tell([Observation(live.params, {}, failed=True)])
        self._tally.failed += 1

    def _snapshot_members(self) -> set[int]:
        """Ids of the observations some snapshot already holds."""
        if self._tally.last_version is None:
            return set()
        with self._ctx.db.session() as s:
            return set(
                s.scalars(
                    select(ProvenanceEdge.object_id)
                    .join(DatasetVersion, DatasetVersion.id == ProvenanceEdge.subject_id)
                    .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                    .where(
                        ProvenanceEdge.subject_kind == "dataset_version",
                        ProvenanceEdge.relation == "hadMember",
                        Dataset.name == self._dataset_name,
                    )
                )
            )

    def _latest_snapshot(self) -> DatasetVersionInfo | None:
        with self._ctx.db.session() as s:
            dataset_id = s.get_one(Campaign, self._id).dataset_id
        if dataset_id is None:
            return None
        return self._datasets.get(self._dataset_name)

    # -- bookkeeping ------------------------------------------------------------------------

    def _count_observation(self, live: _Live, values: Mapping[str, float], obs_id: int) -> None:
        tally = self._tally
        tally.observed += 1
        tally.rows.append({"trial": live.number, **live.params, **values})
        tally.unsnapshotted.append(obs_id)
        value = values[self._objective]
        if tally.best is None or _better(value, tally.best, self._direction):
            tally.best, tally.since_best = value, 0
        else:
            tally.since_best += 1

    def _stopping(self) -> str:
        """Why no more trials should start, or '' to go on."""
        budget, stop, tally = self._spec.budget, self._spec.stop, self._tally
        if tally.total >= budget.trials and not self._queued:
            return f"trial budget of {budget.trials} used"
        if budget.wall_seconds is not None and self._elapsed() >= budget.wall_seconds:
            return f"wall-time budget of {budget.wall} used"
        if budget.core_hours is not None and tally.core_seconds >= budget.core_hours * 3600:
            return f"core-hour budget of {budget.core_hours} used"
        if (
            stop.target is not None
            and tally.best is not None
            and (tally.best == stop.target or _better(tally.best, stop.target, self._direction))
        ):
            return f"target {self._objective} = {stop.target} reached"
        if stop.no_improvement is not None and tally.since_best >= stop.no_improvement:
            return f"no improvement in {stop.no_improvement} trials"
        return ""

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

    @property
    def _dataset_name(self) -> str:
        return dataset_name(self._id, self._spec.name)

    def _snapshot(self) -> None:
        """Store the observations as a new dataset version and register the surrogate."""
        tally = self._tally
        if not tally.unsnapshotted:
            return
        members = [Node("observation", i) for i in tally.unsnapshotted]
        version = self._datasets.add_table(
            self._dataset_name,
            pa.Table.from_pylist(tally.rows),
            filename="observations.parquet",
            message=f"{tally.observed} observations of campaign {self._id}",
            description=f"Observations of campaign {self._id} ({self._spec.name})",
            members=members,
        )
        tally.unsnapshotted, tally.last_version = [], version
        model_id = self._register_surrogate(version)
        with self._ctx.mutation("write", self._resource, {"op": "snapshot"}) as s:
            campaign = s.get_one(Campaign, self._id)
            campaign.dataset_id = _dataset_id(s, self._dataset_name)
            campaign.model_id = model_id if model_id is not None else campaign.model_id

    def _register_surrogate(self, version: DatasetVersionInfo) -> int | None:
        surrogate = self._planner.surrogate()
        if surrogate is None:
            return None
        info = self._models.register(
            model_name(self._id, self._spec.name),
            json.dumps(surrogate.to_json()).encode(),
            framework=SURROGATE_FRAMEWORK,
            metrics={
                "n_observations": self._tally.observed,
                f"best_{self._objective}": self._tally.best,
            },
            trained_on=version.ref,
            description=f"Surrogate of campaign {self._id} ({self._spec.name})",
        )
        return _model_id(self._ctx, info.name)

    def _finalize(self) -> str:
        self._cancel_queued()
        self._snapshot()
        tally = self._tally
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
            for trial in s.scalars(select(Trial).where(Trial.id.in_(ids))):
                trial.state, trial.finished_at = "canceled", utcnow()
                trial.error = f"not run: {self._stop_reason}"
        self._queued.clear()

    def _update_campaign(self, s: Session, **values: Any) -> None:
        s.execute(update(Campaign).where(Campaign.id == self._id).values(**values))

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
            campaign.stop_reason, campaign.error = reason, error


def _update_trial(s: Session, trial_id: int, **values: Any) -> None:
    s.execute(update(Trial).where(Trial.id == trial_id).values(**values))


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def _dataset_id(s: Session, name: str) -> int | None:
    return s.scalar(select(Dataset.id).where(Dataset.name == name))


def _model_id(ctx: ServiceContext, name: str) -> int | None:
    with ctx.db.session() as s:
        return s.scalar(select(Model.id).where(Model.name == name))


def best_of(
    rows: Sequence[Mapping[str, Any]], objective: str, direction: str
) -> Mapping[str, Any] | None:
    """The row with the best finite ``objective`` value, or None."""
    best: Mapping[str, Any] | None = None
    for row in rows:
        value = row.get(objective)
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if best is None or _better(float(value), float(best[objective]), direction):
            best = row
    return best
