"""The station service (``p.stations``): registered stations, shared by campaigns.

A station is registered with a driver, the driver's options and a safety policy
(``genesis station add``); one simulated station per built-in emulator always exists.
In a process, each station is opened once, behind a
:class:`~genesis_platform.labs.scheduler.StationScheduler` that every campaign of every
project shares (:meth:`StationService.handle`). Operations, their instrument-seconds,
reservation and maintenance windows are stored in the catalog.

Operators act on a station from any shell: ``abort`` and ``refill`` are stored as
commands that every process having the station open carries out within about half a
second (a watcher thread polls for them), and those processes publish the station's status
every second, which ``genesis station status`` reads.

An operation of a project with an allocation on the station
(:mod:`~genesis_platform.governance.allocations`) is refused before it is queued once
nothing is left of it, and its instrument time is charged with its end's record.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update

from genesis_platform.catalog.tables import (
    StationCommandRow,
    StationOperationRow,
    StationRow,
    StationStatusRow,
    StationWindowRow,
    utcnow,
)
from genesis_platform.compute.tasks import process_owner
from genesis_platform.errors import AllocationExceeded, InvalidInput, NotFound, StationError
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.allocations import AllocationService
from genesis_platform.governance.state import AssetFacts
from genesis_platform.labs._futures import failed
from genesis_platform.labs._oplog import OperationRecords
from genesis_platform.labs.drivers import StationConfig, open_driver
from genesis_platform.labs.emulators import EMULATORS, get_emulator
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    Refillable,
    Station,
    StationInfo,
    StationState,
    StationStatus,
)
from genesis_platform.labs.safety import SafetyPolicy, describe_config
from genesis_platform.labs.scheduler import StationScheduler, Window, with_windows

__all__ = ["InventoryRow", "OperationInfo", "StationHandle", "StationRecord", "StationService"]

_log = logging.getLogger(__name__)
_WATCH_S = 0.5
"""How often a process polls for operators' commands to the stations it has open."""
_STATUS_FRESH_S = 5.0
"""A published status older than this is not trusted (its process may be gone)."""
_WINDOW_CACHE_S = 1.0


@dataclass(frozen=True)
class StationRecord:
    """A station as registered: driver, options, safety policy (built-ins are not stored)."""

    name: str
    driver: str
    options: Mapping[str, Any]
    safety: Mapping[str, Any]
    builtin: bool = False
    created_by: str = ""

    def config(self) -> StationConfig:
        """Its driver config."""
        return StationConfig(self.name, self.driver, self.options)

    def safety_lines(self) -> list[str]:
        """The declared safety features, one per line: limits, interlocks, timeout."""
        return describe_config(self.safety)


@dataclass(frozen=True)
class OperationInfo:
    """One recorded station operation."""

    id: int
    station: str
    operation_id: str
    project: str
    priority: int
    params: Mapping[str, Any]
    state: str
    external_id: str
    values: Mapping[str, Any] | None
    error: str
    instrument_seconds: float
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class InventoryRow:
    """One station in the lab readiness inventory (``genesis station inventory``).

    Attributes:
        name: The station.
        driver: Its driver.
        protocol: How Genesis talks to it (simulated, SiLA 2, Bluesky).
        capabilities: What it does.
        safety: The safety features declared (limits, interlocks, timeout), one per line.
        operations: Operations sent to it in the period (completed, failed, timed out, or
            aborted while running).
        instrument_seconds: Instrument time they used.
        utilization: ``instrument_seconds / (period * slots)``.
        uptime: Share of the period outside maintenance windows.
        faults: Operations that failed or timed out in the period.
        last_fault: The newest fault's message ('' without faults).
        refused: Operations the safety policy refused in the period.
        reachable: Whether its driver could be opened to describe it (else the reason).
    """

    name: str
    driver: str
    protocol: str
    capabilities: tuple[str, ...]
    safety: tuple[str, ...]
    operations: int
    instrument_seconds: float
    utilization: float
    uptime: float
    faults: int
    last_fault: str
    refused: int
    reachable: str = "yes"
    slots: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)


class StationHandle:
    """A station as one campaign (of one project, at one priority) uses it.

    It has the station protocol: ``run`` goes through the station's shared scheduler with
    the project and priority; ``abort`` stops this handle's queued operations and, on a
    driver that can stop one operation (:class:`~genesis_platform.labs.protocols.Cancellable`),
    its running ones; ``close`` releases nothing shared.
    """

    def __init__(
        self,
        scheduler: StationScheduler,
        project: str,
        priority: int,
        owned: bool = False,
        on_close: Callable[[], object] | None = None,
        allocations: AllocationService | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._project = project
        self._priority = priority
        self._owned = owned
        self._on_close = on_close
        self._allocations = allocations
        self._mine: dict[str, Future[Measurement]] = {}
        self._lock = threading.Lock()

    def describe(self) -> StationInfo:
        """The station's description."""
        return self._scheduler.describe()

    def status(self) -> StationStatus:
        """The station's status (all campaigns' operations)."""
        return self._scheduler.status()

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` for this handle's project and priority.

        The future fails with AllocationExceeded, and nothing is queued or recorded, when
        the project has an allocation on the station and nothing is left of it (or it is
        not active).
        """
        if self._allocations is not None:
            try:
                self._allocations.check(self._project, "station", self._scheduler.name)
            except AllocationExceeded as exc:
                return failed(exc)
        future = self._scheduler.submit(op, self._project, self._priority)
        with self._lock:
            self._mine[op.id] = future
        future.add_done_callback(lambda _: self._forget(op.id, future))
        return future

    def abort(self) -> None:
        """Stop this handle's queued and running operations (others' go on)."""
        if self._owned:
            self._scheduler.abort()
            return
        with self._lock:
            ids = list(self._mine)
        for op_id in ids:
            self._scheduler.cancel(op_id)

    def close(self) -> None:
        """Close a private station; a shared one stays open for other campaigns."""
        if self._owned:
            self._scheduler.close()
        if self._on_close is not None:
            self._on_close()

    def _forget(self, op_id: str, future: Future[Measurement]) -> None:
        with self._lock:
            if self._mine.get(op_id) is future:
                del self._mine[op_id]


class StationService:
    """Stations of one platform (their use limited by ``allocations`` when given)."""

    def __init__(self, ctx: ServiceContext, allocations: AllocationService | None = None) -> None:
        self._ctx = ctx
        ctx.resolve("station", self._builtin_facts)
        self._allocations = allocations
        self._lock = threading.Lock()
        self._records = OperationRecords(ctx, allocations=allocations)
        self._private_records = OperationRecords(ctx, ends_wait=False, allocations=allocations)
        self._open: dict[str, StationScheduler] = {}
        self._private: dict[str, list[StationScheduler]] = {}
        self._seen: dict[str, int] = {}  # station -> newest command id carried out or skipped
        self._owner = process_owner()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- registry ----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        driver: str,
        options: Mapping[str, Any] | None = None,
        safety: Mapping[str, Any] | None = None,
    ) -> StationRecord:
        """Register a station.

        Args:
            name: Its name.
            driver: ``simulated``, ``sila2``, ``bluesky`` or a plugin's.
            options: The driver's options (:mod:`genesis_platform.labs.drivers`).
            safety: ``{"limits": {param: "LOW:HIGH" | "A,B"}, "interlocks": [...],
                "timeout_s": s}`` (:class:`~genesis_platform.labs.safety.SafetyPolicy`).

        Raises:
            InvalidInput: a bad name, driver, option or safety rule (naming the field), or
                the name is taken.
            StationError: the safety rules need the station's parameters and the station
                cannot be reached to describe them.
        """
        config = StationConfig.create(name, driver, options)
        policy = SafetyPolicy.from_config(safety or {}, self._parameters(config, bool(safety)))
        if name in EMULATORS:
            raise InvalidInput("name", f"{name!r} is a built-in station", "choose another name")
        with self._ctx.mutation("write", Resource("station", name), {"op": "add"}) as s:
            if s.scalar(select(StationRow.id).where(StationRow.name == name)) is not None:
                raise InvalidInput(
                    "name", f"station {name!r} exists", "remove it first or choose another name"
                )
            s.add(
                StationRow(
                    name=name,
                    driver=driver,
                    options=dict(config.options),
                    safety=policy.to_config(),
                    created_by=str(self._ctx.principal),
                )
            )
            self._ctx.register_asset(s, "station", name)
        return self.get(name)

    def list(self) -> builtins.list[StationRecord]:
        """Every station: the built-in ones and the registered ones, by name."""
        with self._ctx.reading(Resource("station", "*")) as s:
            rows = [_record(row) for row in s.scalars(select(StationRow))]
        seen = self._ctx.visible("station", [record.name for record in rows])
        rows = [record for record, ok in zip(rows, seen, strict=True) if ok]
        return sorted([*_builtins(), *rows], key=lambda record: record.name)

    def get(self, name: str) -> StationRecord:
        """Station ``name`` as registered.

        Raises:
            NotFound: no such station.
        """
        with self._ctx.reading(Resource("station", name)) as s:
            row = s.scalar(select(StationRow).where(StationRow.name == name))
            if row is not None:
                return _record(row)
        if name in EMULATORS:
            return _builtin(name)
        raise NotFound("station", name, "`genesis station list` shows the stations")

    def describe(self, name: str) -> StationInfo:
        """What station ``name`` is and accepts (opens it in this process).

        Raises:
            NotFound: no such station.
            StationError: it cannot be reached.
        """
        return self.open(name).describe()

    def describe_quietly(self, record: StationRecord) -> StationInfo:
        """Station ``record``'s description without keeping it open here.

        From its scheduler when this process has it open, else from its driver, opened
        and closed again (the inventory describes every station this way).

        Raises:
            StationError: it cannot be reached.
        """
        with self._lock:
            scheduler = self._open.get(record.name)
        if scheduler is not None:
            return scheduler.describe()
        station = open_driver(record.config())
        try:
            return station.describe()
        finally:
            station.close()

    def remove(self, name: str) -> None:
        """Unregister station ``name`` (its operation records stay).

        Raises:
            InvalidInput: it is built in, or has operations queued or running here.
            NotFound: no such station.
        """
        record = self.get(name)
        if record.builtin:
            raise InvalidInput("name", f"{name!r} is built in", "it cannot be removed")
        with self._lock:
            scheduler = self._open.get(name)
        if scheduler is not None:
            if scheduler.status().busy_slots or scheduler.status().queue_length:
                raise InvalidInput(
                    "name", f"station {name!r} has operations", "abort them or wait, then remove"
                )
            with self._lock:
                self._open.pop(name, None)
            scheduler.close()
        with self._ctx.mutation("write", Resource("station", name), {"op": "remove"}) as s:
            s.execute(delete(StationRow).where(StationRow.name == name))
            s.execute(delete(StationStatusRow).where(StationStatusRow.station == name))
            self._ctx.forget_asset(s, "station", name)

    # -- using -------------------------------------------------------------------------------

    def open(self, name: str) -> StationScheduler:
        """Station ``name``'s scheduler in this process (opened on first use).

        Raises:
            NotFound: no such station.
            StationError: its driver cannot be reached.
        """
        with self._lock:
            scheduler = self._open.get(name)
        if scheduler is not None:
            return scheduler
        record = self.get(name)
        self._ctx.authorize("run", Resource("station", name))
        station = open_driver(record.config())
        try:
            policy = _PolicyCache(self, name, station.describe().parameters)
            policy()  # the stored rules must fit the station
        except Exception:
            station.close()
            raise
        scheduler = StationScheduler(
            name,
            station,
            safety=policy,
            log=self._records,
            windows=_WindowCache(self, name),
        )
        self._skip_old_commands(name)
        with self._lock:
            existing = self._open.setdefault(name, scheduler)
        if existing is not scheduler:  # another thread opened it meanwhile
            scheduler.close()
        self._start_watcher()
        return existing

    def handle(self, name: str, project: str = "", priority: int = 0) -> StationHandle:
        """Station ``name`` for one campaign: its operations count for ``project``.

        ``project`` defaults to the principal's.

        Raises:
            NotFound: no such station.
            StationError: its driver cannot be reached.
        """
        project = project or self._ctx.principal.project or ""
        self._ctx.check_project(project)
        return StationHandle(self.open(name), project, priority, allocations=self._allocations)

    def private(
        self, name: str, station: Station, project: str = "", priority: int = 0
    ) -> StationHandle:
        """A campaign's own instance of a built-in station, opened by the caller.

        Its operations are recorded like a shared station's; closing the handle closes it.
        """
        scheduler = StationScheduler(
            name,
            station,
            safety=SafetyPolicy.from_config(self.get(name).safety, station.describe().parameters),
            log=self._private_records,
            windows=_WindowCache(self, name),
        )
        self._skip_old_commands(name)
        with self._lock:
            self._private.setdefault(name, []).append(scheduler)
        self._start_watcher()
        return StationHandle(
            scheduler,
            project or self._ctx.principal.project or "",
            priority,
            owned=True,
            on_close=lambda: self._forget(scheduler),
            allocations=self._allocations,
        )

    def status(self, name: str) -> StationStatus:
        """Station ``name``'s status now.

        From this process when it has the station open, else from another process that has
        (published within the last seconds), else by asking its driver.
        """
        self.get(name)
        with self._lock:
            scheduler = self._open.get(name)
        if scheduler is not None:
            return scheduler.status()
        published = self._published_status(name)
        if published is not None:
            return published
        try:
            station = open_driver(self.get(name).config())
        except StationError as exc:
            return StationStatus(StationState.OFFLINE, reason=str(exc))
        try:
            return with_windows(station.status(), self.windows(name))
        finally:
            station.close()

    def abort(self, name: str, wait_s: float = 2.0) -> bool:
        """Abort what runs on station ``name``, in every process that has it open.

        A station behind a server (``sila2``) is also told directly, so an operation that no
        Genesis process follows is stopped too.

        Returns:
            True when the abort was carried out (by this process, another one within
            ``wait_s``, or the station's server); False when nothing could be told.
        """
        applied = self._command(name, "abort", "", wait_s)
        record = self.get(name)
        if applied or record.driver != "sila2":
            return applied
        try:
            station = open_driver(record.config())
        except (StationError, InvalidInput):  # unreachable, or the extra is missing
            return False
        try:
            tell = getattr(station, "abort_server", None)
            return bool(tell()) if callable(tell) else False
        except StationError:
            return False
        finally:
            station.close()

    def refill(self, name: str, consumable: str | None = None, wait_s: float = 2.0) -> bool:
        """Refill a consumable of station ``name`` (all of them by default).

        Returns:
            As :meth:`abort`.

        Raises:
            InvalidInput: the station has no consumables (field ``consumable``).
        """
        record = self.get(name)
        if record.driver == "simulated" and "reservoir_ml" not in record.options:
            raise InvalidInput(
                "consumable",
                f"station {name!r} has no consumables",
                "add it with --option reservoir_ml=VOLUME to simulate one",
            )
        return self._command(name, "refill", consumable or "", wait_s)

    # -- windows -----------------------------------------------------------------------------

    def reserve(
        self,
        name: str,
        project: str,
        starts_at: dt.datetime,
        ends_at: dt.datetime,
        reason: str = "",
    ) -> Window:
        """Reserve station ``name`` for ``project`` from ``starts_at`` to ``ends_at``.

        Raises:
            InvalidInput: an empty project, a window that ends before it starts, or one
                that overlaps another reservation of another project.
        """
        if not project:
            raise InvalidInput("project", "a reservation needs a project", "give --project")
        return self._add_window(name, "reservation", project, starts_at, ends_at, reason)

    def maintenance(
        self, name: str, starts_at: dt.datetime, ends_at: dt.datetime, reason: str = ""
    ) -> Window:
        """Take station ``name`` out of service from ``starts_at`` to ``ends_at``."""
        return self._add_window(name, "maintenance", "", starts_at, ends_at, reason)

    def windows(self, name: str, *, include_past: bool = False) -> builtins.list[Window]:
        """Station ``name``'s reservation and maintenance windows, by start."""
        query = select(StationWindowRow).where(StationWindowRow.station == name)
        if not include_past:
            query = query.where(StationWindowRow.ends_at > utcnow())
        with self._ctx.reading(Resource("station", name)) as s:
            rows = s.scalars(query.order_by(StationWindowRow.starts_at)).all()
            return [_window(row) for row in rows]

    def cancel_window(self, window_id: int) -> None:
        """Delete a window.

        Raises:
            NotFound: no such window.
        """
        with self._ctx.db.session() as s:
            row = s.get(StationWindowRow, window_id)
            if row is None:
                raise NotFound("window", window_id, "`genesis station windows NAME` lists them")
            station = row.station
        with self._ctx.mutation("write", Resource("station", station), {"op": "unwindow"}) as s:
            s.execute(delete(StationWindowRow).where(StationWindowRow.id == window_id))

    # -- records -----------------------------------------------------------------------------

    def operations(
        self, *, station: str | None = None, project: str | None = None, limit: int = 50
    ) -> builtins.list[OperationInfo]:
        """The newest recorded operations first."""
        query = select(StationOperationRow).order_by(StationOperationRow.id.desc()).limit(limit)
        if station is not None:
            query = query.where(StationOperationRow.station == station)
        if project is not None:
            query = query.where(StationOperationRow.project == project)
        self._flush_records()
        with self._ctx.reading(Resource("station", station or "*")) as s:
            rows = [_operation(row) for row in s.scalars(query)]
        keep = self._sees_operation()
        return [row for row in rows if keep(row.station, row.project)]

    def usage(
        self, *, project: str | None = None, station: str | None = None
    ) -> dict[tuple[str, str], float]:
        """Instrument-seconds of finished operations per ``(project, station)``."""
        seconds = func.sum(StationOperationRow.instrument_seconds)
        query = select(StationOperationRow.project, StationOperationRow.station, seconds).group_by(
            StationOperationRow.project, StationOperationRow.station
        )
        if project is not None:
            query = query.where(StationOperationRow.project == project)
        if station is not None:
            query = query.where(StationOperationRow.station == station)
        self._flush_records()
        with self._ctx.reading(Resource("station", station or "*")) as s:
            totals = {(p, st): float(total or 0.0) for p, st, total in s.execute(query)}
        keep = self._sees_operation()
        return {key: total for key, total in totals.items() if keep(key[1], key[0])}

    def _builtin_facts(self, name: str) -> AssetFacts | None:
        """A built-in station is the operator's and public: anyone reads and runs it."""
        if name not in EMULATORS:
            return None
        return AssetFacts("station", name, self._ctx.operator, access="public")

    def _sees_operation(self) -> Callable[[str, str], bool]:
        """Whether the principal sees an operation's record, by ``(station, project)``.

        All of a station's records to those who may write to it (its owner's members);
        otherwise those of the principal's projects on stations it may read.
        """
        projects = self._ctx.projects()
        station_read: dict[str, bool] = {}
        station_all: dict[str, bool] = {}

        def keep(station: str, project: str) -> bool:
            if projects is None:  # governance off
                return True
            if station not in station_read:
                resource = Resource("station", station)
                station_read[station] = self._ctx.may("read", resource)
                station_all[station] = self._ctx.may("write", resource)
            return station_read[station] and (station_all[station] or project in projects)

        return keep

    def inventory(
        self, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> builtins.list[InventoryRow]:
        """Every station with its driver, protocol, capabilities, safety, use and faults.

        Args:
            since: Start of the period (default: 30 days before ``until``).
            until: End of the period (default: now).
        """
        from genesis_platform.labs.inventory import inventory_rows

        until = until or utcnow()
        since = since or until - dt.timedelta(days=30)
        self._flush_records()
        return inventory_rows(self, self._ctx, since, until)

    def close(self) -> None:
        """Close every station this process opened (queued operations fail)."""
        self._closed.set()
        with self._lock:
            schedulers = list(self._open.values())
            schedulers += [s for private in self._private.values() for s in private]
            self._open, self._private = {}, {}
        for scheduler in schedulers:
            try:
                scheduler.close()
            except Exception:
                _log.exception("closing station %s failed", scheduler.name)
        self._records.close()
        self._private_records.close()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._ctx.db.session() as s:
            names = [scheduler.name for scheduler in schedulers]
            s.execute(
                delete(StationStatusRow).where(
                    StationStatusRow.station.in_(names), StationStatusRow.owner == self._owner
                )
            )

    # -- internals ---------------------------------------------------------------------------

    def _flush_records(self) -> None:
        """Write the operation records still pending in this process."""
        self._records.flush()
        self._private_records.flush()

    def _parameters(self, config: StationConfig, needed: bool) -> Mapping[str, Mapping[str, Any]]:
        """The station's parameter schema, for checking its safety policy."""
        emulator = config.options.get("emulator") or (
            config.name if config.driver == "simulated" else None
        )
        if emulator is not None:
            return get_emulator(str(emulator)).parameters
        if not needed:
            return {}
        try:
            station = open_driver(config)
        except StationError as exc:
            raise StationError(
                f"cannot reach station {config.name!r} to check its safety rules against its "
                f"parameters: {exc}; start the instrument (or its server) and add it again"
            ) from exc
        try:
            return station.describe().parameters
        finally:
            station.close()

    def _add_window(
        self,
        name: str,
        kind: str,
        project: str,
        starts_at: dt.datetime,
        ends_at: dt.datetime,
        reason: str,
    ) -> Window:
        self.get(name)
        for label, value in (("starts_at", starts_at), ("ends_at", ends_at)):
            if value.tzinfo is None:
                raise InvalidInput(label, "has no time zone", "give e.g. 2026-12-01T09:00+00:00")
        if ends_at <= starts_at:
            raise InvalidInput("ends_at", "is not after starts_at", "give an end after the start")
        if kind == "reservation":
            for other in self.windows(name):
                overlaps = other.starts_at < ends_at and starts_at < other.ends_at
                if other.kind == "reservation" and other.project != project and overlaps:
                    raise InvalidInput(
                        "starts_at",
                        f"overlaps the reservation of project {other.project!r} "
                        f"({other.starts_at:%Y-%m-%d %H:%M} to {other.ends_at:%H:%M})",
                        "choose another time",
                    )
        detail = {"op": kind, "project": project}
        with self._ctx.mutation("administer", Resource("station", name), detail) as s:
            row = StationWindowRow(
                station=name,
                kind=kind,
                project=project,
                starts_at=starts_at,
                ends_at=ends_at,
                reason=reason,
                created_by=str(self._ctx.principal),
            )
            s.add(row)
            s.flush()
            return _window(row)

    def _command(self, name: str, command: str, argument: str, wait_s: float) -> bool:
        """Store an operator's command; carry it out or wait for a process that does.

        Carried out here when this process has the station open; otherwise wait up to
        ``wait_s`` for another process to.
        """
        self.get(name)
        with self._ctx.mutation("administer", Resource("station", name), {"op": command}) as s:
            row = StationCommandRow(
                station=name,
                command=command,
                argument=argument,
                requested_by=str(self._ctx.principal),
            )
            s.add(row)
            s.flush()
            command_id = row.id
        with self._lock:
            here = self._schedulers_of(name)
            if here:
                self._seen[name] = max(self._seen.get(name, 0), command_id)
        if here:
            for scheduler in here:
                self._apply(scheduler, command, argument, command_id)
            return True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._ctx.db.session(write=False) as s:
                if s.get(StationCommandRow, command_id).applied_at is not None:  # type: ignore[union-attr]
                    return True
            time.sleep(0.1)
        return False

    def _apply(
        self, scheduler: StationScheduler, command: str, argument: str, command_id: int
    ) -> None:
        """Carry out one command on a station open here, and mark it applied."""
        try:
            if command == "abort":
                scheduler.abort()
            elif command == "refill":
                driver = scheduler.driver
                if isinstance(driver, Refillable):
                    driver.refill(argument or None)
        except Exception:
            _log.exception("command %s on station %s failed", command, scheduler.name)
        with self._ctx.db.session() as s:
            s.execute(
                update(StationCommandRow)
                .where(StationCommandRow.id == command_id, StationCommandRow.applied_at.is_(None))
                .values(applied_at=utcnow(), applied_by=self._owner)
            )

    def _skip_old_commands(self, name: str) -> None:
        """Commands stored before this process opens ``name`` are not for it."""
        with self._ctx.db.session(write=False) as s:
            newest = int(s.scalar(select(func.max(StationCommandRow.id))) or 0)
        with self._lock:
            self._seen[name] = max(self._seen.get(name, 0), newest)

    def _schedulers_of(self, name: str) -> builtins.list[StationScheduler]:
        """Every scheduler of ``name`` in this process (shared and private); holding the lock."""
        shared = self._open.get(name)
        return ([shared] if shared is not None else []) + list(self._private.get(name, ()))

    def _forget(self, scheduler: StationScheduler) -> None:
        with self._lock:
            private = self._private.get(scheduler.name, [])
            if scheduler in private:
                private.remove(scheduler)

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch, name="genesis-stations", daemon=True
            )
        self._watcher.start()

    def _watch(self) -> None:
        """Carry out other processes' commands; publish the open stations' status."""
        last_publish = 0.0
        while not self._closed.wait(_WATCH_S):
            try:
                self._poll_commands()
                self._poke_all()
                if time.monotonic() - last_publish >= 1.0:
                    self._publish_status()
                    last_publish = time.monotonic()
            except Exception:  # e.g. the catalog is locked: try again next time
                _log.exception("watching the stations failed")

    def _poll_commands(self) -> None:
        """Carry out the commands stored for the stations open here since they opened.

        Each once: commands this process carried out itself are skipped.
        """
        with self._lock:
            seen = {n: self._seen.get(n, 0) for n in self._open.keys() | self._private.keys()}
        if not seen:
            return
        with self._ctx.db.session(write=False) as s:
            rows = s.scalars(
                select(StationCommandRow)
                .where(
                    StationCommandRow.id > min(seen.values()),
                    StationCommandRow.station.in_(list(seen)),
                )
                .order_by(StationCommandRow.id)
            ).all()
        for row in rows:
            with self._lock:
                if row.id <= self._seen.get(row.station, 0):
                    continue
                self._seen[row.station] = row.id
                schedulers = self._schedulers_of(row.station)
            for scheduler in schedulers:
                self._apply(scheduler, row.command, row.argument, row.id)

    def _poke_all(self) -> None:
        """A scheduling pass on every station open here (windows may have changed)."""
        with self._lock:
            schedulers = [
                s for name in self._open.keys() | self._private for s in self._schedulers_of(name)
            ]
        for scheduler in schedulers:
            scheduler.poke()

    def _publish_status(self) -> None:
        with self._lock:
            open_now = dict(self._open)
        for name, scheduler in open_now.items():
            status = scheduler.status()
            values = {
                "state": status.state.value,
                "busy_slots": status.busy_slots,
                "queue_length": status.queue_length,
                "reason": status.reason,
                "heartbeat": status.heartbeat,
                "consumables": dict(status.consumables),
                "owner": self._owner,
                "updated_at": utcnow(),
            }
            with self._ctx.db.session() as s:
                row = s.get(StationStatusRow, name)
                if row is None:
                    s.add(StationStatusRow(station=name, **values))
                else:
                    for key, value in values.items():
                        setattr(row, key, value)

    def _published_status(self, name: str) -> StationStatus | None:
        with self._ctx.db.session(write=False) as s:
            row = s.get(StationStatusRow, name)
            if row is None:
                return None
            age = (utcnow() - row.updated_at).total_seconds()
            if age > _STATUS_FRESH_S:
                return None
            return StationStatus(
                StationState(row.state),
                row.busy_slots,
                row.queue_length,
                row.reason,
                heartbeat=row.heartbeat,
                consumables=dict(row.consumables),
            )


class _PolicyCache:
    """A shared station's safety policy, read again from the catalog at most once a second.

    So an operator's change (``station remove`` then ``add`` with other limits) applies to
    processes that have the station open; a station that was removed refuses everything.
    """

    def __init__(
        self, service: StationService, name: str, parameters: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self._service = service
        self._name = name
        self._parameters = parameters
        self._read_at = -_WINDOW_CACHE_S
        self._policy = SafetyPolicy()
        self._stored: Mapping[str, Any] | None = None

    def __call__(self) -> SafetyPolicy:
        if time.monotonic() - self._read_at < _WINDOW_CACHE_S:
            return self._policy
        try:
            stored = self._service.get(self._name).safety
        except NotFound:
            raise StationError(
                f"station '{self._name}' was removed; nothing more is sent to it"
            ) from None
        if stored != self._stored:
            self._policy = SafetyPolicy.from_config(stored, self._parameters)
            self._stored = dict(stored)
        self._read_at = time.monotonic()
        return self._policy


class _WindowCache:
    """A station's windows, read from the catalog at most once a second."""

    def __init__(self, service: StationService, name: str) -> None:
        self._service = service
        self._name = name
        self._read_at = -_WINDOW_CACHE_S
        self._windows: builtins.list[Window] = []

    def __call__(self) -> builtins.list[Window]:
        if time.monotonic() - self._read_at >= _WINDOW_CACHE_S:
            self._windows = self._service.windows(self._name)
            self._read_at = time.monotonic()
        return self._windows


def _builtins() -> builtins.list[StationRecord]:
    return [_builtin(name) for name in sorted(EMULATORS)]


def _builtin(name: str) -> StationRecord:
    return StationRecord(name, "simulated", {}, {}, builtin=True, created_by="genesis")


def _record(row: StationRow) -> StationRecord:
    return StationRecord(
        row.name, row.driver, dict(row.options), dict(row.safety), False, row.created_by
    )


def _window(row: StationWindowRow) -> Window:
    return Window(row.kind, row.starts_at, row.ends_at, row.project, row.reason, row.id)


def _operation(row: StationOperationRow) -> OperationInfo:
    return OperationInfo(
        row.id,
        row.station,
        row.operation_id,
        row.project,
        row.priority,
        dict(row.params),
        row.state,
        row.external_id,
        None if row.values is None else dict(row.values),
        row.error,
        row.instrument_seconds,
        row.submitted_at,
        row.started_at,
        row.finished_at,
    )
