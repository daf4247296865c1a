"""A simulated station: an emulated experiment behind the real station protocol.

:class:`SimulatedStation` runs operations on a pool of ``slots`` worker threads. Each
operation behaves as a real instrument's would:

- it takes a **latency** drawn from a lognormal distribution around ``latency_s`` (spread
  ``latency_jitter``: instrument times are positive and right-skewed);
- it may hit a **transient fault** (``failure_rate``: the operation fails, a retry may
  succeed) or a **permanent fault** (``permanent_fault_rate``: the operation fails and the
  station stays in ``error`` until it has been through maintenance);
- it uses a **consumable**: ``use_ml`` of a reagent reservoir of ``reservoir_ml``. An
  operation that finds too little left fails, and the station is in ``error`` until
  :meth:`SimulatedStation.refill`;
- its **calibration drifts**: measured values are scaled by
  ``1 + drift_per_hour * hours since the last calibration`` (leaving maintenance
  recalibrates);
- otherwise it answers with the emulator's noisy measurement.

A station in **maintenance** (:meth:`SimulatedStation.set_maintenance`) refuses new
operations and lets running ones finish.

Everything random about an operation derives from ``(seed, operation id, attempt)``, so
re-running an operation reproduces its latency and measurement: a campaign that crashed and
re-dispatched a trial sees the value it would have seen (drift and consumables are state of
the instrument, as they are in a laboratory).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput, OperationFailed, StationError
from genesis_platform.labs._futures import digest, failed, id_clash, settle
from genesis_platform.labs.emulators import Emulator, get_emulator
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    StationInfo,
    StationState,
    StationStatus,
)
from genesis_platform.planning.protocols import ParamValue

__all__ = ["SimulatedStation", "station_info"]


def station_info(
    emulator: Emulator,
    name: str | None = None,
    slots: int = 2,
    consumables: dict[str, dict[str, Any]] | None = None,
) -> StationInfo:
    """The description of a simulated station answering with ``emulator``.

    Args:
        emulator: The experiment it emulates.
        name: The station's name (default: the emulator's).
        slots: Operations it runs at once.
        consumables: Its consumables (:attr:`StationInfo.consumables`).
    """
    return StationInfo(
        name=name or emulator.name,
        driver="simulated",
        description=emulator.description,
        capabilities=("measure",),
        parameters=emulator.parameters,
        measurements=emulator.measurements,
        slots=slots,
        protocol="simulated",
        consumables=consumables or {},
    )


REAGENT = "reagent"
"""The consumable of a simulated station that has a reservoir."""


@dataclass(eq=False)
class _Job:
    """One accepted operation, from queue to result."""

    op: Operation
    point: dict[str, ParamValue]
    attempt: int
    future: Future[Measurement] = field(default_factory=Future)
    stop: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    settled: bool = False
    """True once someone (the worker or abort) has claimed the right to set the future."""
    queued: Future[None] | None = None


class SimulatedStation:
    """A station whose measurements come from an emulator, with latency, noise and faults.

    Args:
        emulator: The emulated experiment, or the name of a built-in one.
        name: The station's name (default: the emulator's name).
        slots: Operations run at once (worker threads).
        latency_s: Mean duration of one operation, s. 0 answers at once.
        latency_jitter: Spread of the duration: sigma of a mean-preserving lognormal factor.
        noise: Scale on the emulator's measurement noise (0: noise-free).
        failure_rate: Probability that an operation fails with a transient fault. The fault
            is drawn per attempt, so retrying the same operation id may succeed.
        permanent_fault_rate: Probability that an operation breaks the instrument: it
            fails, and the station is in ``error`` until maintenance.
        reservoir_ml: Reagent reservoir, ml (None: no consumable).
        use_ml: Reagent one operation uses, ml.
        drift_per_hour: Relative calibration drift per hour since the last calibration.
        seed: Seed of all randomness (non-negative integer).

    Raises:
        InvalidInput: An option is out of range (field named after the option).
    """

    def __init__(
        self,
        emulator: Emulator | str,
        *,
        name: str | None = None,
        slots: int = 2,
        latency_s: float = 0.5,
        latency_jitter: float = 0.2,
        noise: float = 1.0,
        failure_rate: float = 0.0,
        permanent_fault_rate: float = 0.0,
        reservoir_ml: float | None = None,
        use_ml: float = 1.0,
        drift_per_hour: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._emulator = get_emulator(emulator) if isinstance(emulator, str) else emulator
        self._name = name or self._emulator.name
        self._slots = _check_int("slots", slots, low=1)
        self._latency_s = _check_float("latency_s", latency_s, low=0.0)
        self._latency_jitter = _check_float("latency_jitter", latency_jitter, low=0.0)
        self._noise = _check_float("noise", noise, low=0.0)
        self._failure_rate = _check_float("failure_rate", failure_rate, low=0.0, high=1.0)
        self._permanent_fault_rate = _check_float(
            "permanent_fault_rate", permanent_fault_rate, low=0.0, high=1.0
        )
        self._reservoir_ml = (
            None if reservoir_ml is None else _check_float("reservoir_ml", reservoir_ml, low=0.0)
        )
        self._use_ml = _check_float("use_ml", use_ml, low=0.0)
        self._drift_per_hour = _check_float("drift_per_hour", drift_per_hour, low=-1.0, high=1e6)
        self._seed = _check_int("seed", seed, low=0)
        self._space = self._emulator.space()
        consumables = (
            {}
            if self._reservoir_ml is None
            else {REAGENT: {"unit": "ml", "capacity": self._reservoir_ml, "per_operation": use_ml}}
        )
        self._info = station_info(self._emulator, self._name, self._slots, consumables)
        self._left_ml = self._reservoir_ml
        self._fault = ""  # a permanent fault, until maintenance
        self._maintenance = ""  # the reason, while in maintenance
        self._calibrated = time.monotonic()
        self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix=f"station-{self._name}")
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._attempts: dict[str, int] = {}
        self._closed = False

    @property
    def name(self) -> str:
        """The station's name."""
        return self._name

    def describe(self) -> StationInfo:
        """Capabilities, parameter and measurement schemas, slots."""
        return self._info

    def status(self) -> StationStatus:
        """State, busy slots, queue length, heartbeat and the reagent left.

        ``offline`` once closed; ``maintenance`` while in maintenance; ``error`` after a
        permanent fault or with the reservoir too low for one operation; else busy or idle.
        """
        with self._lock:
            busy = sum(job.running for job in self._jobs.values())
            queued = len(self._jobs) - busy
            closed = self._closed
            blocked = self._blocked_reason()
            left = {} if self._left_ml is None else {REAGENT: self._left_ml}
        now = time.time()
        if closed:
            state, reason = StationState.OFFLINE, "station closed"
        elif self._maintenance:
            state, reason = StationState.MAINTENANCE, self._maintenance
        elif blocked:
            state, reason = StationState.ERROR, blocked
        else:
            state, reason = (StationState.BUSY if busy or queued else StationState.IDLE), ""
        return StationStatus(state, busy, queued, reason, heartbeat=now, consumables=left)

    def refill(self, consumable: str | None = None) -> None:
        """Fill the reagent reservoir to capacity (ends an ``error`` for an empty one).

        Raises:
            InvalidInput: the station has no such consumable (field ``consumable``).
        """
        if self._reservoir_ml is None or consumable not in (None, REAGENT):
            known = list(self._info.consumables) or "none"
            raise InvalidInput(
                "consumable",
                f"station '{self._name}' has no consumable {consumable or ''!r}".strip(),
                f"its consumables: {known}",
            )
        with self._lock:
            self._left_ml = self._reservoir_ml

    def set_maintenance(self, on: bool, reason: str = "") -> None:
        """Enter or leave maintenance; leaving it clears a permanent fault and recalibrates."""
        with self._lock:
            if on:
                self._maintenance = reason or "maintenance"
                return
            if self._maintenance:
                self._fault = ""
                self._calibrated = time.monotonic()
            self._maintenance = ""

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` and return its future at once.

        Idempotent by operation id: while an operation with the same id and parameters is
        queued or running, its future is returned and nothing new runs.

        The future fails at once, without running anything, with
        :class:`~genesis_platform.errors.InvalidInput` when the parameters do not fit the
        station (or the id is in flight with other parameters) and with
        :class:`~genesis_platform.errors.StationError` once the station is closed. It fails
        later with :class:`~genesis_platform.errors.OperationFailed` on a transient fault and
        with :class:`~genesis_platform.errors.StationError` on :meth:`abort`.
        """
        try:
            point = self._space.validate(op.params, where="op.params")
        except InvalidInput as exc:
            return failed(exc)
        with self._lock:
            if self._closed:
                return failed(StationError(f"station '{self._name}' is closed; open it again"))
            refused = self._maintenance and f"in maintenance ({self._maintenance})"
            refused = refused or self._blocked_reason()
            if refused:
                return failed(StationError(f"station '{self._name}' is {refused}"))
            existing = self._jobs.get(op.id)
            if existing is not None:
                return existing.future if existing.point == point else failed(id_clash(op))
            job = self._accept(op, point)
        job.future.add_done_callback(lambda _: self._forget(job))
        return job.future

    def abort(self) -> None:
        """Stop running operations and drop the queue; their futures fail with StationError."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if not job.settled]
            self._jobs.clear()
            for job in jobs:
                job.settled = True
                job.stop.set()
                if job.queued is not None:
                    job.queued.cancel()
        for job in jobs:
            settle(job.future, error=StationError(f"aborted: operation '{job.op.id}' stopped"))

    def cancel(self, op_id: str) -> bool:
        """Stop one queued or running operation; its future fails with StationError.

        Returns:
            False when no such operation is queued or running.
        """
        with self._lock:
            job = self._jobs.pop(op_id, None)
            if job is None or job.settled:
                return False
            job.settled = True
            job.stop.set()
            if job.queued is not None:
                job.queued.cancel()
        settle(job.future, error=StationError(f"aborted: operation '{op_id}' stopped"))
        return True

    def close(self) -> None:
        """Stop accepting operations and wait for queued and running ones to finish."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True)

    def __enter__(self) -> SimulatedStation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        self.close()

    def __repr__(self) -> str:
        return f"SimulatedStation({self._emulator.name!r}, name={self._name!r})"

    def _accept(self, op: Operation, point: dict[str, ParamValue]) -> _Job:
        """Register and queue a new job; called with the lock held."""
        attempt = 0
        if self._failure_rate > 0:  # attempts only matter to fault draws; keep no history else
            attempt = self._attempts.get(op.id, 0)
            self._attempts[op.id] = attempt + 1
        job = _Job(op, point, attempt)
        self._jobs[op.id] = job
        job.queued = self._pool.submit(self._execute, job)
        return job

    def _forget(self, job: _Job) -> None:
        with self._lock:
            if self._jobs.get(job.op.id) is job:
                del self._jobs[job.op.id]

    def _execute(self, job: _Job) -> None:
        """Worker body: run one job and settle its future (never raises)."""
        with self._lock:
            if job.settled:
                return
            if not job.future.set_running_or_notify_cancel():
                job.settled = True
                return
            job.running = True
        try:
            measurement = self._measure(job)
        except StationError as exc:
            self._finish(job, error=exc)
        except Exception as exc:  # an emulator bug must not leave the future pending
            self._finish(job, error=StationError(f"station '{self._name}' failed: {exc!r}"))
        else:
            self._finish(job, result=measurement)

    def _measure(self, job: _Job) -> Measurement | None:
        """Wait the latency, maybe fail, then measure; None when aborted meanwhile."""
        key = digest(job.op.id)
        rng = np.random.default_rng([self._seed, key])
        latency = self._draw_latency(rng)
        if latency > 0 and job.stop.wait(latency):
            return None
        if self._failure_rate > 0 and self._draw(key, job.attempt, 0) < self._failure_rate:
            raise OperationFailed(
                f"operation '{job.op.id}' hit a transient fault on simulated station "
                f"'{self._name}' (failure_rate={self._failure_rate}); retry it"
            )
        drift = self._use_up(job)
        values = self._emulator.evaluate(job.point, rng, self._noise)
        if drift != 1.0:
            values = {name: value * drift for name, value in values.items()}
        return Measurement(
            operation_id=job.op.id,
            values=values,
            external_id=f"{self._name}:{job.op.id}",
            duration_s=latency,
            metadata={"emulator": self._emulator.name, "seed": self._seed, "attempt": job.attempt},
        )

    def _draw_latency(self, rng: np.random.Generator) -> float:
        sigma = self._latency_jitter
        factor = math.exp(sigma * float(rng.standard_normal()) - sigma * sigma / 2)
        return self._latency_s * factor

    def _draw(self, key: int, attempt: int, stream: int) -> float:
        """A uniform draw for one attempt of one operation (stream: which fault).

        Stream 0 (transient faults) keeps the seed sequence it had before other streams
        existed, so stored campaigns replay the same faults.
        """
        entropy = [self._seed, key, attempt] + ([stream] if stream else [])
        return float(np.random.default_rng(entropy).random())

    def _use_up(self, job: _Job) -> float:
        """Take the operation's reagent and maybe break; the calibration factor now.

        Raises:
            StationError: too little reagent left, or a permanent fault (the station is in
                ``error`` from then on).
        """
        broke = self._permanent_fault_rate > 0 and (
            self._draw(digest(job.op.id), job.attempt, 1) < self._permanent_fault_rate
        )
        with self._lock:
            blocked = self._blocked_reason()
            if blocked:
                raise StationError(f"station '{self._name}' is {blocked}")
            if self._left_ml is not None:
                self._left_ml = max(0.0, self._left_ml - self._use_ml)
            if broke:
                self._fault = f"hardware fault during operation '{job.op.id}'"
                raise StationError(
                    f"operation '{job.op.id}' broke simulated station '{self._name}' "
                    f"(permanent_fault_rate={self._permanent_fault_rate}); it needs maintenance"
                )
            hours = (time.monotonic() - self._calibrated) / 3600.0
        return 1.0 + self._drift_per_hour * hours

    def _blocked_reason(self) -> str:
        """Why no operation can run now ('' when one can); call holding the lock."""
        if self._fault:
            return f"in error: {self._fault}; maintenance clears it"
        if self._left_ml is not None and self._left_ml < self._use_ml:
            return (
                f"in error: {REAGENT} reservoir empty ({self._left_ml:g} ml left, "
                f"{self._use_ml:g} ml per operation); refill it (genesis station refill "
                f"{self._name})"
            )
        return ""

    def _finish(
        self, job: _Job, result: Measurement | None = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            job.running = False
            claimed = not job.settled
            job.settled = True
        if claimed:
            settle(job.future, result=result, error=error)


def _check_int(field_name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(field_name, f"must be an integer >= {low}, got {value!r}")
    return value


def _check_float(field_name: str, value: Any, *, low: float, high: float = math.inf) -> float:
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or not low <= value <= high:
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise InvalidInput(field_name, f"must be a number {bounds}, got {value!r}")
    return float(value)
