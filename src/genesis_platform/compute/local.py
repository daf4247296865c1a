"""The local executor: tasks run on this machine, callables in worker processes.

:class:`LocalExecutor` runs at most ``max_workers`` tasks at once. A Python callable (given by
reference, ``"package.module:function"``) runs in a
:class:`~concurrent.futures.ProcessPoolExecutor` started with the ``forkserver`` method (not
``fork``: the platform's process has threads, and forking a threaded process can deadlock).
A command runs as a subprocess in its own session, waited on by a thread.

Walltime (``resources.walltime_s``) is enforced as follows:

- commands: the whole process group is killed (SIGKILL) at the limit;
- callables: the worker interrupts the function with SIGALRM at the limit, which stops
  Python code and sleeps. Code stuck inside a C extension cannot be interrupted: the task's
  future still fails ``walltime_s + 2`` seconds after it started, but the worker process
  stays busy until the function returns (and :meth:`LocalExecutor.shutdown` with ``wait``
  waits for it).

Cancel (:meth:`LocalExecutor.cancel` or the future's ``cancel()``) works queued or
running: a queued task never starts; a running command's process group is killed (SIGKILL);
a running callable is interrupted in its worker by SIGUSR1 (like the walltime, this stops
Python code, not code stuck inside a C extension). External ids are
``local:<platform pid>:<uuid>``: a local task cannot outlive the process that started it, so
:meth:`LocalExecutor.attach` knows only this executor's own tasks.

Both kinds of task see the environment of the submitting process at :meth:`submit` time,
updated with ``task.env``; ``resources`` other than ``walltime_s`` are not enforced. Logs
are a command's stdout and stderr, interleaved, or what a callable printed through
``sys.stdout``/``sys.stderr`` (output written by C code straight to file descriptors 1 and 2
is not captured); both keep their last 64,000 characters.

Limits: POSIX only (``forkserver``, SIGALRM, ``os.wait4``). A command runs in its own
session so that its whole process tree can be killed at the walltime; the flip side is that
killing the platform's process group does not reach it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from genesis_platform.compute.protocols import SiteLimits, TaskFuture, TaskResult, TaskSpec
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure

__all__ = ["LocalExecutor", "check_task", "resolve_function", "usable_cpus"]

_REFERENCE_FIX = "write it as package.module:function, importable on the site"
_LOG_LIMIT_CHARS = 64_000
"""Captured logs keep this many trailing characters."""
_FAILURE_TAIL_CHARS = 4_000
"""A failed command's error keeps this many trailing characters of its log."""
_WALLTIME_GRACE_S = 2.0
"""How long after the walltime the parent gives up on an uninterruptible callable, s."""


def resolve_function(reference: str) -> Callable[..., Any]:
    """Import the callable named by ``"package.module:function"`` (cached per reference).

    The part after the colon may be dotted (``"pkg.mod:Class.method"``).

    Raises:
        InvalidInput: (field ``function``) the reference is malformed, the module cannot be
            imported, the attribute is missing, or it is not callable.
    """
    if not isinstance(reference, str):
        raise InvalidInput("function", f"{reference!r} is not a reference", _REFERENCE_FIX)
    return _resolve(reference)


@functools.lru_cache(maxsize=1024)
def _resolve(reference: str) -> Callable[..., Any]:
    module_name, attribute = _split_reference(reference)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        problem = f"cannot import module '{module_name}' ({type(exc).__name__}: {exc})"
        raise InvalidInput("function", problem, _REFERENCE_FIX) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            problem = f"module '{module_name}' has no attribute '{attribute}'"
            raise InvalidInput("function", problem, _REFERENCE_FIX) from None
    if not callable(target):
        raise InvalidInput("function", f"'{reference}' is not callable", _REFERENCE_FIX)
    return target  # type: ignore[no-any-return]


def _split_reference(reference: object) -> tuple[str, str]:
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise InvalidInput("function", f"{reference!r} is not a reference", _REFERENCE_FIX)
    module_name, attribute = reference.split(":")
    dotted = (module_name, attribute)
    if not all(name and all(p.isidentifier() for p in name.split(".")) for name in dotted):
        raise InvalidInput("function", f"{reference!r} is not a reference", _REFERENCE_FIX)
    return module_name, attribute


class LocalExecutor:
    """Runs tasks on this machine: callables in worker processes, commands as subprocesses.

    At most ``max_workers`` tasks run at once; the others wait in submission order. A
    callable goes straight to the process pool and its future resolves from the pool's own
    callback (no thread per task); a command is waited on by a thread of its own.

    Args:
        max_workers: Tasks run at once (default: the CPUs this process may use).

    Raises:
        InvalidInput: ``max_workers`` is not a positive integer.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        workers = usable_cpus() if max_workers is None else max_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInput("max_workers", f"must be a positive integer, got {workers!r}")
        self._max_workers = workers
        self._context = multiprocessing.get_context("forkserver")
        self._processes: ProcessPoolExecutor | None = None  # started by the first callable
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="genesis-local")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._live: dict[str, _Live] = {}  # waiting or running
        self._waiting: deque[_Live] = deque()
        self._running = 0
        self._cancel_dir = Path(tempfile.mkdtemp(prefix="genesis-local-cancel-"))
        self._environ = _EnvironmentSnapshot()
        self._closed = False  # no new tasks

    @property
    def max_workers(self) -> int:
        """How many tasks run at once."""
        return self._max_workers

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Start ``task`` (or queue it until a slot frees) and return its future at once.

        Raises:
            InvalidInput: The task is malformed: not exactly one of function and command, a
                bad function reference (field ``function``), kwargs that are not
                JSON-serializable (field ``kwargs``), or an empty command (``command``).
            ExecutorError: The executor is shut down.
        """
        check_task(task)
        future = TaskFuture(f"local:{os.getpid()}:{uuid.uuid4().hex}", self._stop)
        base = self._environ.get()
        live = _Live(future, task, {**base, **task.env} if task.env else base)
        with self._lock:
            if self._closed:
                raise ExecutorError("the local executor is shut down; create a new one")
            self._live[future.external_id] = live
            self._waiting.append(live)
        self._admit()
        return future

    def cancel(self, external_id: str) -> bool:
        """Stop task ``external_id``, queued or running. False if unknown or finished."""
        with self._lock:
            live = self._live.get(external_id)
        return live is not None and live.future.cancel()

    def attach(self, external_id: str) -> TaskFuture | None:
        """The future of this executor's task ``external_id``; None for any other task."""
        with self._lock:
            live = self._live.get(external_id)
        return None if live is None else live.future

    def limits(self) -> SiteLimits:
        """One node, this machine's CPUs and memory, no GPUs, no walltime limit."""
        return _machine_limits()

    def capacity(self) -> int:
        """Free slots: ``max_workers`` minus tasks waiting or running."""
        with self._lock:
            return 0 if self._closed else max(0, self._max_workers - len(self._live))

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks.

        Args:
            wait: Block until waiting and running tasks finish. Without it, waiting tasks
                fail with :class:`~genesis_platform.errors.ExecutorError` and running ones
                finish in the background.
        """
        with self._lock:
            self._closed = True
            dropped: list[_Live] = []
            if wait:
                while self._live:
                    self._idle.wait()
            else:
                dropped, self._waiting = list(self._waiting), deque()
            processes = self._processes
        for live in dropped:
            self._end(live, error=ExecutorError("the executor shut down before it started"))
        self._threads.shutdown(wait=wait)
        if processes is not None:
            processes.shutdown(wait=wait)
        if wait:
            shutil.rmtree(self._cancel_dir, ignore_errors=True)

    def terminate(self) -> None:
        """Stop at once: drop waiting tasks and kill the running ones.

        Their futures fail with :class:`~genesis_platform.errors.ExecutorError`.
        """
        with self._lock:
            self._closed = True
            live = list(self._live.values())
            self._waiting.clear()
            processes = self._processes
        for each in live:
            each.future.settle(error=ExecutorError("the local executor was terminated"))
            self._stop(each.future.external_id)
            self._end(each)
        self._threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            # ProcessPoolExecutor gains terminate_workers() in Python 3.14; until then its
            # process table is the only handle on the workers.
            for process in list(getattr(processes, "_processes", {}).values()):
                process.terminate()
            processes.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self._max_workers})"

    # -- admission: at most max_workers running, the rest waiting in order ---------------------

    def _admit(self) -> None:
        """Hand waiting tasks to the pools while there is room.

        Up to twice ``max_workers`` tasks are handed over at once, so a worker finds its
        next callable already queued when it finishes one; the pools themselves run at most
        ``max_workers`` at a time.
        """
        while True:
            with self._lock:
                if self._running >= 2 * self._max_workers or not self._waiting:
                    return
                live = self._waiting.popleft()
                if live.future.done():  # cancelled while waiting
                    self._live.pop(live.future.external_id, None)
                    self._idle.notify_all()
                    continue
                self._running += 1
                live.running = True
            try:
                if live.task.function is not None:
                    self._start_callable(live)
                else:
                    self._threads.submit(self._run_command, live)
            except BaseException as exc:
                self._end(live, error=exc)

    def _end(
        self, live: _Live, result: TaskResult | None = None, error: BaseException | None = None
    ) -> None:
        """Free the task's slot, then resolve its future, then start the next task."""
        with self._lock:
            if self._live.pop(live.future.external_id, None) is None:
                return  # ended already (e.g. walltime given up, then the worker returned)
            if live.running:
                self._running -= 1
            self._idle.notify_all()
        if live.marked:
            (self._cancel_dir / _marker(live.future.external_id)).unlink(missing_ok=True)
        if error is not None or result is not None:
            live.future.settle(result, error)
        if not self._closed or self._waiting:
            self._admit()

    def _stop(self, external_id: str) -> None:
        """Stop the work of task ``external_id`` wherever it is (its future is done)."""
        with self._lock:
            live = self._live.get(external_id)
            processes = self._processes
        if live is None:
            return
        if not live.running:
            self._end(live)  # never started: just free its place
            return
        if live.watchdog is not None:
            live.watchdog.kill()
        if live.pending is not None and processes is not None:
            live.marked = True
            (self._cancel_dir / _marker(external_id)).touch()
            for process in list(getattr(processes, "_processes", {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGUSR1)

    # -- callables ----------------------------------------------------------------------------

    def _start_callable(self, live: _Live) -> None:
        task = live.task
        assert task.function is not None
        walltime = task.resources.walltime_s
        key = _marker(live.future.external_id)
        call = _Call(task.function, dict(task.kwargs), live.env, task.cwd, walltime, key)
        pool = self._process_pool()
        try:
            live.pending = pool.submit(_call_in_worker, call)
        except BrokenProcessPool as exc:
            self._replace_broken_pool(pool)
            raise TransientFailure(f"the local executor's pool was broken: {exc}") from exc
        except RuntimeError as exc:
            raise ExecutorError(f"the local executor cannot start the task: {exc}") from exc
        live.future.notify_started()
        if walltime is not None:
            timer = threading.Timer(walltime + _WALLTIME_GRACE_S, self._give_up, args=(live,))
            timer.daemon = True
            timer.start()
            live.timer = timer
        live.pending.add_done_callback(lambda done: self._callable_done(live, pool, done))

    def _callable_done(
        self, live: _Live, pool: ProcessPoolExecutor, done: Future[_Outcome]
    ) -> None:
        """Pool callback: resolve the task from its worker's outcome."""
        if live.timer is not None:
            live.timer.cancel()
        function = live.task.function
        try:
            outcome = done.result()
        except CancelledError:
            self._end(live, error=ExecutorError("the task was cancelled before it started"))
        except BrokenProcessPool as exc:
            self._replace_broken_pool(pool)
            error = TransientFailure(
                "a worker process died abruptly (crash, kill or out of memory) while running "
                f"{function}; the pool was restarted"
            )
            error.__cause__ = exc
            self._end(live, error=error)
        except BaseException as exc:
            self._end(live, error=ExecutorError(f"the local executor failed: {exc}"))
        else:
            try:
                self._end(live, outcome.result(live.future.external_id))
            except TaskFailed as exc:
                self._end(live, error=exc)

    def _give_up(self, live: _Live) -> None:
        """Walltime plus grace passed and the worker did not return: fail the task now."""
        walltime = live.task.resources.walltime_s
        live.future.settle(
            error=TaskFailed(
                f"walltime exceeded: {live.task.function} ran longer than {walltime} s and "
                "could not be interrupted (its worker stays busy until it returns)"
            )
        )

    def _process_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._processes is None:
                self._processes = self._new_pool()
            return self._processes

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._max_workers,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(os.getpid(), str(self._cancel_dir)),
        )

    def _replace_broken_pool(self, broken: ProcessPoolExecutor) -> None:
        """Start a fresh pool in place of ``broken`` (once, however many tasks saw it break)."""
        with self._lock:
            if self._processes is not broken:
                return
            self._processes = self._new_pool()
        broken.shutdown(wait=False)

    # -- commands -----------------------------------------------------------------------------

    def _run_command(self, live: _Live) -> None:
        """Thread body: run one command to completion and resolve its task."""
        assert live.task.command is not None  # checked by check_task
        if live.future.cancelled():
            self._end(live)
            return
        live.future.notify_started()
        try:
            result = _run_command(tuple(live.task.command), live.task, live.env, live)
        except BaseException as exc:
            self._end(live, error=exc)
        else:
            self._end(live, result)


@dataclass
class _Live:
    """A task of this executor that has not finished: its future and its handles."""

    future: TaskFuture
    task: TaskSpec
    env: dict[str, str]
    running: bool = False  # handed to a pool
    marked: bool = False  # a cancel marker file exists for it
    pending: Future[_Outcome] | None = None  # the process pool's future of a callable
    timer: threading.Timer | None = None  # gives up on a callable past its walltime
    watchdog: _Watchdog | None = None  # a running command's killer


def _marker(external_id: str) -> str:
    """The name of the file that marks task ``external_id`` as cancelled (its uuid)."""
    return external_id.rsplit(":", 1)[-1]


_CANCEL_DIR = ""
"""In a worker process: the folder of cancel markers of the executor that owns it."""
_CURRENT_KEY = ""
"""In a worker process: the marker name of the task running now ("" when idle)."""


def _init_worker(parent_pid: int, cancel_dir: str) -> None:
    """Worker initializer: exit with the platform; let SIGUSR1 cancel the running task."""
    global _CANCEL_DIR
    _CANCEL_DIR = cancel_dir
    signal.signal(signal.SIGUSR1, _cancel_if_marked)
    _exit_with_parent(parent_pid)


def _cancel_if_marked(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1 handler: interrupt the running task if its cancel marker exists."""
    key = _CURRENT_KEY
    if key and os.path.exists(os.path.join(_CANCEL_DIR, key)):
        raise _Cancelled


def _exit_with_parent(parent_pid: int) -> None:
    """Exit this worker when the process that made the pool is gone.

    Workers are children of the forkserver, not of the platform, so nothing else stops them
    from running on (and running experiments) after the platform is killed.
    """

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(70)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(70)

    threading.Thread(target=watch, name="genesis-parent-watch", daemon=True).start()


@functools.cache
def _machine_limits() -> SiteLimits:
    """This machine as a site: one node, its CPUs and memory, no GPUs (read once)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return SiteLimits(
        nodes=1, cores_per_node=os.cpu_count() or 1, gpus_per_node=0, memory_mb_per_node=memory
    )


def usable_cpus() -> int:
    """The CPUs this process may use (its affinity where the OS tells, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_task(task: TaskSpec) -> None:
    """Refuse a malformed task before it is stored or submitted.

    Raises:
        InvalidInput: not exactly one of function and command (field ``task``), a bad
            function reference (``function``), kwargs that are not JSON (``kwargs``), or a
            command that is not a non-empty list of strings (``command``).
    """
    if (task.function is None) == (task.command is None):
        raise InvalidInput(
            "task", "give exactly one of function and command", "e.g. function: mypkg.sim:run"
        )
    if task.function is not None:
        resolve_function(task.function)
        try:
            json.dumps(dict(task.kwargs))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                "kwargs", f"not JSON-serializable: {exc}", "pass numbers, strings, lists, dicts"
            ) from exc
    elif not task.command or not all(isinstance(arg, str) for arg in task.command):
        raise InvalidInput("command", "must be a non-empty list of strings", "e.g. [echo, hi]")


# -- callables, in the worker process ---------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """What a worker process needs to run one callable."""

    function: str
    kwargs: dict[str, Any]
    env: dict[str, str]
    cwd: str | None
    walltime_s: float | None
    key: str = ""


@dataclass(frozen=True)
class _Outcome:
    """What a worker process sends back: the value or the error, logs and usage."""

    output: Any
    error: str | None
    traceback: str
    logs: str
    wall_seconds: float
    core_seconds: float
    pid: int

    def result(self, external_id: str) -> TaskResult:
        """The task's result, or raise :class:`TaskFailed` with the remote traceback."""
        usage = {"wall_seconds": self.wall_seconds, "core_seconds": self.core_seconds}
        if self.error is not None:
            raise TaskFailed(self.error, traceback=self.traceback, logs=self.logs, usage=usage)
        return TaskResult(self.output, self.logs, usage, external_id)


class _WalltimeExceeded(BaseException):
    """Raised in the worker by SIGALRM; a BaseException so ``except Exception`` lets it by."""


class _Cancelled(BaseException):
    """Raised in the worker by SIGUSR1 when its task was cancelled."""


def _call_in_worker(call: _Call) -> _Outcome:
    """Run one callable in this (worker) process and report what happened."""
    global _CURRENT_KEY
    start_wall = start_cpu = 0.0
    logs = io.StringIO()
    output: Any = None
    error: str | None = None
    trace = ""
    # Plain assignments, not redirect_stdout and context managers: this runs for every task,
    # and a no-op task's whole cost is what the worker does around it.
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = logs
    try:
        _set_environment(call.env)
        saved_cwd = None
        if call.cwd is not None:
            saved_cwd = os.getcwd()
            os.chdir(call.cwd)
        try:
            function = resolve_function(call.function)
            # Usage counts the call, not the first import of its module.
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            _CURRENT_KEY = call.key
            try:
                if call.key and os.path.exists(os.path.join(_CANCEL_DIR, call.key)):
                    raise _Cancelled  # cancelled before this worker picked it up
                if call.walltime_s is None:
                    output = function(**call.kwargs)
                else:
                    with _alarm(call.walltime_s):
                        output = function(**call.kwargs)
            finally:
                _CURRENT_KEY = ""
            output = _jsonable(output)
        finally:
            if saved_cwd is not None:
                os.chdir(saved_cwd)
    except _Cancelled:
        error = f"cancelled: {call.function} was stopped"
        trace = traceback.format_exc()
    except _WalltimeExceeded:
        error = f"walltime exceeded: {call.function} ran longer than {call.walltime_s} s"
        trace = traceback.format_exc()
    except BaseException as exc:  # the task's own failure, reported to the parent
        error = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
    finally:
        sys.stdout, sys.stderr = saved
    end_wall, end_cpu = time.perf_counter(), time.process_time()
    return _Outcome(
        output=output,
        error=error,
        traceback=trace,
        logs=logs.getvalue()[-_LOG_LIMIT_CHARS:],
        wall_seconds=end_wall - start_wall if start_wall else 0.0,
        core_seconds=end_cpu - start_cpu if start_wall else 0.0,
        pid=os.getpid(),
    )


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_WalltimeExceeded` in this thread after ``seconds`` (main thread only)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _WalltimeExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_APPLIED: tuple[dict[str, str], dict[Any, Any]] | None = None
"""In a worker: the environment the last task asked for, and the raw one it left."""


def _set_environment(env: Mapping[str, str]) -> None:
    """Give this process the submitter's environment.

    Every task brings its whole environment, so it is not restored afterwards; it is only
    set again when the next task asks for another one or a task changed it.
    """
    global _APPLIED
    raw = _raw_environ()
    if _APPLIED is None or env != _APPLIED[0] or raw is None or raw != _APPLIED[1]:
        _replace_environ(env)
        raw = _raw_environ()
        _APPLIED = None if raw is None else (dict(env), dict(raw))


def _raw_environ() -> dict[Any, Any] | None:
    """CPython's own (encoded) copy of the environment, compared without decoding it."""
    raw = getattr(os.environ, "_data", None)
    return raw if isinstance(raw, dict) else None


class _EnvironmentSnapshot:
    """This process's environment as a dict, rebuilt only when it has changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: dict[Any, Any] | None = None
        self._env: dict[str, str] = {}

    def get(self) -> dict[str, str]:
        """The environment now (do not modify the dict returned)."""
        raw = _raw_environ()
        with self._lock:
            if raw is None or raw != self._raw:
                self._env = dict(os.environ)
                self._raw = None if raw is None else dict(raw)
            return self._env


def _replace_environ(env: Mapping[str, str]) -> None:
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars and arrays become numbers and lists).

    Raises:
        TypeError: Part of ``value`` has no JSON form.
    """
    if value is None or type(value) in _JSON_SCALARS:
        return value  # what the round trip would give back
    return json.loads(json.dumps(value, default=_to_builtin))


_JSON_SCALARS = (str, int, float, bool)


def _to_builtin(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(
        f"the return value must be JSON-serializable; {type(value).__name__} is not "
        "(return numbers, strings, lists and dicts)"
    )


# -- commands ---------------------------------------------------------------------------------


def _run_command(
    argv: tuple[str, ...], task: TaskSpec, env: dict[str, str], live: _Live | None = None
) -> TaskResult:
    """Run ``argv`` to completion in its own session; raise TaskFailed unless it exits 0."""
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=task.cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise TaskFailed(f"cannot start {shlex.join(argv)}: {exc}") from exc
    with process:
        watchdog = _Watchdog(process.pid, task.resources.walltime_s)
        if live is not None:
            live.watchdog = watchdog
            if live.future.cancelled():  # cancelled while it was starting
                watchdog.kill()
        assert process.stdout is not None  # stdout=PIPE
        try:
            logs = _read_tail(process.stdout, _LOG_LIMIT_CHARS)
        finally:
            code, core_seconds = watchdog.reap()
            process.returncode = code  # reaped by wait4: tell Popen not to wait again
    usage = {"wall_seconds": time.perf_counter() - start, "core_seconds": core_seconds}
    if watchdog.fired:
        message = f"walltime exceeded: {shlex.join(argv)} was killed after {watchdog.limit} s"
        raise TaskFailed(message, traceback=logs[-_FAILURE_TAIL_CHARS:], logs=logs, usage=usage)
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        message = f"{shlex.join(argv)} {how}"
        raise TaskFailed(message, traceback=logs[-_FAILURE_TAIL_CHARS:], logs=logs, usage=usage)
    external_id = (
        f"local:{process.pid}:{uuid.uuid4().hex}" if live is None else (live.future.external_id)
    )
    return TaskResult(code, logs, usage, external_id)


class _Watchdog:
    """Kills a process group at its walltime; reaps the leader and measures its CPU time."""

    def __init__(self, pid: int, limit: float | None) -> None:
        self.pid = pid
        self.limit = limit
        self.fired = False
        self._lock = threading.Lock()
        self._reaped = False
        self._timer: threading.Timer | None = None
        if limit is not None:
            self._timer = threading.Timer(limit, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if not self._reaped:
                self.fired = True
        self.kill()

    def kill(self) -> None:
        """Kill the process group now, unless the leader was already reaped."""
        with self._lock:
            if self._reaped:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def reap(self) -> tuple[int, float]:
        """Wait for the process; its exit code (negative: signal) and CPU seconds."""
        # Wait without reaping first, so the pid (and group id) cannot be reused while the
        # timer might still signal it.
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._reaped = True
        if self._timer is not None:
            self._timer.cancel()
        _, status, usage = os.wait4(self.pid, 0)
        return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def _read_tail(stream: IO[bytes], limit: int) -> str:
    """Read ``stream`` to its end and return its last ``limit`` characters (UTF-8)."""
    tail = bytearray()
    while chunk := stream.read(65_536):
        tail += chunk
        if len(tail) > 4 * limit:
            del tail[: -4 * limit]
    return tail.decode("utf-8", errors="replace")[-limit:]
