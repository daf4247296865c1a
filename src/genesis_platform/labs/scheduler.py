"""One station shared by many campaigns: safety checks, a fair queue, windows, usage.

A :class:`StationScheduler` stands in front of one station's driver in a process. Every
operation, from any campaign of any project, goes through :meth:`StationScheduler.submit`:

1. **Safety** — the station's :class:`~genesis_platform.labs.safety.SafetyPolicy` is
   checked first; an operation that breaks it is refused (its future fails with
   :class:`~genesis_platform.errors.SafetyViolation`), recorded as ``refused``, and never
   reaches the driver.
2. **Queue** — operations wait in Genesis's queue, not the driver's: the scheduler hands the
   driver only as many as it has slots, so the order below decides what runs next.
   Higher ``priority`` first; among equal priorities the project furthest below its
   **fair share** of instrument time (seconds used, including running operations, divided
   by its share weight; equal weights by default); then first come, first served.
3. **Windows** — during a **maintenance** window nothing is sent; during a
   **reservation** only the reserving project's operations are (the DOE IRI status API's
   ``reservation`` incidents). The scheduler wakes itself when a window ends.
4. **Timeout** — an operation that outlives the policy's ``timeout_s`` is aborted (the
   driver's ``cancel(op_id)`` where it has one, else ``abort()``) and recorded ``timed_out``.
5. **Usage** — each operation's instrument-seconds (the measurement's ``duration_s``, else
   its wall time on the instrument) are recorded with its project and station.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from genesis_platform.compute.protocols import CancellableFuture
from genesis_platform.errors import SafetyViolation, StationError
from genesis_platform.labs._futures import failed
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    Station,
    StationInfo,
    StationState,
    StationStatus,
)
from genesis_platform.labs.safety import SafetyPolicy

__all__ = ["OperationLog", "StationScheduler", "Window", "WindowSource", "with_windows"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A time window of a station.

    Attributes:
        kind: ``reservation`` (only ``project`` may use the station) or ``maintenance``
            (nobody may).
        starts_at: Start (timezone-aware).
        ends_at: End (timezone-aware), after the start.
        project: The reserving project (reservations only).
        reason: Why, for people.
        id: The window's catalog id (0 when not stored).
    """

    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    project: str = ""
    reason: str = ""
    id: int = 0

    def active(self, now: dt.datetime) -> bool:
        """Whether ``now`` is inside the window."""
        return self.starts_at <= now < self.ends_at


WindowSource = Callable[[], list[Window]]
"""Returns the station's current and future windows (read again on every scheduling pass)."""


class OperationLog(Protocol):
    """Where the scheduler records operations (the station service's catalog writer)."""

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        """Store a new operation as ``queued``; its record id."""
        ...

    def refused(
        self, station: str, op: Operation, project: str, priority: int, reason: str
    ) -> None:
        """Store an operation refused by the safety policy."""
        ...

    def started(self, record_id: int) -> None:
        """The operation was handed to the driver."""
        ...

    def finished(
        self,
        record_id: int,
        state: str,
        *,
        seconds: float,
        measurement: Measurement | None = None,
        error: str = "",
    ) -> None:
        """The operation ended (``completed``, ``failed``, ``aborted`` or ``timed_out``)."""
        ...


@dataclass(eq=False)
class _Request:
    op: Operation
    project: str
    priority: int
    seq: int
    record_id: int
    future: CancellableFuture[Measurement]
    started: float = 0.0  # monotonic, once handed to the driver
    timer: threading.Timer | None = field(default=None, repr=False)
    timed_out: bool = False
    aborted: bool = False


class StationScheduler:
    """Shares one station's driver between campaigns (see the module docstring).

    Args:
        name: The station's name.
        station: Its driver (the scheduler owns it and closes it).
        safety: What the station refuses.
        log: Where operations are recorded.
        windows: The station's reservation and maintenance windows.
        shares: Project -> share weight (a project not named weighs 1).
    """

    def __init__(
        self,
        name: str,
        station: Station,
        *,
        safety: SafetyPolicy,
        log: OperationLog,
        windows: WindowSource = list,
        shares: Mapping[str, float] | None = None,
    ) -> None:
        self.name = name
        self._station = station
        self._info = station.describe()
        self._slots = max(1, self._info.slots)
        self._safety = safety
        self._log = log
        self._windows = windows
        self._shares = dict(shares or {})
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running: dict[str, _Request] = {}
        self._used: defaultdict[str, float] = defaultdict(float)  # project -> seconds
        self._seq = itertools.count()
        self._wake: threading.Timer | None = None
        self._closed = False

    # -- the station protocol, per project -------------------------------------------------

    def describe(self) -> StationInfo:
        """The driver's description."""
        return self._info

    def submit(self, op: Operation, project: str = "", priority: int = 0) -> Future[Measurement]:
        """Queue ``op`` for ``project``; its future resolves with the measurement.

        The future fails at once with SafetyViolation when ``op`` breaks the station's
        safety policy (nothing is sent), and with StationError once the scheduler is closed.
        Cancelling it while queued takes it out of the queue.
        """
        try:
            self._safety.check(self.name, op.params)
        except SafetyViolation as exc:
            self._log.refused(self.name, op, project, priority, str(exc))
            return failed(exc)
        with self._lock:
            if self._closed:
                return failed(StationError(f"station '{self.name}' is closed"))
            in_flight = self._find(op.id)
            if in_flight is not None:
                return in_flight.future
        record_id = self._log.queued(self.name, op, project, priority)
        request = _Request(op, project, priority, next(self._seq), record_id, CancellableFuture())
        request.future = CancellableFuture(lambda: self._withdraw(request))
        with self._lock:
            self._queue.append(request)
        self._pump()
        return request.future

    def status(self) -> StationStatus:
        """The driver's status, with Genesis's queue and an active maintenance window."""
        with self._lock:
            queued = len(self._queue)
        return with_windows(self._station.status(), self._windows(), queued)

    def abort(self) -> None:
        """Abort what runs on the station and drop Genesis's queue (futures fail)."""
        with self._lock:
            queued, self._queue = self._queue, []
            for request in self._running.values():
                request.aborted = True
        for request in queued:
            self._end(request, "aborted", error=StationError(f"aborted: station '{self.name}'"))
        self._station.abort()

    def cancel(self, op_id: str) -> bool:
        """Stop one operation: take it out of the queue, or stop it on the driver.

        Returns:
            False when it is neither queued nor running, or it runs on a driver that cannot
            stop one operation alone (it then runs to its end).
        """
        with self._lock:
            request = self._find(op_id)
            running = request is not None and self._running.get(op_id) is request
        if request is None:
            return False
        if not running:
            return request.future.cancel()
        stop = getattr(self._station, "cancel", None)
        if not callable(stop):
            return False
        request.aborted = True
        return bool(stop(op_id))

    def usage(self) -> dict[str, float]:
        """Instrument-seconds per project in this scheduler's lifetime (running included)."""
        now = time.monotonic()
        with self._lock:
            used = dict(self._used)
            for request in self._running.values():
                used[request.project] = used.get(request.project, 0.0) + now - request.started
        return used

    @property
    def driver(self) -> Station:
        """The station's driver (for capabilities beyond the protocol: refill, maintenance)."""
        return self._station

    def close(self) -> None:
        """Refuse new operations, fail queued ones, let running ones end, close the driver."""
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, []
            if self._wake is not None:
                self._wake.cancel()
        for request in queued:
            self._end(request, "aborted", error=StationError(f"station '{self.name}' closed"))
        self._station.close()

    # -- scheduling ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand the driver the next operations while it has free slots."""
        while True:
            with self._lock:
                if self._closed or len(self._running) >= self._slots or not self._queue:
                    return
                request = self._next(_now())
                if request is None:
                    return
                self._queue.remove(request)
                request.started = time.monotonic()
                self._running[request.op.id] = request
            self._start(request)

    def _next(self, now: dt.datetime) -> _Request | None:
        """The request to run next, or None (schedules a wake-up); call holding the lock."""
        windows = [w for w in self._windows() if w.ends_at > now]
        active = [w for w in windows if w.active(now)]
        upcoming = [w.starts_at for w in windows if w.starts_at > now]
        if any(w.kind == "maintenance" for w in active):
            self._wake_at(min(w.ends_at for w in active if w.kind == "maintenance"))
            return None
        reserved = {w.project for w in active if w.kind == "reservation"}
        eligible = [r for r in self._queue if not reserved or r.project in reserved]
        if not eligible:
            self._wake_at(min(w.ends_at for w in active))
            return None
        if upcoming:
            self._wake_at(min(upcoming))
        used = self._usage_locked()

        def rank(request: _Request) -> tuple[int, float, int]:
            share = self._shares.get(request.project, 1.0)
            return (-request.priority, used.get(request.project, 0.0) / share, request.seq)

        return heapq.nsmallest(1, eligible, key=rank)[0]

    def _usage_locked(self) -> dict[str, float]:
        now = time.monotonic()
        used = dict(self._used)
        for request in self._running.values():
            used[request.project] = used.get(request.project, 0.0) + now - request.started
        return used

    def _wake_at(self, when: dt.datetime) -> None:
        """Run a scheduling pass at ``when`` (a window starts or ends); holding the lock."""
        if self._wake is not None:
            self._wake.cancel()
        delay = max(0.0, (when - _now()).total_seconds()) + 0.01
        self._wake = threading.Timer(delay, self._pump)
        self._wake.daemon = True
        self._wake.start()

    def _start(self, request: _Request) -> None:
        """Hand one request to the driver, then record that.

        The record waits, not the instrument.
        """
        if self._safety.timeout_s is not None:
            request.timer = threading.Timer(self._safety.timeout_s, self._time_out, (request,))
            request.timer.daemon = True
            request.timer.start()
        try:
            future = self._station.run(request.op)
        except Exception as exc:  # a driver must not raise, but one might
            future = failed(StationError(f"station '{self.name}' refused the operation: {exc}"))
        self._log.started(request.record_id)
        future.add_done_callback(lambda done: self._driver_done(request, done))

    def _driver_done(self, request: _Request, done: Future[Measurement]) -> None:
        """The driver finished a request: free its slot, start the next one, then record."""
        if request.timer is not None:
            request.timer.cancel()
        error = done.exception() if not done.cancelled() else StationError("cancelled")
        measurement = None if error is not None else done.result()
        seconds = self._release(request, measurement)
        self._pump()
        if request.timed_out:
            timeout = self._safety.timeout_s
            error = StationError(
                f"operation '{request.op.id}' ran past the timeout of {timeout:g} s of "
                f"station '{self.name}' and was aborted"
            )
            self._end(request, "timed_out", seconds=seconds, error=error)
        elif error is not None:
            state = "aborted" if request.aborted else "failed"
            self._end(request, state, seconds=seconds, error=error)
        else:
            self._end(request, "completed", seconds=seconds, measurement=measurement)

    def _time_out(self, request: _Request) -> None:
        """The operation outlived the timeout: stop it (the driver's future then fails)."""
        request.timed_out = True
        _log.warning("operation %s on station %s timed out", request.op.id, self.name)
        cancel = getattr(self._station, "cancel", None)
        if callable(cancel) and cancel(request.op.id):
            return
        self._station.abort()

    def _release(self, request: _Request, measurement: Measurement | None) -> float:
        """Free a running request's slot and count its instrument-seconds (returned)."""
        with self._lock:
            if self._running.get(request.op.id) is not request:
                return 0.0
            del self._running[request.op.id]
            wall = time.monotonic() - request.started
            seconds = measurement.duration_s if measurement and measurement.duration_s else wall
            self._used[request.project] += seconds
            return seconds

    def _end(
        self,
        request: _Request,
        state: str,
        *,
        seconds: float = 0.0,
        measurement: Measurement | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how a request ended and settle its future."""
        text = "" if error is None else str(error)
        try:
            self._log.finished(
                request.record_id, state, seconds=seconds, measurement=measurement, error=text
            )
        except Exception:  # the record is lost, not the result
            _log.exception("could not record the end of operation %s", request.op.id)
        request.future.settle(measurement, error)

    def _withdraw(self, request: _Request) -> None:
        """The caller cancelled: drop a queued request (a running one runs on)."""
        with self._lock:
            if request not in self._queue:
                return
            self._queue.remove(request)
        self._log.finished(request.record_id, "aborted", seconds=0.0, error="cancelled")

    def _find(self, op_id: str) -> _Request | None:
        """A queued or running request with this operation id; holding the lock."""
        running = self._running.get(op_id)
        if running is not None:
            return running
        return next((r for r in self._queue if r.op.id == op_id), None)


def with_windows(status: StationStatus, windows: list[Window], queued: int = 0) -> StationStatus:
    """A driver's ``status`` as Genesis sees it.

    ``maintenance`` in an active maintenance window, and ``queued`` more operations waiting
    in Genesis's queue.
    """
    now = _now()
    window = next((w for w in windows if w.kind == "maintenance" and w.active(now)), None)
    state, reason = status.state, status.reason
    if window is not None and state in (StationState.IDLE, StationState.BUSY):
        state, reason = StationState.MAINTENANCE, window.reason or "maintenance window"
    if queued and state == StationState.IDLE:
        state = StationState.BUSY
    return StationStatus(
        state,
        status.busy_slots,
        status.queue_length + queued,
        reason,
        heartbeat=status.heartbeat,
        consumables=status.consumables,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
