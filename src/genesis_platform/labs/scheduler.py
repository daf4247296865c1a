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
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from genesis_platform.compute.protocols import CancellableFuture
from genesis_platform.errors import OperationFailed, SafetyViolation, StationError
from genesis_platform.labs._futures import failed
from genesis_platform.labs.protocols import (
    Cancellable,
    Maintainable,
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
    future: CancellableFuture[Measurement] = field(init=False, repr=False)
    record_id: int = 0
    ready: bool = False  # its record is stored; until then it is not scheduled
    started: float = 0.0  # monotonic, once handed to the driver
    timer: threading.Timer | None = field(default=None, repr=False)
    timed_out: bool = False
    aborted: bool = False


class _Usage:
    """Instrument-seconds per project, decaying with a half-life.

    So fair share looks at recent use: a project that ran alone for hours is not starved
    for as long afterwards.
    """

    def __init__(self, half_life_s: float) -> None:
        self._rate = math.log(2) / half_life_s
        self._seconds: dict[str, tuple[float, float]] = {}  # project -> (value, as of)

    def add(self, project: str, seconds: float, now: float) -> None:
        self._seconds[project] = (self.of(project, now) + seconds, now)

    def projects(self) -> set[str]:
        return set(self._seconds)

    def of(self, project: str, now: float) -> float:
        value, at = self._seconds.get(project, (0.0, now))
        return value * math.exp(-self._rate * (now - at))


SHARE_HALF_LIFE_S = 3600.0
"""Fair share weighs instrument time used an hour ago half as much as now."""
_RETRY_S = 1.0
"""After a failed scheduling pass or a driver that refused at once, try again this soon."""


class StationScheduler:
    """Shares one station's driver between campaigns (see the module docstring).

    Args:
        name: The station's name.
        station: Its driver (the scheduler owns it and closes it).
        safety: What the station refuses: a policy, or a callable giving the current one
            (read for every operation, so an operator's change applies at once; it may
            raise StationError to refuse everything, e.g. when the station was removed).
        log: Where operations are recorded.
        windows: The station's reservation and maintenance windows.
        shares: Project -> share weight (a project not named weighs 1).
    """

    def __init__(
        self,
        name: str,
        station: Station,
        *,
        safety: SafetyPolicy | Callable[[], SafetyPolicy],
        log: OperationLog,
        windows: WindowSource = list,
        shares: Mapping[str, float] | None = None,
    ) -> None:
        self.name = name
        self._station = station
        self._info = station.describe()
        self._slots = max(1, self._info.slots)
        self._policy = safety if callable(safety) else (lambda: safety)
        self._log = log
        self._windows = windows
        self._shares = dict(shares or {})
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running: dict[str, _Request] = {}
        self._used = _Usage(SHARE_HALF_LIFE_S)
        self._seq = itertools.count()
        self._wake: threading.Timer | None = None
        self._held_until = 0.0  # monotonic: the driver refused at once; wait before asking again
        self._in_maintenance = False  # whether we put the driver in maintenance
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
            policy = self._policy()
            policy.check(self.name, op.params)
        except SafetyViolation as exc:
            self._log.refused(self.name, op, project, priority, str(exc))
            return failed(exc)
        except StationError as exc:
            return failed(exc)
        with self._lock:
            if self._closed:
                return failed(StationError(f"station '{self.name}' is closed"))
            in_flight = self._find(op.id)
            if in_flight is not None:
                return in_flight.future
            request = _Request(op, project, priority, next(self._seq))
            request.future = CancellableFuture(lambda: self._withdraw(request))
            self._queue.append(request)  # reserves the id; scheduled once ready
        try:
            record_id = self._log.queued(self.name, op, project, priority)
        except Exception as exc:
            with self._lock:
                if request in self._queue:
                    self._queue.remove(request)
            request.future.settle(error=StationError(f"the operation was not recorded: {exc}"))
            return request.future
        with self._lock:
            request.record_id, request.ready = record_id, True
            gone = request not in self._queue  # closed, aborted or cancelled meanwhile
        if gone:
            self._record_end(request, "aborted", 0.0, None, "closed or aborted before it ran")
        self._pump_safely()
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
            self._end(request, "aborted", StationError(f"aborted: station '{self.name}'"))
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
        if not isinstance(self._station, Cancellable):
            return False
        request.aborted = True
        return self._station.cancel(op_id)

    def usage(self) -> dict[str, float]:
        """Recent instrument-seconds per project, running operations included.

        Decayed with :data:`SHARE_HALF_LIFE_S`: what fair share compares.
        """
        with self._lock:
            return self._usage_locked()

    @property
    def driver(self) -> Station:
        """The station's driver (for capabilities beyond the protocol: refill, maintenance)."""
        return self._station

    def poke(self) -> None:
        """Run a scheduling pass now (a window changed, the driver may be ready again)."""
        with self._lock:
            self._held_until = 0.0
        self._pump_safely()

    def close(self) -> None:
        """Refuse new operations, fail queued ones, let running ones end, close the driver."""
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, []
            if self._wake is not None:
                self._wake.cancel()
        for request in queued:
            self._end(request, "aborted", StationError(f"station '{self.name}' closed"))
        self._station.close()

    # -- scheduling ------------------------------------------------------------------------

    def _pump_safely(self) -> None:
        """A scheduling pass that cannot strand the queue: on failure, try again soon."""
        try:
            self._pump()
        except Exception:
            _log.exception("scheduling station %s failed; trying again", self.name)
            with self._lock:
                if not self._closed:
                    self._wake_in(_RETRY_S)

    def _pump(self) -> None:
        """Hand the driver the next operations while it has free slots.

        A loop, not a recursion: a driver that fails operations at once does not deepen
        the stack.
        """
        windows = self._windows()
        self._follow_maintenance(windows)
        while True:
            with self._lock:
                if self._closed or len(self._running) >= self._slots:
                    return
                if time.monotonic() < self._held_until:
                    return
                request = self._next(_now(), windows)
                if request is None:
                    return
                self._queue.remove(request)
                request.started = time.monotonic()
                self._running[request.op.id] = request
            future = self._start(request)
            if not future.done():
                future.add_done_callback(partial(self._driver_done, request))
            elif not self._refused_now(request, future):
                self._driver_done(request, future, pump=False)

    def _next(self, now: dt.datetime, windows: list[Window]) -> _Request | None:
        """The request to run next, or None (schedules a wake-up); call holding the lock."""
        windows = [w for w in windows if w.ends_at > now]
        active = [w for w in windows if w.active(now)]
        upcoming = [w.starts_at for w in windows if w.starts_at > now]
        if any(w.kind == "maintenance" for w in active):
            self._wake_at(min(w.ends_at for w in active if w.kind == "maintenance"))
            return None
        reserved = {w.project for w in active if w.kind == "reservation"}
        ready = [r for r in self._queue if r.ready]
        eligible = [r for r in ready if not reserved or r.project in reserved]
        if not eligible:
            if ready and active:
                self._wake_at(min(w.ends_at for w in active))
            return None
        if upcoming:
            self._wake_at(min(upcoming))
        used = self._usage_locked()

        def rank(request: _Request) -> tuple[int, float, int]:
            share = self._shares.get(request.project, 1.0)
            return (-request.priority, used.get(request.project, 0.0) / share, request.seq)

        return min(eligible, key=rank)

    def _usage_locked(self) -> dict[str, float]:
        now = time.monotonic()
        projects = self._used.projects() | {r.project for r in self._running.values()}
        used = {project: self._used.of(project, now) for project in projects}
        for request in self._running.values():
            used[request.project] += now - request.started
        return used

    def _wake_at(self, when: dt.datetime) -> None:
        """Run a scheduling pass at ``when`` (a window starts or ends); holding the lock."""
        self._wake_in(max(0.0, (when - _now()).total_seconds()) + 0.01)

    def _wake_in(self, delay: float) -> None:
        """Run a scheduling pass in ``delay`` seconds; holding the lock."""
        if self._wake is not None:
            self._wake.cancel()
        self._wake = threading.Timer(min(delay, threading.TIMEOUT_MAX), self._pump_safely)
        self._wake.daemon = True
        self._wake.start()

    def _follow_maintenance(self, windows: list[Window]) -> None:
        """Follow maintenance windows with the driver's own maintenance state.

        A driver that has one is put into it during a maintenance window and out of it
        afterwards (which clears its faults and recalibrates it).
        """
        if not isinstance(self._station, Maintainable):
            return
        now = _now()
        window = next((w for w in windows if w.kind == "maintenance" and w.active(now)), None)
        with self._lock:
            change = (window is not None) != self._in_maintenance
            self._in_maintenance = window is not None
        if change:
            reason = "" if window is None else (window.reason or "maintenance window")
            self._station.set_maintenance(window is not None, reason)

    def _start(self, request: _Request) -> Future[Measurement]:
        """Hand one request to the driver, then record that.

        The record waits, not the instrument.
        """
        policy = self._policy()
        if policy.timeout_s is not None:
            request.timer = threading.Timer(policy.timeout_s, self._time_out, (request,))
            request.timer.daemon = True
            request.timer.start()
        try:
            future = self._station.run(request.op)
        except Exception as exc:  # a driver must not raise, but one might
            future = failed(StationError(f"station '{self.name}' refused the operation: {exc}"))
        try:
            self._log.started(request.record_id)
        except Exception:  # the record lags; the operation runs
            _log.exception("could not record the start of operation %s", request.op.id)
        return future

    def _refused_now(self, request: _Request, future: Future[Measurement]) -> bool:
        """Put ``request`` back when the driver refused it because it can run nothing now.

        That is, the driver failed it at once and is in error, maintenance or offline; the
        queue then waits for the driver. True when it was put back (or ended, if closed).
        """
        error = future.exception()
        if not isinstance(error, StationError) or isinstance(error, OperationFailed):
            return False
        state = self._station.status().state
        if state not in (StationState.ERROR, StationState.MAINTENANCE, StationState.OFFLINE):
            return False
        with self._lock:
            if request.timer is not None:
                request.timer.cancel()
            if self._running.get(request.op.id) is request:
                del self._running[request.op.id]
            if self._closed:
                requeued = False
            else:
                self._queue.append(request)
                self._held_until = time.monotonic() + _RETRY_S
                self._wake_in(_RETRY_S)
                requeued = True
        if not requeued:
            self._end(request, "aborted", error)
        return True

    def _driver_done(self, request: _Request, done: Future[Measurement], pump: bool = True) -> None:
        """The driver finished a request: free its slot, start the next one, then record."""
        if request.timer is not None:
            request.timer.cancel()
        error = done.exception() if not done.cancelled() else StationError("cancelled")
        measurement = None if error is not None else done.result()
        seconds, timed_out = self._release(request, measurement)
        try:
            if pump:
                self._pump_safely()
        finally:
            if timed_out:
                timeout = self._policy().timeout_s or 0.0
                error = StationError(
                    f"operation '{request.op.id}' ran past the timeout of {timeout:g} s of "
                    f"station '{self.name}' and was aborted"
                )
                self._end(request, "timed_out", error, seconds=seconds)
            elif error is not None:
                self._end(request, "aborted" if request.aborted else "failed", error, seconds)
            else:
                self._end(request, "completed", None, seconds, measurement)

    def _time_out(self, request: _Request) -> None:
        """The operation outlived the timeout: stop it (the driver's future then fails)."""
        with self._lock:
            if self._running.get(request.op.id) is not request:
                return  # it ended meanwhile
            request.timed_out = True
            others = [r for r in self._running.values() if r is not request]
        _log.warning("operation %s on station %s timed out", request.op.id, self.name)
        if isinstance(self._station, Cancellable) and self._station.cancel(request.op.id):
            return
        for other in others:  # a whole-station abort stops them too
            other.aborted = True
        self._station.abort()

    def _release(self, request: _Request, measurement: Measurement | None) -> tuple[float, bool]:
        """Free a running request's slot and count its instrument-seconds.

        Returns:
            The seconds, and whether it had timed out.
        """
        with self._lock:
            if self._running.get(request.op.id) is not request:
                return 0.0, request.timed_out
            del self._running[request.op.id]
            now = time.monotonic()
            wall = now - request.started
            seconds = measurement.duration_s if measurement and measurement.duration_s else wall
            self._used.add(request.project, seconds, now)
            return seconds, request.timed_out

    def _end(
        self,
        request: _Request,
        state: str,
        error: BaseException | None = None,
        seconds: float = 0.0,
        measurement: Measurement | None = None,
    ) -> None:
        """Record how a request ended and settle its future (even if the record fails)."""
        try:
            self._record_end(
                request, state, seconds, measurement, "" if error is None else str(error)
            )
        finally:
            request.future.settle(measurement, error)

    def _record_end(
        self,
        request: _Request,
        state: str,
        seconds: float,
        measurement: Measurement | None,
        error: str,
    ) -> None:
        if not request.ready:
            return  # not stored yet: submit records it when the store returns
        try:
            self._log.finished(
                request.record_id, state, seconds=seconds, measurement=measurement, error=error
            )
        except Exception:  # the record is lost, not the result
            _log.exception("could not record the end of operation %s", request.op.id)

    def _withdraw(self, request: _Request) -> None:
        """The caller cancelled: drop a queued request (a running one runs on)."""
        with self._lock:
            if request not in self._queue:
                return
            self._queue.remove(request)
        self._record_end(request, "aborted", 0.0, None, "cancelled")

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
