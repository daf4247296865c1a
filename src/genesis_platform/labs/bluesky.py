"""The Bluesky station: operations run as plans on a Bluesky RunEngine over ophyd devices.

Needs the extra ``[labs]`` (``bluesky``, ``ophyd``). :class:`BlueskyStation` maps each
parameter of the station to a settable device (a bluesky ``Movable``) and each measurement
to a data key of a readable device (a detector). An operation is one plan: open a run whose
start document carries the operation id and parameters, move every device to its parameter
value (``bluesky.plan_stubs.mv``), trigger and read the detectors and the moved devices into
one event (``trigger_and_read``), close the run. The station subscribes to the documents the
RunEngine emits and turns the run into a :class:`~genesis_platform.labs.protocols.Measurement`:
values from the event, ``external_id`` the start document's uid, ``duration_s`` the time
between the start and stop documents.

Two ways to build one: the constructor takes the devices; :meth:`BlueskyStation.simulated`
builds ophyd simulated devices around a built-in emulator (:func:`simulated_devices`); and
:func:`open_bluesky_station` does either from options (``emulator=`` or
``devices="package.module:factory"``), for the station registry.

Threading:

- **Two threads per station.** A RunEngine runs its own asyncio event loop on a thread it
  starts (``bluesky-run-engine``), and ``RE(plan)`` blocks its caller until the plan is
  over. So every plan is started from one worker thread of the station (the only thread
  that calls the RunEngine, which is not thread-safe), and :meth:`BlueskyStation.run`
  only queues the operation and returns its future. Operations run one at a time, in the
  order they were accepted (``slots`` is 1: a RunEngine runs one plan at a time).
- **No signal handlers, no GUI pumping.** By default ``RE(plan)`` enters a SIGINT handler
  (``signal.signal`` fails off the main thread) and, when Matplotlib with Qt is imported,
  runs the Qt loop while it waits. The RunEngine's documentation says to pass
  ``context_managers=[]`` for a RunEngine without signal handling, and ``during_task``
  chooses how ``RE(plan)`` waits: the station passes ``[]`` and a plain
  :class:`bluesky.utils.DuringTask` (wait on an event).
- **Abort from another thread.** The RunEngine's interruptions are meant for other
  threads (``request_pause`` says so; ``abort``, ``stop`` and ``halt`` hand their work to
  the RunEngine's loop the same way, with ``call_soon_threadsafe``, and wait only for that
  hand-off). ``abort`` on a running plan cancels it, stops the devices it moved, closes the
  run with ``exit_status="abort"`` and unblocks ``RE(plan)`` with ``RunEngineInterrupted``;
  ``request_pause`` would leave the RunEngine paused, waiting for a resume, stop or abort,
  and ``halt`` skips the cleanup. So :meth:`BlueskyStation.abort` fails the futures of the
  running and queued operations at once, then calls ``RE.abort``; :meth:`BlueskyStation.cancel`
  does the same for one operation (dropping it from the queue, or aborting the plan when it
  is the one running; the queue then runs on). ``RE.abort`` is called only while the
  RunEngine runs that operation's plan: the worker does not start the next plan until the
  abort has been handed over, so it never hits another operation. An operation whose plan
  has not reached the RunEngine yet (``abort`` then finds it idle) is stopped by the plan
  itself, which checks the operation's stop flag before it opens its run. Detectors already
  triggered finish their acquisition in the background (the RunEngine only stops what it
  moved).
- **Heartbeat.** :meth:`BlueskyStation.status` asks the RunEngine's loop to answer (waiting
  up to 0.1 s); every document counts as an answer too. A RunEngine that is panicked, not
  idle between plans, or whose loop has stopped puts the station in ``error``.

The RunEngine records the event loop of the last RunEngine created as bluesky's global loop
(used by ophyd-async devices); the stations here drive ophyd (v1) devices, which do not use it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky import RunEngine
from bluesky.protocols import Movable, Readable
from bluesky.utils import DuringTask, FailedStatus, MsgGenerator, RunEngineInterrupted
from ophyd import Signal  # type: ignore[import-untyped]
from ophyd.sim import SynAxis, SynSignal  # type: ignore[import-untyped]

from genesis_platform.compute.local import resolve_function
from genesis_platform.errors import GenesisError, InvalidInput, OperationFailed, StationError
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
from genesis_platform.planning.space import Choice, Space

__all__ = [
    "DEVICES_OPTIONS",
    "EMULATOR_OPTIONS",
    "BlueskyStation",
    "DocumentCallback",
    "open_bluesky_station",
    "simulated_devices",
]

logger = logging.getLogger(__name__)

DocumentCallback = Callable[[str, Mapping[str, Any]], object]
"""A bluesky document callback: ``f(name, doc)`` with name ``start``, ``event``, ``stop``..."""

EMULATOR_OPTIONS = ("emulator", "latency_s", "noise", "seed")
"""Options of :func:`open_bluesky_station` for simulated devices around an emulator."""

DEVICES_OPTIONS = ("devices",)
"""Options of :func:`open_bluesky_station` for devices made by a factory."""

_PING_TIMEOUT_S = 0.1
"""How long :meth:`BlueskyStation.status` waits for the RunEngine's loop to answer, s."""

_LOOP_STOP_TIMEOUT_S = 5.0
"""How long :meth:`BlueskyStation.close` waits for the RunEngine's loop to stop, s."""

_DEVICES_FIX = "write it as package.module:factory, importable in this process"


@dataclass(eq=False)
class _Job:
    """One accepted operation, from queue to result."""

    op: Operation
    point: dict[str, ParamValue]
    future: Future[Measurement] = field(default_factory=Future)
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by abort and cancel; the plan checks it before it opens its run."""
    running: bool = False
    settled: bool = False
    """True once someone (the worker, abort or cancel) has claimed the right to set it."""


class _RunDocuments:
    """The documents of one run, collected as the RunEngine emits them (on its loop thread)."""

    def __init__(self) -> None:
        self.start: Mapping[str, Any] | None = None
        self.stop: Mapping[str, Any] | None = None
        self._streams: dict[str, str] = {}
        self._primary: Mapping[str, Any] | None = None

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self.start = doc
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name", "")
        elif name == "event" and self._streams.get(doc["descriptor"]) == "primary":
            self._primary = doc
        elif name == "stop":
            self.stop = doc

    def primary_data(self) -> Mapping[str, Any]:
        """The data of the run's (last) primary event.

        Raises:
            StationError: The run has no start, stop or primary event.
        """
        if self.start is None or self.stop is None or self._primary is None:
            raise StationError("the RunEngine emitted no complete run (start, event, stop)")
        data: Mapping[str, Any] = self._primary["data"]
        return data


class BlueskyStation:
    """A station whose operations are plans run by a Bluesky RunEngine over ophyd devices.

    Args:
        name: The station's name.
        movables: The settable device (a bluesky ``Movable``: ``set(value) -> Status``) of
            each parameter, by parameter name.
        detectors: For each measurement name, the readable device that measures it and the
            data key of its reading (``(device, "data_key")``).
        parameters: Parameter schema by name, in the campaign-file form of
            :meth:`~genesis_platform.planning.space.Space.to_dict`, each with a ``unit``.
        measurements: Measured quantities by name, each ``{"unit": ...}`` (non-empty).
        description: What the instrument does, for people.
        subscriptions: Document callbacks subscribed to the RunEngine for the station's
            life (e.g. a writer to a data store); they run on the RunEngine's thread, and
            one that raises fails the operation.

    Raises:
        InvalidInput: The schemas do not match the devices (field ``movables.<name>``,
            ``detectors.<name>``, ``parameters.<name>...`` or ``measurements.<name>...``).
    """

    def __init__(
        self,
        name: str,
        *,
        movables: Mapping[str, Any],
        detectors: Mapping[str, tuple[Any, str]],
        parameters: Mapping[str, Mapping[str, Any]],
        measurements: Mapping[str, Mapping[str, Any]],
        description: str = "",
        subscriptions: Sequence[DocumentCallback] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInput("name", f"must be a non-empty string, got {name!r}")
        self._space = _check_parameters(parameters)
        _check_measurements(measurements)
        self._movables = _check_movables(movables, self._space)
        self._detectors = _check_detectors(detectors, measurements)
        self._name = name
        self._info = StationInfo(
            name=name,
            driver="bluesky",
            description=description,
            capabilities=("measure",),
            parameters={key: dict(spec) for key, spec in parameters.items()},
            measurements={key: dict(spec) for key, spec in measurements.items()},
            slots=1,
            protocol="Bluesky",
        )
        self._readables = _readables(self._detectors, self._movables)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._jobs: dict[str, _Job] = {}
        self._closed = False
        self._broken = ""
        self._heartbeat = 0.0
        self._engine = threading.Lock()
        self._current: _Job | None = None
        """The job whose plan the RunEngine may be running (guarded by ``_engine``)."""
        # Held here too: the RunEngine's dispatcher may keep only weak references.
        self._subscriptions = (self._on_document, *subscriptions)
        self._re = _run_engine()
        for callback in self._subscriptions:
            self._re.subscribe(callback)  # type: ignore[no-untyped-call]
        self._ping(timeout=1.0)
        self._worker = threading.Thread(
            target=self._serve, name=f"bluesky-station-{name}", daemon=True
        )
        self._worker.start()

    @classmethod
    def simulated(
        cls,
        emulator: Emulator | str,
        *,
        name: str | None = None,
        latency_s: float = 0.0,
        noise: float = 1.0,
        seed: int = 0,
    ) -> BlueskyStation:
        """A station over ophyd simulated devices that answer with ``emulator``.

        See :func:`simulated_devices` for the devices.

        Args:
            emulator: The emulated experiment, or the name of a built-in one.
            name: The station's name (default: the emulator's).
            latency_s: Acquisition time of the detectors, s.
            noise: Scale on the emulator's measurement noise (0: the noise-free values).
            seed: Seed of the noise (non-negative integer); an operation's noise derives
                from ``(seed, operation id)``.

        Raises:
            InvalidInput: Unknown emulator or an option out of range (field named after it).
        """
        model = get_emulator(emulator) if isinstance(emulator, str) else emulator
        devices = simulated_devices(model, latency_s=latency_s, noise=noise, seed=seed)
        return cls(name or model.name, **devices)

    @property
    def name(self) -> str:
        """The station's name."""
        return self._name

    def describe(self) -> StationInfo:
        """Capabilities, parameter and measurement schemas; one slot."""
        return self._info

    def status(self) -> StationStatus:
        """State, busy slot, queue length and heartbeat (the RunEngine's last answer)."""
        with self._lock:
            busy = sum(job.running for job in self._jobs.values())
            queued = len(self._queue)
            closed = self._closed
        if closed:
            reason = "station closed"
            return StationStatus(StationState.OFFLINE, busy, queued, reason, self._heartbeat)
        self._ping(timeout=_PING_TIMEOUT_S)
        broken = self._fault()
        if broken:
            return StationStatus(StationState.ERROR, busy, queued, broken, self._heartbeat)
        state = StationState.BUSY if busy or queued else StationState.IDLE
        return StationStatus(state, busy, queued, heartbeat=self._heartbeat)

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` and return its future at once.

        Idempotent by operation id: while an operation with the same id and parameters is
        queued or running, its future is returned and nothing new runs.

        The future fails at once, without running anything, with
        :class:`~genesis_platform.errors.InvalidInput` when the parameters do not fit the
        station (or the id is in flight with other parameters) and with
        :class:`~genesis_platform.errors.StationError` when the station is closed or in
        error. It fails later with :class:`~genesis_platform.errors.OperationFailed` when
        the plan fails (a device raised or reported a failure; the message is the
        device's), and with :class:`~genesis_platform.errors.StationError` on
        :meth:`abort` or :meth:`cancel`.
        """
        try:
            point = self._space.validate(op.params, where="op.params")
        except InvalidInput as exc:
            return failed(exc)
        broken = self._fault()
        with self._lock:
            if self._closed:
                return failed(StationError(f"station '{self._name}' is closed; open it again"))
            if broken:
                return failed(StationError(f"station '{self._name}' is in error: {broken}"))
            existing = self._jobs.get(op.id)
            if existing is not None:
                return existing.future if existing.point == point else failed(id_clash(op))
            job = _Job(op, point)
            self._jobs[op.id] = job
            self._queue.append(job)
            self._wake.notify()
        job.future.add_done_callback(lambda _: self._forget(job))
        return job.future

    def abort(self) -> None:
        """Stop the running plan and drop the queue; their futures fail with StationError.

        Returns once the RunEngine has been told; the station then runs new operations
        (after the RunEngine has cleaned up the aborted run).
        """
        with self._lock:
            jobs = [job for job in self._jobs.values() if not job.settled]
            running = any(job.running for job in jobs)
            self._jobs.clear()
            self._queue.clear()
            for job in jobs:
                job.settled = True
                job.stop.set()
        for job in jobs:
            settle(job.future, error=StationError(f"aborted: operation '{job.op.id}' stopped"))
        if running:
            self._abort_plan(jobs)

    def cancel(self, op_id: str) -> bool:
        """Stop operation ``op_id``, queued or running; its future fails with StationError.

        A queued operation is dropped; the running one's plan is aborted (as by
        :meth:`abort`: the devices it moved are stopped and its run closes with
        ``exit_status="abort"``), and the queued operations run next. Returns once the
        RunEngine has been told.

        Returns:
            False when no such operation is queued or running here.
        """
        with self._lock:
            job = self._jobs.get(op_id)
            if job is None or job.settled:
                return False
            del self._jobs[op_id]
            job.settled = True
            job.stop.set()
            running = job.running
            if not running:
                with contextlib.suppress(ValueError):  # the worker may have just taken it
                    self._queue.remove(job)
        settle(job.future, error=StationError(f"aborted: operation '{op_id}' cancelled"))
        if running:
            self._abort_plan([job])
        return True

    def close(self) -> None:
        """Stop accepting operations, let queued ones finish, and stop the RunEngine's loop.

        Call :meth:`abort` first not to wait for them.
        """
        with self._lock:
            already = self._closed
            self._closed = True
            self._wake.notify_all()
        if already:
            return
        if threading.current_thread() is not self._worker:
            self._worker.join()
        _stop_loop(self._re)

    def __enter__(self) -> BlueskyStation:
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
        return f"BlueskyStation({self._name!r})"

    # -- the worker thread ---------------------------------------------------------------

    def _serve(self) -> None:
        """Worker body: run accepted operations one at a time until closed and drained."""
        while (job := self._next_job()) is not None:
            self._execute(job)

    def _next_job(self) -> _Job | None:
        with self._wake:
            while not self._queue and not self._closed:
                self._wake.wait()
            return self._queue.popleft() if self._queue else None

    def _execute(self, job: _Job) -> None:
        """Run one job and settle its future (never raises)."""
        with self._lock:
            if job.settled:
                return
            if not job.future.set_running_or_notify_cancel():
                job.settled = True
                return
            job.running = True
        try:
            measurement = self._measure(job)
        except GenesisError as exc:
            self._finish(job, error=exc)
        except Exception as exc:  # a bug here must not leave the future pending
            logger.exception("Bluesky station %r failed on %r", self._name, job.op.id)
            self._finish(job, error=StationError(f"station '{self._name}' failed: {exc!r}"))
        else:
            self._finish(job, result=measurement)

    def _measure(self, job: _Job) -> Measurement:
        """Run the operation's plan and build its measurement from the run's documents."""
        self._check_idle()
        documents = _RunDocuments()
        with self._engine:
            self._current = job
        try:
            self._re(self._plan(job), documents)
        except RunEngineInterrupted as exc:
            raise StationError(f"aborted: operation '{job.op.id}' stopped") from exc
        except Exception as exc:
            raise OperationFailed(
                f"operation '{job.op.id}' failed on Bluesky station '{self._name}': "
                f"{_device_message(exc)}; check the device, then retry"
            ) from exc
        finally:
            with self._engine:  # waits for an abort being handed over to this plan
                self._current = None
            self._check_idle()
        return self._measurement(job, documents)

    def _plan(self, job: _Job) -> MsgGenerator[None]:
        """The operation as a plan: open a run, move, trigger and read, close the run."""
        if job.stop.is_set():  # aborted before the RunEngine started the plan
            return
        md = {"operation_id": job.op.id, "params": dict(job.point), "station": self._name}
        yield from bps.open_run(md)
        moves: list[Any] = []
        for param, device in self._movables.items():
            moves += [device, job.point[param]]
        if moves:
            yield from bps.mv(*moves)
        yield from bps.trigger_and_read(self._readables)
        yield from bps.close_run()

    def _measurement(self, job: _Job, documents: _RunDocuments) -> Measurement:
        data = documents.primary_data()
        assert documents.start is not None and documents.stop is not None  # checked above
        values = {
            measurement: _number(data, key, measurement)
            for measurement, (_, key) in self._detectors.items()
        }
        positions = {
            param: data[device.name]
            for param, device in self._movables.items()
            if getattr(device, "name", None) in data
        }
        uid = str(documents.start["uid"])
        return Measurement(
            operation_id=job.op.id,
            values=values,
            external_id=uid,
            duration_s=max(0.0, float(documents.stop["time"]) - float(documents.start["time"])),
            metadata={
                "uid": uid,
                "scan_id": documents.start.get("scan_id"),
                "exit_status": documents.stop.get("exit_status"),
                "positions": positions,
            },
        )

    def _finish(
        self, job: _Job, result: Measurement | None = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            job.running = False
            claimed = not job.settled
            job.settled = True
        if claimed:
            settle(job.future, result=result, error=error)

    def _forget(self, job: _Job) -> None:
        """Done-callback of a job's future: it is no longer in flight (nor queued, if cancelled)."""
        with self._lock:
            if self._jobs.get(job.op.id) is job:
                del self._jobs[job.op.id]
            if job.future.cancelled():  # by its caller, while queued
                with contextlib.suppress(ValueError):
                    self._queue.remove(job)

    # -- the RunEngine -------------------------------------------------------------------

    def _abort_plan(self, jobs: Sequence[_Job]) -> None:
        """Tell the RunEngine to abort its plan if it is one of ``jobs``' (from any thread).

        Call after setting their stop flags. Holding ``_engine`` keeps the worker from
        starting the next operation's plan until the RunEngine has taken the abort.
        """
        reason = f"aborted by Genesis on station '{self._name}'"
        with self._engine:
            if not any(job is self._current for job in jobs) or not self._re.loop.is_running():
                return  # not started (its plan checks the stop flag) or already over
            # RuntimeError: already idle, as the plan had not started (it then checks its
            # stop flag) or had ended; a panicked RunEngine raises it too, and status()
            # reports that.
            with contextlib.suppress(RuntimeError):
                self._re.abort(reason=reason)  # type: ignore[no-untyped-call]

    def _check_idle(self) -> None:
        """Raise StationError (and remember why) unless the RunEngine is idle."""
        state = str(self._re.state)
        if state != "idle":
            with self._lock:
                self._broken = self._broken or (
                    f"the RunEngine is {state} between operations; close and reopen the station"
                )
            raise StationError(f"station '{self._name}' is in error: {self._broken}")

    def _fault(self) -> str:
        """Why the station cannot run operations, or '' when it can."""
        if self._broken:
            return self._broken
        if str(self._re.state) == "panicked":
            return "the RunEngine panicked; close and reopen the station"
        if not self._re.loop.is_running():
            return "the RunEngine's event loop has stopped; close and reopen the station"
        if not self._worker.is_alive():
            return "the station's worker thread has stopped; close and reopen the station"
        return ""

    def _ping(self, timeout: float) -> None:
        """Ask the RunEngine's loop to answer; its answer updates the heartbeat."""
        answered = threading.Event()

        def answer() -> None:
            self._beat()
            answered.set()

        try:
            self._re.loop.call_soon_threadsafe(answer)
        except RuntimeError:  # the loop is closed
            return
        answered.wait(timeout)

    def _beat(self) -> None:
        self._heartbeat = time.time()

    def _on_document(self, name: str, doc: Mapping[str, Any]) -> None:
        self._beat()


def simulated_devices(
    emulator: Emulator | str,
    *,
    latency_s: float = 0.0,
    noise: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Ophyd simulated devices around an emulator: the keyword arguments of BlueskyStation.

    Each numeric parameter is a :class:`ophyd.sim.SynAxis` (with the parameter's unit as
    its ``egu``), each categorical one a soft :class:`ophyd.Signal` holding the choice, and
    each measurement a :class:`ophyd.sim.SynSignal` whose acquisition (``exposure_time``)
    takes ``latency_s`` and whose value is the emulator's at the devices' setpoints. The
    noise of an operation is drawn from ``(seed, operation id)``: the simulated sample
    learns the operation id from the run's start document (it is one of the
    ``subscriptions``). With ``noise=0`` the values are the emulator's
    :meth:`~genesis_platform.labs.emulators.Emulator.mean`.

    Args:
        emulator: The emulated experiment, or the name of a built-in one.
        latency_s: Acquisition time of the detectors, s.
        noise: Scale on the emulator's measurement noise (0: noise-free).
        seed: Seed of the noise (non-negative integer).

    Raises:
        InvalidInput: Unknown emulator (field ``runner.station``) or an option out of range
            (field named after the option).
    """
    model = get_emulator(emulator) if isinstance(emulator, str) else emulator
    latency_s = _check_float("latency_s", latency_s)
    sample = _EmulatedSample(model, noise=_check_float("noise", noise), seed=_check_seed(seed))
    movables = {
        param: sample.add_setting(param, spec, str(model.parameters[param].get("unit", "")))
        for param, spec in model.space().items()
    }
    detectors = {
        measurement: (
            SynSignal(
                functools.partial(sample.value, measurement),
                name=measurement,
                exposure_time=latency_s,
            ),
            measurement,
        )
        for measurement in model.measurements
    }
    return {
        "movables": movables,
        "detectors": detectors,
        "parameters": model.parameters,
        "measurements": model.measurements,
        "description": f"{model.description} Simulated ophyd devices on a Bluesky RunEngine.",
        "subscriptions": (sample.observe,),
    }


class _EmulatedSample:
    """What the simulated detectors look at: the emulator at the devices' setpoints.

    Setpoints, not readbacks: a SynAxis reaches its readback by interpolation
    (``old + (target - old)``), which may differ from the target in the last bit, and the
    noise-free station must answer exactly ``emulator.mean(params)``. One evaluation is
    shared by all detectors of an operation (one noise draw per operation).
    """

    def __init__(self, emulator: Emulator, *, noise: float, seed: int) -> None:
        self._emulator = emulator
        self._noise = noise
        self._seed = seed
        self._settings: dict[str, Callable[[], Any]] = {}
        self._lock = threading.Lock()
        self._operation = ""
        self._cached: tuple[tuple[Any, ...], dict[str, float]] | None = None

    def add_setting(self, name: str, spec: Any, unit: str) -> Any:
        """Make the device of parameter ``name``, starting at a valid value."""
        if isinstance(spec, Choice):
            signal = Signal(value=spec.values[0], name=name)
            self._settings[name] = signal.get
            return signal
        axis = SynAxis(name=name, value=spec.low, egu=unit)
        self._settings[name] = axis.setpoint.get
        return axis

    def observe(self, name: str, doc: Mapping[str, Any]) -> None:
        """Document callback: learn the operation id from each run's start document."""
        if name == "start":
            with self._lock:
                self._operation = str(doc.get("operation_id", doc["uid"]))

    def value(self, measurement: str) -> float:
        """The measurement now (never raises: a detector thread would hang its status)."""
        try:
            return self._values()[measurement]
        except Exception:
            logger.exception("emulated sample failed to compute %r", measurement)
            return math.nan

    def _values(self) -> dict[str, float]:
        point = {name: read() for name, read in self._settings.items()}
        with self._lock:
            key = (self._operation, *point.items())
            if self._cached is None or self._cached[0] != key:
                rng = np.random.default_rng([self._seed, digest(self._operation)])
                self._cached = (key, self._emulator.evaluate(point, rng, self._noise))
            return self._cached[1]


def open_bluesky_station(name: str, **options: Any) -> BlueskyStation:
    """Open a Bluesky station from options, for the station registry.

    Args:
        name: The station's name.
        **options: Either :data:`EMULATOR_OPTIONS` (``emulator="electrolyte"`` plus
            optional ``latency_s``, ``noise``, ``seed``: simulated devices around a
            built-in emulator) or :data:`DEVICES_OPTIONS` (``devices="package.module:factory"``,
            a callable without arguments that returns the keyword arguments of
            :class:`BlueskyStation` other than ``name``).

    Raises:
        InvalidInput: An unknown or missing option, an unknown emulator, a bad option value,
            or a devices reference that does not import or returns something else (field
            ``options.<option>``).
        StationError: The devices factory raised (e.g. a device did not connect).
    """
    if "devices" in options:
        _check_options(options, DEVICES_OPTIONS)
        return _from_factory(name, options["devices"])
    if "emulator" in options:
        _check_options(options, EMULATOR_OPTIONS)
        return _from_emulator(name, **options)
    raise InvalidInput(
        "options",
        "a Bluesky station needs emulator or devices",
        "give emulator=NAME (a built-in emulator) or devices='package.module:factory'",
    )


def _check_options(options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in options:
        if key not in allowed:
            raise InvalidInput(
                f"options.{key}",
                f"not an option of a Bluesky station opened with {allowed[0]}",
                f"use only: {', '.join(allowed)}",
            )


def _from_emulator(name: str, emulator: Any, **options: Any) -> BlueskyStation:
    if not isinstance(emulator, str):
        raise InvalidInput("options.emulator", f"must be an emulator's name, got {emulator!r}")
    try:
        model = get_emulator(emulator)
    except InvalidInput as exc:
        raise InvalidInput("options.emulator", exc.problem, exc.fix) from exc
    try:
        return BlueskyStation.simulated(model, name=name, **options)
    except InvalidInput as exc:
        raise InvalidInput(f"options.{exc.field}", exc.problem, exc.fix) from exc


def _from_factory(name: str, reference: Any) -> BlueskyStation:
    try:
        factory = resolve_function(reference)
    except InvalidInput as exc:
        raise InvalidInput("options.devices", exc.problem, _DEVICES_FIX) from exc
    try:
        kwargs = factory()
    except Exception as exc:
        raise StationError(
            f"the devices factory '{reference}' of station '{name}' failed: {exc!r}"
        ) from exc
    if not isinstance(kwargs, Mapping) or "name" in kwargs:
        raise InvalidInput(
            "options.devices",
            f"'{reference}' returned {type(kwargs).__name__}, not the keyword arguments of "
            "BlueskyStation",
            "return a dict with movables, detectors, parameters and measurements (no name)",
        )
    try:
        return BlueskyStation(name, **kwargs)
    except TypeError as exc:
        raise InvalidInput("options.devices", f"'{reference}' returned {exc}") from exc
    except InvalidInput as exc:
        raise InvalidInput(f"options.devices.{exc.field}", exc.problem, exc.fix) from exc


def _run_engine() -> RunEngine:
    """A RunEngine for a worker thread: no SIGINT handler, a plain wait while a plan runs."""
    waiter = DuringTask()  # type: ignore[no-untyped-call]
    return RunEngine(context_managers=[], during_task=waiter, call_returns_result=True)


def _stop_loop(engine: RunEngine) -> None:
    """Stop and close the RunEngine's event loop (ending its thread)."""
    loop = engine.loop
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    deadline = time.monotonic() + _LOOP_STOP_TIMEOUT_S
    while loop.is_running() and time.monotonic() < deadline:
        time.sleep(0.005)
    if not loop.is_running():
        loop.close()


def _check_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> Space:
    try:
        space = Space.from_dict(parameters)
    except InvalidInput as exc:
        field_name = exc.field.replace("space", "parameters", 1)
        raise InvalidInput(field_name, exc.problem, exc.fix) from exc
    for param, spec in parameters.items():
        if not isinstance(spec.get("unit"), str):
            raise InvalidInput(
                f"parameters.{param}.unit", "missing", "give its unit ('' when dimensionless)"
            )
    return space


def _check_measurements(measurements: Mapping[str, Mapping[str, Any]]) -> None:
    if not isinstance(measurements, Mapping) or not measurements:
        raise InvalidInput("measurements", "must name at least one measured quantity")
    for measurement, spec in measurements.items():
        unit = spec.get("unit") if isinstance(spec, Mapping) else None
        if not isinstance(unit, str) or not unit:
            raise InvalidInput(f"measurements.{measurement}.unit", "missing", "e.g. mS/cm")


def _check_movables(movables: Mapping[str, Any], space: Space) -> dict[str, Any]:
    _check_names("movables", movables, set(space), "parameter")
    for param, device in movables.items():
        if not isinstance(device, Movable):
            raise InvalidInput(
                f"movables.{param}",
                f"{device!r} is not a bluesky Movable (it has no set method)",
                "give a settable ophyd device, e.g. a motor or a Signal",
            )
    return dict(movables)


def _check_detectors(
    detectors: Mapping[str, tuple[Any, str]], measurements: Mapping[str, Any]
) -> dict[str, tuple[Any, str]]:
    _check_names("detectors", detectors, set(measurements), "measurement")
    for measurement, entry in detectors.items():
        ok = isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[1], str)
        if not ok or not isinstance(entry[0], Readable):
            raise InvalidInput(
                f"detectors.{measurement}",
                f"{entry!r} is not (readable device, data key)",
                "give (device, 'data_key'), e.g. (det, 'det')",
            )
    return {measurement: (entry[0], entry[1]) for measurement, entry in detectors.items()}


def _check_names(what: str, given: Mapping[str, Any], expected: set[str], kind: str) -> None:
    if not isinstance(given, Mapping):
        raise InvalidInput(what, f"must map each {kind} to its device")
    extra, missing = sorted(set(given) - expected), sorted(expected - set(given))
    if extra:
        raise InvalidInput(f"{what}.{extra[0]}", f"not a {kind} of the station")
    if missing:
        raise InvalidInput(f"{what}.{missing[0]}", f"no device for {kind} '{missing[0]}'")


def _readables(detectors: Mapping[str, tuple[Any, str]], movables: Mapping[str, Any]) -> list[Any]:
    """Devices to trigger and read, each once: the detectors, then the readable movables."""
    devices: list[Any] = []
    for device in [entry[0] for entry in detectors.values()] + list(movables.values()):
        if isinstance(device, Readable) and all(device is not seen for seen in devices):
            devices.append(device)
    return devices


def _number(data: Mapping[str, Any], key: str, measurement: str) -> float:
    """A measurement's value from an event's data."""
    if key not in data:
        raise StationError(
            f"the event has no data key '{key}' for measurement '{measurement}' "
            f"(it has: {', '.join(sorted(data))}); fix the station's detectors"
        )
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise StationError(f"data key '{key}' is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise OperationFailed(f"the detector of '{measurement}' read {number}; retry")
    return number


def _device_message(exc: BaseException) -> str:
    """The device's own message: a failed status carries it as the cause."""
    if isinstance(exc, FailedStatus) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def _check_float(field_name: str, value: Any) -> float:
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or value < 0:
        raise InvalidInput(field_name, f"must be a number >= 0, got {value!r}")
    return float(value)


def _check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("seed", f"must be an integer >= 0, got {value!r}")
    return value
