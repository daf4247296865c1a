"""The Ray executor: tasks run as Ray tasks on a Ray cluster (extra ``[ray]``).

:class:`RayExecutor` connects this process to a running cluster (``address="auto"``, a GCS
address ``"host:port"``, or a Ray Client address ``"ray://host:port"``) or starts a local
one (``address=None``, with ``num_cpus``). Each task is one Ray task that runs the same
worker code as :class:`~genesis_platform.compute.local.LocalExecutor` (the helpers of
:mod:`genesis_platform.compute.local`), so a task behaves the same on both.

Design choices:

- **Ids.** A task's external id is ``"ray:<Ray task id, hex>"``, known when
  :meth:`RayExecutor.submit` returns. Ray tasks die with the driver that submitted them, so
  :meth:`RayExecutor.attach` only finds tasks of this executor (in flight, or among the last
  1,024 finished); for any other id it returns None.
- **Resources.** ``cores``, ``gpus`` and ``memory_mb`` become the Ray task's ``num_cpus``,
  ``num_gpus`` and ``memory``, so Ray's scheduler decides where and when a task runs. Every
  task is submitted to Ray at once (Ray queues it); a task that no node can ever fit stays
  queued (Ray logs a warning) until the cluster grows or the task is cancelled. Ray does not
  retry tasks (``max_retries=0``): the platform decides about retries.
- **Slots.** :meth:`RayExecutor.capacity` is ``max_workers`` (default: the cluster's CPUs
  when the executor connected) minus this executor's tasks in flight. It counts tasks, not
  cores, like the local executor, and is advisory: Ray, not this number, decides how many
  tasks run at once.
- **Futures without a thread per task.** Each task's ``ObjectRef.future()`` calls back on
  Ray's own thread, which only queues the outcome; one dispatcher thread per executor turns
  outcomes into results and settles the futures (so done-callbacks of the caller never run
  on Ray's thread, and may submit more tasks).
- **Environment.** The callable or command sees the Ray worker's environment updated with
  the submitter's environment (as at :meth:`~RayExecutor.submit`) and then with
  ``task.env``; the worker keeps its own values of the variables Ray sets in it (``RAY_*``,
  ``PYTHONBREAKPOINT``, the accelerators' ``CUDA_VISIBLE_DEVICES``, ...). The submitter's
  environment at construction travels once, inside the executor's remote function (Ray
  ships a function to each worker once); a task carries only what changed since, so
  forwarding costs next to nothing per task. With ``forward_env=False`` (e.g. a laptop
  driving a remote cluster through ``ray://``, whose ``PATH`` means nothing there) only
  ``task.env`` is forwarded. A task travels as pickled bytes both ways (the fastest thing
  for Ray to carry).
- **Walltime.** A callable is interrupted in the worker by SIGALRM (Ray runs a task in its
  worker's main thread). If it cannot be interrupted (a C call that never returns to the
  interpreter),
  :func:`faulthandler.dump_traceback_later` ends the worker process ``walltime_s + 2`` s
  after the call started, and the future fails with ``walltime exceeded``; Ray starts a new
  worker. A command's process group is killed at the limit.
- **Cancel.** A queued task is removed from Ray's queue. A running callable is stopped by
  killing its worker process (``ray.cancel(force=True)``: that also stops C code, and Ray
  kills the worker's child processes). A running command gets a ``KeyboardInterrupt`` in its
  worker (``ray.cancel(force=False)``), which kills the command's process group (its whole
  process tree, which a forced cancel would not reach: the command runs in its own
  session); if the task is still running 5 s later, its worker is killed.
- **Errors.** The task's own failure (the callable raised, the command exited non-zero, the
  walltime) is :class:`~genesis_platform.errors.TaskFailed`; a task Ray lost (worker
  crashed or was killed, node died, owner or object lost, out of memory) is
  :class:`~genesis_platform.errors.TransientFailure`; anything else is
  :class:`~genesis_platform.errors.ExecutorError`. A worker crash after the task's walltime
  had elapsed since submission is reported as a walltime failure (it is almost always the
  walltime backstop above).
- **One connection per process.** Ray allows one connection per process; executors share
  it. The connection is closed when the last executor using it has shut down and finished
  its tasks, and only if an executor opened it: a local Ray the executor started stops with
  it; a cluster it connected to keeps running (the executor only disconnects). If the
  process was connected to Ray before (``ray.init`` called elsewhere), executors use that
  connection and leave it open.

The workers import the task's function and :mod:`genesis_platform` itself, so both must be
installed on every node of the cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import functools
import os
import pickle
import re
import shlex
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import SimpleQueue
from types import TracebackType
from typing import Any

import ray
import ray.exceptions

from genesis_platform.compute.local import (
    _FAILURE_TAIL_CHARS,
    _LOG_LIMIT_CHARS,
    _WALLTIME_GRACE_S,
    _Call,
    _call_in_worker,
    _Outcome,
    _read_tail,
    _Watchdog,
    check_task,
)
from genesis_platform.compute.protocols import Resources, TaskFuture, TaskResult, TaskSpec
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure

__all__ = ["RayExecutor"]

_ADDRESS = re.compile(
    r"(?:ray://)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})"
)
_ADDRESS_FIX = "give None (start a local Ray), 'auto', 'host:port' or 'ray://host:port'"
_CANCEL_GRACE_S = 5.0
"""How long a cancelled command's worker has to kill the command before it is killed, s."""
_RECENT_LIMIT = 1_024
"""How many finished tasks :meth:`RayExecutor.attach` still finds."""
_OPTION_CACHE_LIMIT = 256
"""How many (resources, name) variants of the remote function an executor keeps."""
_COMMAND_POLL_S = 0.1
"""How often a command's worker looks for a cancellation while the command runs, s."""

_TRANSIENT: tuple[type[BaseException], ...] = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,  # includes OwnerDiedError, ObjectReconstructionFailedError
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.TaskPlacementGroupRemoved,
)
"""Ray errors meaning Ray lost the task in a way a retry may fix."""


# -- what travels to the worker -------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    """One task as the worker receives it.

    ``env_changes`` and ``env_removed`` say how the submitter's environment differs from the
    one the executor's remote function carries; ``env`` is ``task.env``.
    """

    function: str | None
    kwargs: dict[str, Any]
    command: tuple[str, ...] | None
    cwd: str | None
    walltime_s: float | None
    env: dict[str, str]
    env_changes: dict[str, str] = field(default_factory=dict)
    env_removed: tuple[str, ...] = ()


def _make_entry(base_env: dict[str, str] | None) -> Callable[[bytes], bytes]:
    """The function Ray runs for every task of one executor.

    A closure, so that Ray pickles ``base_env`` with it and ships it to each worker once.
    It takes a pickled :class:`_Work` and returns a pickled :class:`_Outcome`: bytes are
    what Ray (de)serializes fastest.
    """

    def run_genesis_task(work: bytes) -> bytes:
        outcome = _run_in_worker(pickle.loads(work), base_env)
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)

    return run_genesis_task


def _run_in_worker(work: _Work, base_env: dict[str, str] | None) -> _Outcome:
    """Run one task in this Ray worker and report what happened (never raises)."""
    env = _task_environment(work, base_env)
    if work.command is not None:
        return _command_in_worker(work.command, env, work.cwd, work.walltime_s)
    assert work.function is not None  # checked by check_task
    call = _Call(work.function, work.kwargs, env, work.cwd, work.walltime_s)
    if work.walltime_s is None:
        return _call_in_worker(call)
    # The backstop for code SIGALRM cannot interrupt: a C thread that needs no GIL ends the
    # worker process, and the driver reports the walltime.
    faulthandler.dump_traceback_later(work.walltime_s + _WALLTIME_GRACE_S, exit=True, file=2)
    try:
        return _call_in_worker(call)
    finally:
        faulthandler.cancel_dump_traceback_later()


_BASE_ENVIRONMENTS: dict[int, tuple[dict[str, str], dict[str, str]]] = {}
"""In a worker: per executor (its ``base_env``), this worker's environment updated with it."""


def _task_environment(work: _Work, base_env: dict[str, str] | None) -> dict[str, str]:
    """This worker's environment, updated with the submitter's, then with ``task.env``.

    The worker keeps its own values of the variables Ray owns (``RAY_*``, accelerators').
    """
    if base_env is None:
        return {**os.environ, **work.env}
    cached = _BASE_ENVIRONMENTS.get(id(base_env))
    if cached is None or cached[0] is not base_env:
        forwarded = {k: v for k, v in base_env.items() if not _owned_by_ray(k)}
        cached = (base_env, {**os.environ, **forwarded})
        _BASE_ENVIRONMENTS[id(base_env)] = cached
    env = cached[1]
    # Ray may set an accelerator's variable anew for each task (the GPUs it was given).
    owned = {k: os.environ[k] for k in _worker_owned_variables() if k in os.environ}
    if (
        work.env_changes
        or work.env_removed
        or work.env
        or any(env.get(k) != v for k, v in owned.items())
    ):
        env = dict(env)
        for key in work.env_removed:
            if not _owned_by_ray(key):
                env.pop(key, None)
        env.update((k, v) for k, v in work.env_changes.items() if not _owned_by_ray(k))
        env.update(owned)
        env.update(work.env)
    return env


def _owned_by_ray(name: str) -> bool:
    """Whether Ray sets the variable ``name`` in its workers (they keep their own value)."""
    return name.startswith("RAY_") or name in _worker_owned_variables()


@functools.cache
def _worker_owned_variables() -> frozenset[str]:
    """Variables Ray sets in each worker: its debugger's hook, the accelerators' visibility."""
    names = {"PYTHONBREAKPOINT", "CUDA_VISIBLE_DEVICES"}
    try:  # a private module of Ray: if it moves, CUDA_VISIBLE_DEVICES is still kept
        from ray._private.accelerators import get_all_accelerator_managers

        for manager in get_all_accelerator_managers():
            name = manager.get_visible_accelerator_ids_env_var()
            if name:
                names.add(name)
    except Exception:
        pass
    return frozenset(names)


def _command_in_worker(
    argv: tuple[str, ...], env: dict[str, str], cwd: str | None, walltime_s: float | None
) -> _Outcome:
    """Run ``argv`` in its own session, as ``local._run_command`` does, but cancellable.

    The log is read by a helper thread, so the worker's main thread stays free to receive
    the ``KeyboardInterrupt`` of ``ray.cancel(force=False)``; it then kills the command's
    whole process group.
    """
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return _Outcome(None, f"cannot start {shlex.join(argv)}: {exc}", "", "", 0.0, 0.0, 0)
    with process:
        watchdog = _Watchdog(process.pid, walltime_s)
        stdout = process.stdout
        assert stdout is not None  # stdout=PIPE
        tail: list[str] = []
        reader = threading.Thread(
            target=lambda: tail.append(_read_tail(stdout, _LOG_LIMIT_CHARS)),
            name="genesis-command-log",
            daemon=True,
        )
        reader.start()
        try:
            while reader.is_alive():
                reader.join(_COMMAND_POLL_S)
        except BaseException:  # the cancellation: the whole tree goes, then Ray is told
            watchdog.kill()
            raise
        finally:
            code, core_seconds = watchdog.reap()
            process.returncode = code  # reaped by wait4: tell Popen not to wait again
    logs = tail[0] if tail else ""
    error: str | None = None
    if watchdog.fired:
        error = f"walltime exceeded: {shlex.join(argv)} was killed after {watchdog.limit} s"
    elif code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        error = f"{shlex.join(argv)} {how}"
    return _Outcome(
        output=code,
        error=error,
        traceback=logs[-_FAILURE_TAIL_CHARS:] if error else "",
        logs=logs,
        wall_seconds=time.perf_counter() - start,
        core_seconds=core_seconds,
        pid=process.pid,
    )


# -- the connection to Ray, shared by the executors of this process ------------------------


class _Connection:
    """This process's one connection to Ray, counted by the executors that use it."""

    lock = threading.Lock()
    users = 0
    opened = False  # by an executor (so the last one closes it)

    @classmethod
    def acquire(cls, address: str | None, num_cpus: int | None) -> None:
        match = None if address is None else _ADDRESS.fullmatch(address)
        if match is not None:
            # Ray retries an address where nothing listens for minutes; a refusal is quick.
            try:
                socket.create_connection(
                    (match["host"].strip("[]"), int(match["port"])), 10
                ).close()
            except OSError as exc:
                raise ExecutorError(
                    f"cannot reach the Ray cluster at {address} ({exc}); check the address "
                    "and that the cluster runs (`ray status` on its head node)"
                ) from exc
        with cls.lock:
            if ray.is_initialized():
                if address is not None or num_cpus is not None:
                    raise ExecutorError(
                        "this process is already connected to Ray, and Ray allows one "
                        "connection per process: create the executor with address=None and "
                        "num_cpus=None to share it, or shut down what uses it first"
                    )
            else:
                cls._open(address, num_cpus)
            cls.users += 1

    @classmethod
    def _open(cls, address: str | None, num_cpus: int | None) -> None:
        where = "a local Ray" if address is None else f"the Ray cluster at {address}"
        try:
            if address is None:
                # "local" always starts a new Ray (None would join a cluster started by
                # `ray start` on this machine, or the one in RAY_ADDRESS).
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise ExecutorError(
                f"cannot start or connect to {where} ({type(exc).__name__}: {exc}); check that "
                "the cluster runs (`ray status`) and that this Ray's version matches its"
            ) from exc
        cls.opened = True

    @classmethod
    def release(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0 and cls.opened:
                cls.opened = False
                ray.shutdown()


# -- the executor, in the submitting process --------------------------------------------------


@dataclass
class _InFlight:
    """A task submitted to Ray whose outcome has not arrived yet."""

    ref: ray.ObjectRef[bytes]
    future: TaskFuture
    label: str
    is_command: bool
    walltime_s: float | None
    submitted: float = field(default_factory=time.monotonic)


_STOP = object()
"""Tells the dispatcher thread to end."""


class RayExecutor:
    """Runs tasks as Ray tasks on a Ray cluster, or on a local Ray it starts.

    Args:
        address: None to start a local Ray; ``"auto"`` for the cluster started on this
            machine by ``ray start`` (or named by ``RAY_ADDRESS``); ``"host:port"`` for a
            cluster's GCS address; ``"ray://host:port"`` for a Ray Client server.
        num_cpus: CPUs of the local Ray (default: this machine's); only with address None.
        max_workers: Slots :meth:`capacity` counts (default: the cluster's CPUs).
        forward_env: Give tasks the submitter's environment (see the module docstring);
            False forwards only ``task.env``.

    Raises:
        InvalidInput: An option is malformed (field ``address``, ``num_cpus`` or
            ``max_workers``).
        ExecutorError: Ray cannot be started or reached, or this process is already
            connected to Ray and ``address`` or ``num_cpus`` asks for another connection.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_workers: int | None = None,
        forward_env: bool = True,
    ) -> None:
        _check_options(address, num_cpus, max_workers)
        _Connection.acquire(address, num_cpus)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        except Exception as exc:
            _Connection.release()
            raise ExecutorError(f"cannot read the Ray cluster's resources: {exc}") from exc
        self._address = address
        self._max_workers = max(1, cpus) if max_workers is None else max_workers
        self._forward_env = forward_env
        base_env = dict(os.environ) if forward_env else None
        self._base_env = base_env or {}
        raw = _raw_environ()
        self._env_seen: dict[Any, Any] | None = None if raw is None else dict(raw)
        self._env_delta: tuple[dict[str, str], tuple[str, ...]] = ({}, ())
        self._remote = ray.remote(_make_entry(base_env))
        self._option_cache: dict[tuple[object, ...], Any] = {}
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._in_flight: dict[str, _InFlight] = {}
        self._recent: OrderedDict[str, TaskFuture] = OrderedDict()
        self._closed = False
        self._released = False
        self._outcomes: SimpleQueue[Any] = SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="genesis-ray-dispatch", daemon=True
        )
        self._dispatcher.start()

    @property
    def max_workers(self) -> int:
        """The slots :meth:`capacity` counts."""
        return self._max_workers

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Submit ``task`` to Ray and return its future, with its external id, at once.

        Raises:
            InvalidInput: The task is malformed (as for the local executor), or Ray refuses
                its resources (field ``resources``).
            ExecutorError: The executor is shut down, or Ray refused the task.
        """
        check_task(task)
        work = _Work(
            function=task.function,
            kwargs=dict(task.kwargs),
            command=None if task.command is None else tuple(task.command),
            cwd=task.cwd,
            walltime_s=task.resources.walltime_s,
            env=dict(task.env),
        )
        if self._forward_env:
            changes, removed = self._environment_changes()
            if changes or removed:
                work = dataclasses.replace(work, env_changes=changes, env_removed=removed)
        label = task.name or task.function or shlex.join(task.command or ())
        name = task.name or task.task_id or task.function or (task.command or ("",))[0]
        remote = self._options(task.resources, name)
        payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                raise ExecutorError("the Ray executor is shut down; create a new one")
            try:
                ref: ray.ObjectRef[bytes] = remote.remote(payload)
                external_id = f"ray:{ref.task_id().hex()}"
            except Exception as exc:
                raise ExecutorError(f"Ray refused the task {label}: {exc}") from exc
            future = TaskFuture(external_id, canceller=self._stop)
            entry = _InFlight(ref, future, label, task.command is not None, work.walltime_s)
            self._in_flight[external_id] = entry
        # Called on Ray's thread (or here, if the task is done already): queue, nothing more.
        ref.future().add_done_callback(lambda done: self._outcomes.put((entry, done)))
        return future

    def capacity(self) -> int:
        """Free slots: ``max_workers`` minus this executor's tasks in flight (0 once shut down)."""
        with self._lock:
            return 0 if self._closed else max(0, self._max_workers - len(self._in_flight))

    def cancel(self, external_id: str) -> bool:
        """Stop the task ``external_id``, queued or running; False if unknown or finished."""
        with self._lock:
            entry = self._in_flight.get(external_id)
        return entry is not None and entry.future.cancel()

    def attach(self, external_id: str) -> TaskFuture | None:
        """The future of a task of this executor (in flight or recently finished), else None.

        A Ray task dies with the driver that submitted it, so a task of another process (or
        of an earlier run of this one) cannot be followed: None.
        """
        with self._lock:
            entry = self._in_flight.get(external_id)
            return entry.future if entry is not None else self._recent.get(external_id)

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks.

        Args:
            wait: Block until the tasks in flight finish. Without it they go on, and their
                futures resolve, in the background. The connection to Ray closes (see the
                module docstring) once no task is left.
        """
        with self._lock:
            self._closed = True
            if wait:
                while self._in_flight:
                    self._drained.wait()
        self._release_when_drained()
        if wait and self._dispatcher is not threading.current_thread():
            self._dispatcher.join()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"RayExecutor(address={self._address!r}, max_workers={self._max_workers})"

    # -- internals ------------------------------------------------------------------------

    def _options(self, resources: Resources, name: str) -> Any:
        """The remote function with the task's resources and name (made once per kind).

        Raises:
            InvalidInput: Ray refuses the resources (field ``resources``).
        """
        key = (resources.cores, resources.gpus, resources.memory_mb, name)
        remote = self._option_cache.get(key)
        if remote is None:
            memory = None if resources.memory_mb is None else resources.memory_mb * 2**20
            try:
                remote = self._remote.options(
                    num_cpus=resources.cores,
                    num_gpus=resources.gpus,
                    memory=memory,
                    max_retries=0,
                    name=name,
                )
            except (TypeError, ValueError) as exc:
                fix = "cores and gpus >= 0, memory_mb > 0"
                raise InvalidInput("resources", str(exc), fix) from exc
            if len(self._option_cache) >= _OPTION_CACHE_LIMIT:  # e.g. one name per task
                self._option_cache.clear()
            self._option_cache[key] = remote
        return remote

    def _environment_changes(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """How this process's environment differs from the one the remote function carries."""
        raw = _raw_environ()
        if raw is not None and raw == self._env_seen:
            return self._env_delta  # unchanged since the last look (the usual case)
        now = dict(os.environ)
        changes = {k: v for k, v in now.items() if self._base_env.get(k) != v}
        removed = tuple(k for k in self._base_env if k not in now)
        # The delta first: a concurrent submit that sees the new snapshot reads the new delta.
        self._env_delta = delta = (changes, removed)
        self._env_seen = None if raw is None else dict(raw)
        return delta

    def _stop(self, external_id: str) -> None:
        """Canceller of the futures: stop the Ray task (best effort; the future is cancelled)."""
        with self._lock:
            entry = self._in_flight.get(external_id)
        if entry is None:
            return
        with contextlib.suppress(Exception):  # e.g. finished meanwhile, or Ray disconnected
            ray.cancel(entry.ref, force=not entry.is_command)
        if entry.is_command:
            timer = threading.Timer(_CANCEL_GRACE_S, self._kill_worker, (external_id,))
            timer.daemon = True
            timer.start()

    def _kill_worker(self, external_id: str) -> None:
        """A cancelled command still runs: kill its worker (its children go with it)."""
        with self._lock:
            entry = self._in_flight.get(external_id)
        if entry is not None:
            with contextlib.suppress(Exception):
                ray.cancel(entry.ref, force=True)

    def _dispatch(self) -> None:
        """Thread body: settle futures as Ray's outcomes arrive; end when drained and closed."""
        while True:
            item = self._outcomes.get()
            if item is _STOP:
                return
            entry, done = item
            result, error = self._interpret(entry, done)
            external_id = entry.future.external_id
            with self._lock:
                del self._in_flight[external_id]
                self._recent[external_id] = entry.future
                if len(self._recent) > _RECENT_LIMIT:
                    self._recent.popitem(last=False)
                if not self._in_flight:
                    self._drained.notify_all()
            # After the slot is free, so capacity() is exact once result() returns.
            entry.future.settle(result=result, error=error)
            self._release_when_drained()

    def _release_when_drained(self) -> None:
        """Once shut down with nothing in flight: let go of Ray, stop the dispatcher."""
        with self._lock:
            if not self._closed or self._in_flight or self._released:
                return
            self._released = True
        self._outcomes.put(_STOP)
        _Connection.release()

    def _interpret(
        self, entry: _InFlight, done: Future[bytes]
    ) -> tuple[TaskResult | None, BaseException | None]:
        """The task's result, or the error its future fails with."""
        external_id = entry.future.external_id
        try:
            outcome: _Outcome = pickle.loads(done.result())
        except ray.exceptions.WorkerCrashedError as exc:
            late = entry.walltime_s is not None and (
                time.monotonic() - entry.submitted > entry.walltime_s
            )
            if late and not entry.is_command:
                return None, TaskFailed(
                    f"walltime exceeded: {entry.label} ran longer than {entry.walltime_s} s "
                    "and could not be interrupted; its Ray worker was ended",
                    traceback=str(exc),
                    external_id=external_id,
                )
            return None, _lost(entry, exc)
        except _TRANSIENT as exc:
            return None, _lost(entry, exc)
        except ray.exceptions.TaskCancelledError:
            return None, ExecutorError(
                f"the Ray task of {entry.label} was cancelled ({external_id})",
                external_id=external_id,
            )
        except Exception as exc:
            return None, ExecutorError(
                f"Ray failed to run {entry.label} ({type(exc).__name__}: {exc}); "
                f"external id {external_id}",
                external_id=external_id,
            )
        usage = {"wall_seconds": outcome.wall_seconds, "core_seconds": outcome.core_seconds}
        if outcome.error is not None:
            return None, TaskFailed(
                outcome.error,
                traceback=outcome.traceback,
                logs=outcome.logs,
                usage=usage,
                external_id=external_id,
            )
        return TaskResult(outcome.output, outcome.logs, usage, external_id), None


def _lost(entry: _InFlight, exc: BaseException) -> TransientFailure:
    external_id = entry.future.external_id
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TransientFailure(
        f"Ray lost the task {entry.label} ({external_id}): {type(exc).__name__}: "
        f"{first_line}; a retry may succeed",
        external_id=external_id,
    )


def _raw_environ() -> dict[Any, Any] | None:
    """``os.environ``'s underlying dict, compared cheaply to notice changes (None if absent)."""
    raw = getattr(os.environ, "_data", None)
    return raw if isinstance(raw, dict) else None


def _check_options(address: object, num_cpus: object, max_workers: object) -> None:
    if address is not None:
        match = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
        if address != "auto" and (match is None or not 0 < int(match["port"]) < 65_536):
            raise InvalidInput("address", f"{address!r} is not a Ray address", _ADDRESS_FIX)
    for name, value in (("num_cpus", num_cpus), ("max_workers", max_workers)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(name, f"must be a positive integer, got {value!r}")
    if num_cpus is not None and address is not None:
        raise InvalidInput(
            "num_cpus", "only a local Ray (address None) takes num_cpus", "leave it unset"
        )
