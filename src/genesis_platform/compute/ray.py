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
- **Bundles of short tasks.** Ray spends about 0.7 ms of CPU on each task it runs, far more
  than a short function needs, and on a small machine that CPU is taken from the tasks. So
  a callable without walltime whose calls on this executor have lately taken at most
  :data:`_SHORT_S` (smoothed over its recent calls; a function never seen is not short) is
  held in the executor instead of being sent, while this executor already has twice
  ``max_workers`` Ray tasks in flight, and sent with other held tasks of the same resources
  as one Ray task, a *bundle* (``genesis-bundle`` in Ray's dashboard), once Ray has room:
  each bundle takes an equal share of what is held, at most :data:`_BUNDLE_LIMIT`. Room
  freed by a finished Ray task goes to held tasks first, and a held task that has waited
  :data:`_HELD_WAIT_S` is sent without room (tasks sent alone go to Ray's queue, which
  could otherwise stay full). A bundle's tasks run one after the other in one worker, each
  as it would alone (own environment, logs, usage), and each future settles with its own
  outcome when the bundle ends. A held task's external id is ``"ray:held-..."`` (it names
  the task, not a Ray task). A task sent alone is never delayed: bundles form only from
  tasks that would have waited in Ray's queue. ``bundle=False`` gives every task a Ray
  task of its own.
- **Futures without a thread per task, and without a callback per task.** One dispatcher
  thread per executor blocks in ``ray.wait`` on the oldest tasks in flight and settles the
  futures of every task it finds finished, fetching their outcomes with one ``ray.get``
  (a Python callback per task on Ray's own thread, as ``ObjectRef.future()`` makes, costs
  more than Ray's work for a no-op task). While Ray has tasks queued (more than twice
  ``max_workers`` in flight) it waits for a batch of the oldest to finish; otherwise it
  wakes at the first. Done-callbacks of the caller run on the dispatcher thread, never on
  Ray's, and may submit more tasks. A task that finishes before older ones is noticed
  within a few polls of 10 ms.
- **Ray functions and tasks.** Each function reference gets a Ray remote function of its
  own, and a call without kwargs or anything else to carry is submitted with no argument
  (an argument costs Ray about as much as a no-op task); other tasks carry one argument,
  the task as pickled bytes. A Ray task is named after the task's ``name`` or else its
  function (or program), so Ray's dashboard groups them.
- **Environment.** The callable or command sees the Ray worker's environment updated with
  the submitter's environment (as at :meth:`~RayExecutor.submit`) and then with
  ``task.env``; the worker keeps its own values of the variables Ray sets in it (``RAY_*``,
  ``PYTHONBREAKPOINT``, the accelerators' ``CUDA_VISIBLE_DEVICES``, ...). The submitter's
  environment at construction travels once, inside the executor's remote functions (Ray
  ships a function to each worker once); a task carries only what changed since, so
  forwarding costs next to nothing per task. With ``forward_env=False`` (e.g. a laptop
  driving a remote cluster through ``ray://``, whose ``PATH`` means nothing there) only
  ``task.env`` is forwarded. The outcome travels back as pickled bytes (the fastest thing
  for Ray to carry).
- **Walltime.** A callable is interrupted in the worker by SIGALRM (Ray runs a task in its
  worker's main thread). If it cannot be interrupted (a C call that never returns to the
  interpreter),
  :func:`faulthandler.dump_traceback_later` ends the worker process ``walltime_s + 2`` s
  after the call started, and the future fails with ``walltime exceeded``; Ray starts a new
  worker. A command's process group is killed at the limit.
- **Cancel.** A held task is dropped: it never runs. A task in a bundle that was sent
  runs (within milliseconds, as its bundle holds only short tasks) and its outcome is
  dropped; if the bundle is still in flight :data:`_STUCK_S` after the cancel (the
  cancelled call, or another, did not turn out short, or the bundle still waits in Ray's
  queue behind other work), it is ended (and the cancelled call's function no longer
  counts as short), and its other tasks fail with
  :class:`~genesis_platform.errors.TransientFailure` (a bundle returns its outcomes when
  it ends; the site's policy retries them, so one that had run may run again). A worker
  lost while running a bundle fails all of the bundle's tasks the same way. A task sent
  alone that is queued is removed from Ray's queue. A running callable is stopped by
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
import faulthandler
import functools
import itertools
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
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import ray
import ray.exceptions
import ray.util.client

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
"""How many remote functions (one per function reference), and how many (function,
resources, name) variants of them, an executor keeps."""
_WINDOW = 16
"""How many of the oldest tasks in flight the dispatcher waits on (see ``_dispatch``)."""
_HARVEST = 64
"""How many tasks in flight the dispatcher looks at for finished ones per wake-up."""
_POLL_S = 0.01
"""How long the dispatcher waits on the oldest tasks before it looks at the others, s."""
_COMMAND_POLL_S = 0.1
"""How often a command's worker looks for a cancellation while the command runs, s."""
_BUNDLE_LIMIT = 16
"""The most tasks one bundle (one Ray task) carries."""
_SHORT_S = 0.005
"""A function whose calls have lately taken at most this long (s, smoothed) is short: its
tasks may travel in bundles."""
_DURATION_WEIGHT = 0.3
"""The weight of the newest call in a function's smoothed duration."""
_STUCK_S = 2.0
"""How long after a bundled task is cancelled its bundle may still run before it is ended, s."""
_HELD_WAIT_S = 1.0
"""How long a held task waits for room before a bundle is sent all the same, s (so tasks
sent alone, which go to Ray's queue, cannot keep held ones waiting for ever)."""

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


def _make_entry(base_env: dict[str, str] | None, function: str | None) -> Callable[..., bytes]:
    """The function Ray runs for tasks of one executor.

    A closure, so that Ray pickles ``base_env`` (and ``function``) with it and ships them to
    each worker once. With ``function`` None it takes a :class:`_Work` pickled as a tuple.
    With a ``function`` it takes nothing and calls ``function`` without kwargs: for such
    calls an argument, or even a parameter (Ray binds arguments to the signature at every
    submit), costs Ray about as much as running a no-op task. Either returns an
    :class:`_Outcome` pickled as a tuple: bytes are what Ray (de)serializes fastest, and a
    tuple is what pickle makes and reads fastest.
    """

    def finish(outcome: _Outcome) -> bytes:
        return pickle.dumps(_outcome_fields(outcome), protocol=pickle.HIGHEST_PROTOCOL)

    if function is None:

        def run_genesis_task(work: bytes) -> bytes:
            return finish(_run_in_worker(_Work(*pickle.loads(work)), base_env))

        return run_genesis_task
    plain = _Work(function=function, kwargs={}, command=None, cwd=None, walltime_s=None, env={})

    def run_genesis_call() -> bytes:
        return finish(_run_in_worker(plain, base_env))

    return run_genesis_call


def _make_bundle_entry(base_env: dict[str, str] | None) -> Callable[[bytes], bytes]:
    """The function Ray runs for a bundle: several tasks, one after the other.

    It takes a list of pickled :class:`_Work` tuples, pickled, and returns the list of their
    outcomes, pickled, in the same order.
    """

    def run_genesis_bundle(works: bytes) -> bytes:
        outcomes = [
            _outcome_fields(_run_in_worker(_Work(*pickle.loads(work)), base_env))
            for work in pickle.loads(works)
        ]
        return pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)

    return run_genesis_bundle


def _outcome_fields(o: _Outcome) -> tuple[object, ...]:
    """An outcome as a tuple (what pickle makes and reads fastest); ``_Outcome(*it)`` again."""
    return (o.output, o.error, o.traceback, o.logs, o.wall_seconds, o.core_seconds, o.pid)


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


@dataclass
class _BaseEnvironment:
    """In a worker: one executor's environment for its tasks, and when it was checked."""

    base_env: dict[str, str]  # what the executor shipped (kept, so its id stays unique)
    env: dict[str, str]  # this worker's environment updated with it
    checked: dict[Any, Any] | None = None  # this worker's raw environment when env was right


_BASE_ENVIRONMENTS: dict[int, _BaseEnvironment] = {}
"""In a worker: per executor (its ``base_env``), the environment its tasks get."""


def _task_environment(work: _Work, base_env: dict[str, str] | None) -> dict[str, str]:
    """This worker's environment, updated with the submitter's, then with ``task.env``.

    The worker keeps its own values of the variables Ray owns (``RAY_*``, accelerators').
    """
    if base_env is None:
        return {**os.environ, **work.env}
    cached = _BASE_ENVIRONMENTS.get(id(base_env))
    if cached is None or cached.base_env is not base_env:
        forwarded = {k: v for k, v in base_env.items() if not _owned_by_ray(k)}
        cached = _BaseEnvironment(base_env, {**os.environ, **forwarded})
        _BASE_ENVIRONMENTS[id(base_env)] = cached
    raw = _raw_environ()
    plain = not (work.env_changes or work.env_removed or work.env)
    if plain and raw is not None and raw == cached.checked:
        return cached.env  # nothing changed since the last task (the usual case)
    env = cached.env
    # Ray may set an accelerator's variable anew for each task (the GPUs it was given).
    owned = {k: os.environ[k] for k in _worker_owned_variables() if k in os.environ}
    if not plain or any(env.get(k) != v for k, v in owned.items()):
        env = dict(env)
        for key in work.env_removed:
            if not _owned_by_ray(key):
                env.pop(key, None)
        env.update((k, v) for k, v in work.env_changes.items() if not _owned_by_ray(k))
        env.update(owned)
        env.update(work.env)
    if plain:
        cached.env, cached.checked = env, None if raw is None else dict(raw)
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
                _connect(address)
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

    future: TaskFuture
    label: str
    is_command: bool
    walltime_s: float | None
    function: str | None
    submitted: float = field(default_factory=time.monotonic)


@dataclass
class _RayTask:
    """One Ray task in flight: one task of its own, or a bundle of short ones."""

    ref: ray.ObjectRef[bytes]
    tasks: list[_InFlight]
    bundled: bool = False
    ended: bool = False  # a bundle ended to stop a cancelled task (see RayExecutor._stop)


@dataclass
class _Held:
    """A short task waiting in the executor for a bundle, while Ray has enough queued."""

    task: _InFlight
    work: bytes  # the task as a pickled _Work tuple
    resources: Resources


_NO_DELTA: tuple[dict[str, str], tuple[str, ...]] = ({}, ())


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
        bundle: Send short tasks in bundles while Ray has enough queued (see the module
            docstring); False gives every task a Ray task of its own.

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
        bundle: bool = True,
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
        self._bundle = bundle
        # Through Ray Client a ray.get that times out is slow (seconds, not its timeout).
        self._client = bool(ray.util.client.ray.is_connected())  # type: ignore[no-untyped-call]
        self._shipped_env = dict(os.environ) if forward_env else None
        self._base_env = self._shipped_env or {}
        raw = _raw_environ()
        self._env_seen: dict[Any, Any] | None = None if raw is None else dict(raw)
        self._env_delta: tuple[dict[str, str], tuple[str, ...]] = ({}, ())
        self._entries: dict[str | None, Any] = {}
        self._option_cache: dict[tuple[object, ...], Any] = {}
        self._durations: dict[str, float] = {}  # per function, smoothed, s
        self._held_ids = (f"ray:held-{os.urandom(4).hex()}-{n:x}" for n in itertools.count())
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._running: OrderedDict[ray.ObjectRef[bytes], _RayTask] = OrderedDict()  # oldest first
        self._tasks: dict[str, _RayTask] = {}  # the Ray task of each task in flight
        self._held: OrderedDict[str, _Held] = OrderedDict()  # oldest first
        self._bundled = (0, 0)  # tasks sent in bundles, bundles sent
        self._recent: OrderedDict[str, TaskFuture] = OrderedDict()
        self._closed = False
        self._released = False
        self._submitted = threading.Condition(self._lock)
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="genesis-ray-dispatch", daemon=True
        )
        self._dispatcher.start()

    @property
    def max_workers(self) -> int:
        """The slots :meth:`capacity` counts."""
        return self._max_workers

    @property
    def bundled(self) -> tuple[int, int]:
        """How many tasks this executor has sent in bundles, and in how many bundles."""
        with self._lock:
            return self._bundled

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Submit ``task`` to Ray and return its future, with its external id, at once.

        Raises:
            InvalidInput: The task is malformed (as for the local executor), or Ray refuses
                its resources (field ``resources``).
            ExecutorError: The executor is shut down, or Ray refused the task.
        """
        check_task(task)
        walltime = task.resources.walltime_s
        changes, removed = self._environment_changes() if self._forward_env else _NO_DELTA
        plain = not (
            task.kwargs
            or task.command is not None
            or task.env
            or task.cwd is not None
            or walltime is not None
            or changes
            or removed
        )
        label = task.name or task.function or shlex.join(task.command or ())
        short = self._bundle and walltime is None and self._is_short(task.function)
        work = None if plain and not short else _pickled_work(task, changes, removed)

        def entry(external_id: str) -> _InFlight:
            future = TaskFuture(external_id, canceller=self._stop)
            return _InFlight(future, label, task.command is not None, walltime, task.function)

        if short:
            assert work is not None
            self._options(_BUNDLE, task.resources, _BUNDLE_NAME)  # Ray checks the resources
            with self._lock:
                if self._closed:
                    raise ExecutorError("the Ray executor is shut down; create a new one")
                if self._held or len(self._running) >= 2 * self._max_workers:
                    held = _Held(entry(next(self._held_ids)), work, task.resources)
                    self._held[held.task.future.external_id] = held
                    return held.task.future
        name = task.name or task.function or (task.command or ("",))[0]
        remote = self._options(task.function if plain else None, task.resources, name)
        args = () if work is None or plain else (work,)
        with self._lock:
            if self._closed:
                raise ExecutorError("the Ray executor is shut down; create a new one")
            try:
                ref: ray.ObjectRef[bytes] = remote.remote(*args)
            except Exception as exc:
                raise ExecutorError(f"Ray refused the task {label}: {exc}") from exc
            sent = entry(f"ray:{ref.task_id().hex()}")
            self._start(_RayTask(ref, [sent]))
        return sent.future

    def capacity(self) -> int:
        """Free slots: ``max_workers`` minus this executor's tasks in flight (0 once shut down)."""
        with self._lock:
            if self._closed:
                return 0
            return max(0, self._max_workers - len(self._tasks) - len(self._held))

    def cancel(self, external_id: str) -> bool:
        """Stop the task ``external_id``, queued or running; False if unknown or finished."""
        future = self._future(external_id, recent=False)
        return future is not None and future.cancel()

    def attach(self, external_id: str) -> TaskFuture | None:
        """The future of a task of this executor (in flight or recently finished), else None.

        A Ray task dies with the driver that submitted it, so a task of another process (or
        of an earlier run of this one) cannot be followed: None.
        """
        return self._future(external_id, recent=True)

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
                while self._tasks or self._held:
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

    def _future(self, external_id: str, *, recent: bool) -> TaskFuture | None:
        """The future of a task in flight or held (or, with ``recent``, recently finished)."""
        with self._lock:
            held = self._held.get(external_id)
            if held is not None:
                return held.task.future
            ray_task = self._tasks.get(external_id)
            if ray_task is not None:
                return next(t.future for t in ray_task.tasks if t.future.external_id == external_id)
            return self._recent.get(external_id) if recent else None

    def _is_short(self, function: str | None) -> bool:
        """Whether ``function``'s calls have lately been short (so its tasks may be bundled)."""
        duration = None if function is None else self._durations.get(function)
        return duration is not None and duration <= _SHORT_S

    def _start(self, ray_task: _RayTask) -> None:
        """Follow ``ray_task``, just submitted (the caller holds the lock)."""
        if not self._running:
            self._submitted.notify()  # the dispatcher sleeps when nothing is in flight
        self._running[ray_task.ref] = ray_task
        for entry in ray_task.tasks:
            self._tasks[entry.future.external_id] = ray_task

    def _send_held(self) -> list[tuple[TaskFuture, BaseException]]:
        """Send held tasks in bundles while Ray has room (the caller holds the lock).

        Each bundle gets about an equal share of what is held, at most
        :data:`_BUNDLE_LIMIT`, of tasks with the same resources. Returns the futures Ray
        refused, with their error, to settle once the lock is released.
        """
        refused: list[tuple[TaskFuture, BaseException]] = []
        room = 2 * self._max_workers - len(self._running)
        if room <= 0 and self._held:
            oldest = next(iter(self._held.values())).task
            room = int(time.monotonic() - oldest.submitted > _HELD_WAIT_S)
        while self._held and room > 0:
            size = min(_BUNDLE_LIMIT, -(-len(self._held) // room))
            resources = next(iter(self._held.values())).resources
            members = []
            for held in itertools.islice(self._held.values(), size):
                if held.resources != resources:
                    break
                members.append(held)
            for held in members:
                del self._held[held.task.future.external_id]
            members = [held for held in members if not held.task.future.done()]
            if not members:
                continue
            works = pickle.dumps([h.work for h in members], protocol=pickle.HIGHEST_PROTOCOL)
            try:
                remote = self._options(_BUNDLE, resources, _BUNDLE_NAME)
                ref: ray.ObjectRef[bytes] = remote.remote(works)
            except Exception as exc:
                error = ExecutorError(f"Ray refused a bundle of {len(members)} tasks: {exc}")
                refused += [(held.task.future, error) for held in members]
                continue
            self._start(_RayTask(ref, [held.task for held in members], bundled=True))
            self._bundled = (self._bundled[0] + len(members), self._bundled[1] + 1)
            room -= 1
        return refused

    def _options(self, function: str | None, resources: Resources, name: str) -> Any:
        """The remote function with the task's resources and name (made once).

        Args:
            function: The function a call without argument calls, :data:`_BUNDLE` for the
                remote function that runs a bundle, or None for the remote function that
                takes the task as its argument.
            resources: The task's resources.
            name: The Ray task's name.

        Raises:
            InvalidInput: Ray refuses the resources (field ``resources``).
        """
        key = (function, resources.cores, resources.gpus, resources.memory_mb, name)
        remote = self._option_cache.get(key)
        if remote is not None:
            return remote
        entry = self._entries.get(function)
        if entry is None:
            if len(self._entries) >= _OPTION_CACHE_LIMIT:
                self._entries.clear()
            made = (
                _make_bundle_entry(self._shipped_env)
                if function == _BUNDLE
                else _make_entry(self._shipped_env, function)
            )
            entry = self._entries[function] = ray.remote(made)
        memory = None if resources.memory_mb is None else resources.memory_mb * 2**20
        try:
            remote = entry.options(
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
        """Canceller of the futures: stop the task (best effort; the future is cancelled).

        A held task is dropped: it never runs. A task in a bundle runs, unless its bundle
        still runs :data:`_STUCK_S` later: then the bundle is ended (see the module docstring).
        """
        with self._lock:
            held = self._held.pop(external_id, None)
            if held is not None:
                self._recent[external_id] = held.task.future
                self._trim_recent()
                self._notify_if_drained()
                ray_task = None
            else:
                ray_task = self._tasks.get(external_id)
        if ray_task is None:
            self._release_when_drained()
            return
        if ray_task.bundled:
            self._later(_STUCK_S, self._end_bundle, ray_task, external_id)
            return
        with contextlib.suppress(Exception):  # e.g. finished meanwhile, or Ray disconnected
            ray.cancel(ray_task.ref, force=not ray_task.tasks[0].is_command)
        if ray_task.tasks[0].is_command:
            self._later(_CANCEL_GRACE_S, self._kill_worker, ray_task)

    @staticmethod
    def _later(delay_s: float, action: Callable[..., None], *args: object) -> None:
        timer = threading.Timer(delay_s, action, args)
        timer.daemon = True
        timer.start()

    def _end_bundle(self, ray_task: _RayTask, external_id: str) -> None:
        """A bundle with a cancelled task still runs: end it (its other tasks are lost).

        The cancelled task's function no longer counts as short: it ran at least this long.
        """
        with self._lock:
            if ray_task.ref not in self._running:
                return
            ray_task.ended = True
        for entry in ray_task.tasks:
            if entry.future.external_id == external_id and entry.function is not None:
                self._note_duration(entry.function, _STUCK_S, at_least=True)
        self._kill_worker(ray_task)

    def _kill_worker(self, ray_task: _RayTask) -> None:
        """A cancelled command (or bundle) still runs: kill its worker (and its children)."""
        with self._lock:
            running = ray_task.ref in self._running
        if running:
            with contextlib.suppress(Exception):
                ray.cancel(ray_task.ref, force=True)

    def _dispatch(self) -> None:
        """Thread body: send held tasks, settle finished ones; end once drained and released.

        No Python callback runs on Ray's threads (a callback per task costs more than Ray's
        own work for a no-op task). The thread blocks in ``ray.wait`` on the oldest Ray tasks
        in flight (Ray starts tasks about in submission order), then collects every finished
        one among the oldest :data:`_HARVEST` and fetches their outcomes with one
        ``ray.get``. While no more Ray tasks are in flight than twice ``max_workers``, it
        wakes as soon as one of the oldest finishes, so a freed slot is known (and filled
        with held tasks) at once; with more (Ray has tasks queued, so a finished one frees
        no slot that matters) it waits until the oldest :data:`_WINDOW` have all finished,
        so that one wake-up, one lock and one fetch serve many tasks. Either way it looks
        again every :data:`_POLL_S` seconds, taking the next slice of tasks each time, so a
        task that overtakes the oldest ones is settled at most a few polls after it finished.
        """
        offset = 0
        while True:
            with self._lock:
                while not self._running and not self._held:
                    if self._released:
                        return
                    self._submitted.wait()
                refused = self._send_held()
                busy = len(self._running) > 2 * self._max_workers
                oldest = list(itertools.islice(self._running.values(), _WINDOW))
            for future, error in refused:
                self._settle_one(future, error)
            if not oldest:
                continue
            if len(oldest) == 1 and not self._client:  # one call, not a wait and a fetch
                try:
                    value: object = ray.get(oldest[0].ref, timeout=_POLL_S)
                except ray.exceptions.GetTimeoutError:
                    continue
                except Exception as exc:  # the task's error, or Ray's
                    value = exc
                self._settle(oldest, [value])
                continue
            window = [ray_task.ref for ray_task in oldest]
            try:
                ready, _ = ray.wait(window, num_returns=len(window) if busy else 1, timeout=_POLL_S)
                if busy and len(ready) == len(window):  # the usual case under load
                    self._settle(oldest, _fetch(window))
                    continue
                with self._lock:
                    start = 0 if ready or offset >= len(self._running) else offset
                    candidates = dict(
                        itertools.islice(self._running.items(), start, start + _HARVEST)
                    )
                offset = 0 if ready else start + _HARVEST
                finished, _ = ray.wait(list(candidates), num_returns=len(candidates), timeout=0)
            except Exception as exc:  # e.g. Ray was shut down under the executor
                with self._lock:
                    lost = list(self._running.values())
                self._settle(
                    lost, [ExecutorError(f"lost the connection to Ray: {exc}")] * len(lost)
                )
                continue
            if finished:
                self._settle([candidates[ref] for ref in finished], _fetch(finished))

    def _settle(self, ray_tasks: list[_RayTask], values: list[object]) -> None:
        """Settle the futures of finished Ray tasks from what Ray returned for them."""
        settled = [
            (entry, *self._interpret(ray_task, entry, outcome))
            for ray_task, value in zip(ray_tasks, values, strict=True)
            for entry, outcome in zip(ray_task.tasks, _outcomes(ray_task, value), strict=True)
        ]
        with self._lock:
            for ray_task in ray_tasks:
                del self._running[ray_task.ref]
                for entry in ray_task.tasks:
                    external_id = entry.future.external_id
                    del self._tasks[external_id]
                    self._recent[external_id] = entry.future
            self._trim_recent()
            refused = self._send_held()  # the freed room goes to held tasks first
            self._notify_if_drained()
        # After the slots are free, so capacity() is exact once result() returns.
        for entry, result, error in settled:
            entry.future.settle(result=result, error=error)
        for future, error in refused:
            self._settle_one(future, error)
        self._release_when_drained()

    def _notify_if_drained(self) -> None:
        """Wake ``shutdown(wait=True)`` once no task is in flight or held (lock held)."""
        if not self._tasks and not self._held:
            self._drained.notify_all()

    def _trim_recent(self) -> None:
        """Forget the oldest finished tasks beyond :data:`_RECENT_LIMIT` (lock held)."""
        while len(self._recent) > _RECENT_LIMIT:
            self._recent.popitem(last=False)

    def _settle_one(self, future: TaskFuture, error: BaseException) -> None:
        """Fail the future of a task that never reached Ray."""
        with self._lock:
            self._recent[future.external_id] = future
            self._trim_recent()
            self._notify_if_drained()
        future.settle(error=error)
        self._release_when_drained()

    def _release_when_drained(self) -> None:
        """Once shut down with nothing in flight: let go of Ray, stop the dispatcher."""
        with self._lock:
            if not self._closed or self._tasks or self._held or self._released:
                return
            self._released = True
            self._submitted.notify_all()
        _Connection.release()

    def _interpret(
        self, ray_task: _RayTask, entry: _InFlight, value: object
    ) -> tuple[TaskResult | None, BaseException | None]:
        """The task's result, or the error its future fails with.

        Args:
            ray_task: The Ray task that ran it.
            entry: The task.
            value: What Ray delivered for it: the worker's outcome as a tuple, or an error.
        """
        external_id = entry.future.external_id
        try:
            if isinstance(value, BaseException):
                raise value
            outcome = _Outcome(*value)  # type: ignore[misc]
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.TaskCancelledError) as exc:
            if ray_task.ended:
                return None, TransientFailure(
                    f"{entry.label} ({external_id}) was lost: it was in a bundle that was "
                    f"ended, {_STUCK_S} s after a task of it was cancelled; a retry may succeed",
                    external_id=external_id,
                )
            if isinstance(exc, ray.exceptions.TaskCancelledError):
                return None, ExecutorError(
                    f"the Ray task of {entry.label} was cancelled ({external_id})",
                    external_id=external_id,
                )
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
        except Exception as exc:
            return None, ExecutorError(
                f"Ray failed to run {entry.label} ({type(exc).__name__}: {exc}); "
                f"external id {external_id}",
                external_id=external_id,
            )
        if entry.function is not None:
            self._note_duration(entry.function, outcome.wall_seconds)
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

    def _note_duration(self, function: str, seconds: float, *, at_least: bool = False) -> None:
        """Fold a call's duration into ``function``'s smoothed one.

        With ``at_least``, the call was stopped after ``seconds``: the smoothed duration
        becomes at least that.
        """
        before = self._durations.get(function)
        if before is None and len(self._durations) >= _OPTION_CACHE_LIMIT:
            self._durations.clear()
        if before is None or at_least:
            self._durations[function] = max(seconds, before or 0.0)
        else:
            self._durations[function] = before + _DURATION_WEIGHT * (seconds - before)


_BUNDLE = "<bundle>"
"""The key of the remote function that runs bundles (no function reference looks so)."""
_BUNDLE_NAME = "genesis-bundle"
"""The Ray task name of bundles."""


def _pickled_work(task: TaskSpec, changes: dict[str, str], removed: tuple[str, ...]) -> bytes:
    """``task`` as the worker receives it: a :class:`_Work` as a tuple, pickled.

    Raises:
        InvalidInput: Something in it cannot be pickled (field ``kwargs``).
    """
    fields = (  # a tuple: what pickle makes and reads fastest
        task.function,
        dict(task.kwargs),
        None if task.command is None else tuple(task.command),
        task.cwd,
        task.resources.walltime_s,
        dict(task.env),
        changes,
        removed,
    )
    try:
        return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise InvalidInput(
            "kwargs", f"cannot be sent to Ray ({exc})", "pass plain JSON values"
        ) from exc


def _outcomes(ray_task: _RayTask, value: object) -> list[object]:
    """What each task of ``ray_task`` delivered: its outcome tuple, or the error for all."""
    if isinstance(value, BaseException):
        return [value] * len(ray_task.tasks)
    try:
        assert isinstance(value, bytes)  # what the remote functions return
        loaded = pickle.loads(value)
    except Exception as exc:
        return [exc] * len(ray_task.tasks)
    return list(loaded) if ray_task.bundled else [loaded]


def _fetch(refs: list[ray.ObjectRef[bytes]]) -> list[object]:
    """What Ray holds for finished tasks: each one's bytes, or the error ``ray.get`` raised."""
    try:
        return list(ray.get(refs))
    except Exception:  # one failed: fetch them one by one
        values: list[object] = []
        for ref in refs:
            try:
                values.append(ray.get(ref))
            except Exception as exc:
                values.append(exc)
        return values


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


_CLIENT_ATTEMPTS = 3
"""Tries of a ``ray://`` connection whose server fails to start its session."""


def _connect(address: str) -> None:
    """``ray.init`` to a running cluster.

    A Ray Client server starts a process per session; when that process dies at start-up
    (seen on loaded machines: ``Initialization failure from server``), the server is
    asked again, up to :data:`_CLIENT_ATTEMPTS` times.
    """
    for attempt in range(1, _CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except ConnectionAbortedError:
            if not address.startswith("ray://") or attempt == _CLIENT_ATTEMPTS:
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()
            time.sleep(1.0 * attempt)
