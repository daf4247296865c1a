"""Pilot jobs: many small tasks through a few batch jobs that each host a worker pool.

A batch system starts jobs on its scheduler ticks (1-3 s), so one job per task
(:class:`~genesis_platform.compute.psij.PsijExecutor`) cannot run small tasks fast. Like
Parsl's HighThroughputExecutor and Globus Compute endpoints, :class:`PilotExecutor` instead
submits *pilot jobs*: each runs ``python -m genesis_platform.compute.pilot`` on a node, which
starts a pool of workers there and pulls tasks from the submitting process until it is told
to leave or its walltime nears.

How the parts talk::

    submitting process                           compute node (one pilot job)
    PilotExecutor ── interchange (TCP) ────────── pilot ── LocalExecutor ── N workers
        │                                            (forkserver pool; commands as
        └── PsijExecutor: the pilot jobs              subprocesses in their own session)

- **Interchange**: a :class:`multiprocessing.connection.Listener` in the submitting process,
  bound to all interfaces on a free port and announced to pilots as ``pilot_address``
  (default: this host's name). Peers authenticate with a random key (HMAC challenge, before
  any message is unpickled) that lives in ``work_dir/pilots/<executor>.key`` (mode 0600), so
  the work dir must be shared with the nodes, as for PsijExecutor. A peer that connects and
  never answers the challenge holds up other pilots' registration: the port is meant for the
  cluster's own network.
- **Pilot jobs** are command tasks of an inner :class:`PsijExecutor` (the same submission,
  job names, status polling and failure mapping as one job per task; its ``worker`` runs the
  pilot, with the job's walltime ``pilot_walltime_s``). A pilot with ``pilot_workers`` set
  asks for that many cores; without it, it asks for a whole node (``--exclusive``) and runs
  one worker per CPU the job may use (:func:`os.sched_getaffinity`).
- **In the pilot**, tasks run in a :class:`~genesis_platform.compute.local.LocalExecutor`,
  so they behave exactly as local tasks do: the walltime (SIGALRM for callables, the process
  group killed for commands), cancel of a running task (SIGUSR1 and a marker; SIGKILL of a
  command's group), logs, usage, a crashed worker (:class:`TransientFailure`, the pool is
  restarted). Each task sees the submitter's environment at :meth:`PilotExecutor.submit`
  time, updated with ``task.env``, on top of the node's (``SLURM_*`` variables stay); the
  environment is sent to a pilot once per change, not with every task.

Throughput: a pilot holds up to twice its workers' tasks (those beyond its workers wait in
its pool's queue, so a worker finds its next task at hand), and both sides send in batches:
a task list per dispatch, and started/finished reports gathered while the previous message
was being sent. Prefetching more would starve a second pilot of tasks the first one holds.

Scaling (a thread of the executor, every 0.2 s): between ``pilot_min`` and ``pilot_max``
pilot jobs exist. One more is submitted when tasks wait that no pilot can take and no pilot
is still starting (a pilot queued in the batch system counts: a slow queue does not start a
second one). A pilot whose tasks have all finished leaves when it has been idle for
``pilot_idle_timeout_s`` and more than ``pilot_min`` pilots exist. A pilot stops taking
tasks ``min(60 s, pilot_walltime_s / 5)`` before its walltime (it hands back any task that
arrives after that, lets its running tasks finish, then leaves); a task whose
``walltime_s`` does not fit in what is left of a pilot's time goes to another or a new
pilot, and one whose walltime exceeds what any pilot can give is refused at submit. A
draining pilot still counts toward ``pilot_max`` until it leaves. If three pilot jobs in a
row end without ever connecting (no such ``python``, ``genesis_platform`` missing, the node
cannot reach ``pilot_address``), the waiting tasks fail with :class:`ExecutorError` carrying
the last pilot's log; the next submit tries again.

Failures: a pilot that is lost (its job cancelled with ``scancel``, killed, its node failed,
its connection dropped, or no heartbeat for 10 s) fails its started tasks with
:class:`~genesis_platform.errors.TransientFailure` (the task service retries them per the
site's policy) and puts those it had not started back in the queue; if tasks still wait, a
new pilot is started. A task's own failure, including its walltime, is
:class:`~genesis_platform.errors.TaskFailed`. A pilot that loses its interchange (the
submitting process died or froze) kills its tasks and exits at once, so a task resubmitted
by a restarted platform never runs twice. A pilot job killed at its batch time limit leaves
its untimed tasks failed with ``TransientFailure``.

Cancel: a task still in the queue is dropped; one a pilot holds is cancelled there (its
future is cancelled at once; the pilot's slot frees when the worker has stopped it).

External ids are ``pilot:<work dir name>:<uuid>`` (the work dir name is the site name by
default). A task lives only in the interchange of the process that submitted it, so
:meth:`PilotExecutor.attach` follows this executor's own tasks and returns None for any
other: when that process died, its pilots killed its tasks, and the task service resubmits
them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psij

from genesis_platform.compute.local import LocalExecutor, _EnvironmentSnapshot, usable_cpus
from genesis_platform.compute.local import check_task as _check_task
from genesis_platform.compute.protocols import (
    Resources,
    SiteLimits,
    TaskFuture,
    TaskResult,
    TaskSpec,
)
from genesis_platform.compute.psij import PsijExecutor
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure

__all__ = ["PilotExecutor", "PilotInfo", "drain_margin", "main"]

PROTOCOL_VERSION = 1
"""Version of the messages between interchange and pilots."""
_TICK_S = 0.2
"""The interchange's scaling and heartbeat checks run this often, s."""
_HEARTBEAT_S = 2.0
"""Each side sends a heartbeat after this long without sending anything else, s."""
_HEARTBEAT_MISSES = 5
"""A peer silent for this many heartbeat periods is lost."""
_HELLO_TIMEOUT_S = 10.0
"""A connected peer must introduce itself within this time, s."""
_CONNECT_TIMEOUT_S = 60.0
"""A pilot tries this long to reach its interchange before giving up, s."""
_PREFETCH_FACTOR = 2
"""A pilot holds up to this many tasks per worker."""
_START_FAILURES = 3
"""Pilot jobs in a row that end without connecting before waiting tasks are failed."""
_BYE_WAIT_S = 15.0
"""How long shutdown(wait=True) waits for pilots to leave before cancelling their jobs, s."""


def drain_margin(walltime_s: float) -> float:
    """How long before its walltime a pilot stops taking tasks: min(60 s, walltime / 5), s."""
    return min(60.0, walltime_s / 5)


@dataclass(frozen=True)
class PilotInfo:
    """One pilot job, as :meth:`PilotExecutor.pilots` reports it.

    Attributes:
        job_id: The batch job's external id (``slurm:<job id>``).
        state: ``starting`` (queued or starting up), ``active``, ``draining`` (its
            walltime nears: takes no new tasks) or ``leaving`` (told to exit).
        workers: Its workers (0 until it has connected).
        host: The node it runs on ("" until it has connected).
        tasks: Tasks it holds (running or next in line).
    """

    job_id: str
    state: str
    workers: int
    host: str
    tasks: int


@dataclass
class _Task:
    """A task of the interchange that has not finished."""

    future: TaskFuture
    spec: dict[str, Any]  # TaskSpec.to_dict()
    env_version: int
    walltime_s: float | None
    pilot: _Pilot | None = None  # the pilot that holds it


@dataclass
class _Pilot:
    """One pilot job, from its submission until it is gone."""

    key: str
    job: TaskFuture | None = None  # the inner PsijExecutor's future of the job
    conn: Connection | None = None
    state: str = "starting"  # starting | active | draining | leaving | gone
    workers: int = 0
    host: str = ""
    deadline: float = math.inf  # monotonic time it stops taking tasks
    held: dict[str, _Task] = field(default_factory=dict)
    envs: set[int] = field(default_factory=set)  # environment versions it has
    idle_since: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    last_sent: float = field(default_factory=time.monotonic)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    stopped_by_us: bool = False


class _PilotJobs(PsijExecutor):
    """The inner executor of pilot jobs: a whole node when the pilot's workers are not set."""

    def __init__(self, *args: Any, exclusive: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._exclusive = exclusive

    def _job_spec(self, task: TaskSpec, folder: Path, spec_path: Path) -> psij.JobSpec:
        spec = super()._job_spec(task, folder, spec_path)
        if self._exclusive and isinstance(spec.resources, psij.ResourceSpecV1):
            spec.resources.exclusive_node_use = True
            spec.resources.cpu_cores_per_process = None
        return spec


class PilotExecutor:
    """Runs tasks in pilot jobs on a batch system (Slurm, PBS, LSF, Flux) through PSI/J.

    See the module docstring for how tasks travel, scale and fail.

    Args:
        kind: The batch system (see :data:`~genesis_platform.compute.psij.KINDS`).
        work_dir: A folder shared with the compute nodes (created if missing).
        pilot_min: Pilot jobs kept even when idle.
        pilot_max: Pilot jobs at most (starting, active or draining).
        pilot_workers: Workers per pilot, or None for one per CPU of a whole node.
        pilot_idle_timeout_s: A pilot with nothing to do leaves after this long, s.
        pilot_walltime_s: Each pilot job's walltime, s.
        pilot_address: The name or address of this machine that compute nodes reach, or
            None for this host's name.
        poll_interval_s: Queue polling of the pilot jobs (a backstop: pilots report
            through their connection).
        queue: Partition or queue of the pilot jobs, or None for the default.
        account: Account to charge, or None for the default.
        python: The Python on the compute nodes, with ``genesis_platform`` importable.

    Raises:
        InvalidInput: An option is invalid (``field`` names it).
        ExecutorError: PSI/J cannot load the batch system, or the interchange cannot listen.
    """

    def __init__(
        self,
        kind: str = "slurm",
        *,
        work_dir: str | os.PathLike[str],
        pilot_min: int = 0,
        pilot_max: int = 1,
        pilot_workers: int | None = None,
        pilot_idle_timeout_s: float = 60.0,
        pilot_walltime_s: float = 3600.0,
        pilot_address: str | None = None,
        poll_interval_s: float = 1.0,
        queue: str | None = None,
        account: str | None = None,
        python: str = sys.executable,
    ) -> None:
        _check_count("pilot_min", pilot_min, 0)
        _check_count("pilot_max", pilot_max, 1)
        if pilot_min > pilot_max:
            raise InvalidInput(
                "pilot_min", f"{pilot_min} is more than pilot_max ({pilot_max})", "lower it"
            )
        if pilot_workers is not None:
            _check_count("pilot_workers", pilot_workers, 1)
        _check_seconds("pilot_idle_timeout_s", pilot_idle_timeout_s, 0.0)
        _check_seconds("pilot_walltime_s", pilot_walltime_s, 10.0)
        if pilot_address is not None and (
            not isinstance(pilot_address, str) or not re.fullmatch(r"[^\s:/]+", pilot_address)
        ):
            raise InvalidInput(
                "pilot_address",
                f"{pilot_address!r} is not a host name or address",
                "a name or IP address the compute nodes reach, without a port, e.g. login1",
            )
        self.work_dir = Path(work_dir).absolute()
        self._inner = _PilotJobs(
            kind,
            work_dir=self.work_dir,
            poll_interval_s=poll_interval_s,
            queue=queue,
            account=account,
            python=python,
            max_jobs=pilot_max,
            exclusive=pilot_workers is None,
        )
        self.kind = kind
        self._python = python
        self._min = pilot_min
        self._max = pilot_max
        self._workers = pilot_workers
        self._idle_timeout = float(pilot_idle_timeout_s)
        self._walltime = float(pilot_walltime_s)
        self._longest_task = self._walltime - drain_margin(self._walltime)
        self._id_prefix = f"pilot:{self.work_dir.name}:"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # tasks, pilots or the state changed
        self._live: dict[str, _Task] = {}  # every unfinished task, by external id
        self._queue: deque[_Task] = deque()  # waiting for a pilot (may hold cancelled ones)
        self._pilots: dict[str, _Pilot] = {}  # not gone, by key
        self._envs: dict[int, dict[str, str]] = {}
        self._env_source = _EnvironmentSnapshot()
        self._env_current: dict[str, str] | None = None
        self._env_version = 0
        self._start_failures = 0
        self._last_failure = ""
        self._closed = False
        self._stopping = False  # the threads end
        key_dir = self.work_dir / "pilots"
        key_dir.mkdir(parents=True, exist_ok=True)
        self._authkey = secrets.token_bytes(32)
        self._key_file = key_dir / f"{uuid.uuid4().hex}.key"
        descriptor = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(self._authkey)
        try:
            self._listener = Listener(("", 0), family="AF_INET", authkey=self._authkey)
        except OSError as exc:
            raise ExecutorError(f"the pilot interchange cannot listen: {exc}") from exc
        self._port = int(self._listener.address[1])
        self._address = pilot_address or socket.gethostname()
        self._threads = [
            threading.Thread(target=self._accept_loop, name="genesis-pilot-accept", daemon=True),
            threading.Thread(target=self._tick_loop, name="genesis-pilot-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the executor protocol ---------------------------------------------------------------

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Queue ``task`` for a pilot and return its future, with its external id, at once.

        Raises:
            InvalidInput: The task is malformed (see
                :meth:`~genesis_platform.compute.local.LocalExecutor.submit`), or its
                walltime is longer than a pilot can give (field ``resources.walltime_s``).
            ExecutorError: The executor is shut down.
        """
        _check_task(task)
        walltime = task.resources.walltime_s
        if walltime is not None and walltime > self._longest_task:
            raise InvalidInput(
                "resources.walltime_s",
                f"{walltime} s is longer than a pilot takes tasks ({self._longest_task:g} s)",
                "raise the site's pilot_walltime_s or run the task on a site without pilots",
            )
        future = TaskFuture(f"{self._id_prefix}{uuid.uuid4().hex}", self.cancel)
        env = self._env_source.get()
        with self._lock:
            if self._closed:
                raise ExecutorError("the pilot executor is shut down; create a new one")
            if env is not self._env_current:
                self._env_current = env
                self._env_version += 1
                self._envs[self._env_version] = env
            entry = _Task(future, task.to_dict(), self._env_version, walltime)
            self._live[future.external_id] = entry
            self._queue.append(entry)
            self._start_failures = min(self._start_failures, _START_FAILURES - 1)
            self._changed.notify_all()
        return future

    def limits(self) -> SiteLimits:
        """The batch system's limits; a pilot holds one node, so one node per task."""
        return dataclasses.replace(self._inner.limits(), nodes=1, walltime_s=self._longest_task)

    def capacity(self) -> int:
        """Free slots: ``pilot_max`` times the workers per pilot, minus unfinished tasks.

        Without ``pilot_workers``, a pilot counts as the most workers a pilot has reported,
        or 1 before any has connected.
        """
        with self._lock:
            if self._closed:
                return 0
            workers = self._workers or max((p.workers for p in self._pilots.values()), default=1)
            return max(0, self._max * max(workers, 1) - len(self._live))

    def cancel(self, external_id: str) -> bool:
        """Stop task ``external_id``, queued or running; its future is cancelled at once.

        False if this executor has no such unfinished task.
        """
        with self._lock:
            entry = self._live.pop(external_id, None)
            if entry is None:
                return False
            pilot = entry.pilot
            self._changed.notify_all()
        entry.future.cancel()  # calls back here, and finds it gone
        if pilot is not None:
            self._send(pilot, ("cancel", [external_id]))
        return True

    def attach(self, external_id: str) -> TaskFuture | None:
        """The future of this executor's unfinished task ``external_id``; None for others.

        A task of another (dead) process cannot be followed: its interchange died with it,
        and its pilots stopped its tasks (see the module docstring).
        """
        with self._lock:
            entry = self._live.get(external_id)
        return None if entry is None else entry.future

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks, then let the pilots go.

        Args:
            wait: Block until every task has finished and the pilots have left (pilot jobs
                still queued are cancelled). Without it, tasks no pilot holds fail with
                :class:`ExecutorError`, held ones finish in the background (their futures
                still settle), and each pilot leaves once it has nothing left to do.
        """
        dropped: list[_Task] = []
        with self._lock:
            self._closed = True
            if not wait:
                dropped = [entry for entry in self._queue if entry.pilot is None]
                self._queue.clear()
                for entry in dropped:
                    self._live.pop(entry.future.external_id, None)
            self._changed.notify_all()
        for entry in dropped:
            entry.future.settle(error=ExecutorError("the executor shut down before it started"))
        if not wait:
            return
        with self._lock:
            while self._live:
                self._changed.wait(_TICK_S)
            # Idle pilots are told to exit (tick loop); wait for them to say goodbye.
            deadline = time.monotonic() + _BYE_WAIT_S
            while time.monotonic() < deadline and any(
                p.state != "starting" for p in self._pilots.values()
            ):
                self._changed.wait(_TICK_S)
            self._stopping = True
            leftover = list(self._pilots.values())
            self._changed.notify_all()
        for pilot in leftover:
            self._lose(pilot, "the executor shut down", cancel_job=True)
        self._close_listener()
        self._inner.shutdown(wait=False)
        self._key_file.unlink(missing_ok=True)

    def pilots(self) -> list[PilotInfo]:
        """The pilot jobs that exist now (submitted and not yet gone)."""
        with self._lock:
            return [
                PilotInfo(
                    "" if p.job is None else p.job.external_id,
                    p.state,
                    p.workers,
                    p.host,
                    len(p.held),
                )
                for p in self._pilots.values()
            ]

    def __enter__(self) -> PilotExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"PilotExecutor({self.kind!r}, work_dir={str(self.work_dir)!r})"

    # -- the interchange: connections ---------------------------------------------------------

    def _accept_loop(self) -> None:
        """Thread: accept pilots' connections (each authenticated by the listener)."""
        while not self._stopping:
            try:
                conn = self._listener.accept()
            except OSError:  # the listener was closed
                return
            except Exception:  # a peer without the key, or one that hung up: ignore it
                continue
            if self._stopping:
                conn.close()
                return
            _no_delay(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name="genesis-pilot-conn", daemon=True
            ).start()

    def _serve(self, conn: Connection) -> None:
        """Thread: one pilot's messages, from its hello until it leaves or is lost."""
        try:
            if not conn.poll(_HELLO_TIMEOUT_S):
                raise EOFError("no hello")
            hello = conn.recv()
            kind, version, key, workers, host, drain_in = hello
            if kind != "hello" or version != PROTOCOL_VERSION:
                raise EOFError(f"not a hello: {hello!r}")
        except (EOFError, OSError, ValueError, TypeError):
            conn.close()
            return
        with self._lock:
            pilot = self._pilots.get(key)
            if pilot is None or pilot.state != "starting":
                pilot = None
            else:
                pilot.conn = conn
                pilot.state = "active"
                pilot.workers = int(workers)
                pilot.host = str(host)
                pilot.deadline = time.monotonic() + float(drain_in)
                pilot.idle_since = pilot.last_heard = time.monotonic()
                self._start_failures = 0
                self._changed.notify_all()
        if pilot is None:  # a pilot of an earlier executor, or one given up on
            with contextlib.suppress(OSError):
                conn.send(("exit",))
            conn.close()
            return
        reason = "its connection closed"
        try:
            while True:
                message = conn.recv()
                with self._lock:
                    pilot.last_heard = time.monotonic()
                if not self._on_message(pilot, message):
                    break
        except (EOFError, OSError) as exc:
            reason = f"its connection was lost ({exc or type(exc).__name__})"
        self._lose(pilot, reason, cancel_job=False)

    def _on_message(self, pilot: _Pilot, message: tuple[Any, ...]) -> bool:
        """Handle one message of ``pilot``; False when it said goodbye."""
        kind = message[0]
        if kind == "report":
            _, started, done, returned = message
            self._on_report(pilot, started, done, returned)
        elif kind == "draining":
            with self._lock:
                if pilot.state == "active":
                    pilot.state = "draining"
                self._changed.notify_all()
        elif kind == "bye":
            with self._lock:
                pilot.state = "gone"
            return False
        return True

    def _on_report(
        self,
        pilot: _Pilot,
        started: Sequence[str],
        done: Sequence[tuple[str, str, Any]],
        returned: Sequence[str],
    ) -> None:
        settled: list[tuple[_Task, TaskResult | None, BaseException | None]] = []
        starting: list[TaskFuture] = []
        with self._lock:
            for external_id in started:
                entry = pilot.held.get(external_id)
                if entry is not None:
                    starting.append(entry.future)
            for external_id, kind, payload in done:
                entry = pilot.held.pop(external_id, None)
                if entry is None:
                    continue
                self._live.pop(external_id, None)
                result, error = _outcome(external_id, kind, payload)
                settled.append((entry, result, error))
            for external_id in reversed(returned):
                entry = pilot.held.pop(external_id, None)
                if entry is not None and not entry.future.done():
                    entry.pilot = None
                    self._queue.appendleft(entry)
            if not pilot.held:
                pilot.idle_since = time.monotonic()
            self._changed.notify_all()
        for future in starting:
            future.notify_started()
        for entry, result, error in settled:
            if result is not None or isinstance(error, TaskFailed):
                entry.future.notify_started()
            entry.future.settle(result, error)

    def _send(self, pilot: _Pilot, message: tuple[Any, ...]) -> bool:
        """Send ``message`` to ``pilot``; False (and the pilot is lost) if it cannot be sent."""
        conn = pilot.conn
        if conn is None:
            return False
        try:
            with pilot.send_lock:
                conn.send(message)
                pilot.last_sent = time.monotonic()
        except (OSError, ValueError) as exc:
            self._lose(pilot, f"a message to it could not be sent ({exc})", cancel_job=False)
            return False
        return True

    def _lose(self, pilot: _Pilot, reason: str, *, cancel_job: bool) -> None:
        """``pilot`` is gone: fail its started tasks, requeue the others, end its job."""
        with self._lock:
            if self._pilots.get(pilot.key) is not pilot:
                return
            del self._pilots[pilot.key]
            was = pilot.state
            pilot.state = "gone"
            held, pilot.held = list(pilot.held.values()), {}
            failed: list[_Task] = []
            for entry in reversed(held):
                entry.pilot = None
                if entry.future.done():
                    continue
                if entry.future.started_at is None and not self._stopping:
                    self._queue.appendleft(entry)  # it never ran: another pilot takes it
                else:
                    self._live.pop(entry.future.external_id, None)
                    failed.append(entry)
            self._changed.notify_all()
        where = "" if not pilot.host else f" on {pilot.host}"
        label = "" if pilot.job is None else f" (job {pilot.job.external_id})"
        for entry in failed:
            entry.future.settle(
                error=TransientFailure(
                    f"the pilot{label}{where} running {entry.future.external_id} was lost: "
                    f"{reason}; resubmit the task"
                )
            )
        if pilot.conn is not None:
            _hang_up(pilot.conn)
        job = pilot.job
        if job is not None and (cancel_job or was != "gone") and not job.done():
            pilot.stopped_by_us = True  # it did not say goodbye: end its batch job
            with contextlib.suppress(ExecutorError):
                self._inner.cancel(job.external_id)

    def _close_listener(self) -> None:
        """Close the listener, waking the accept thread with a connection of our own."""
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self._port), timeout=1).close()
        with contextlib.suppress(OSError):
            self._listener.close()

    # -- the interchange: dispatch, scaling, heartbeats --------------------------------------

    def _tick_loop(self) -> None:
        """Thread: hand tasks to pilots with room, scale the pilots, check heartbeats."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._changed.wait(_TICK_S)
                if self._stopping:
                    return
                sends = self._plan_dispatch()
                actions = self._plan_scaling()
            for pilot, messages in sends:
                for message in messages:
                    if not self._send(pilot, message):
                        break
            self._act(actions)

    def _plan_dispatch(self) -> list[tuple[_Pilot, list[tuple[Any, ...]]]]:
        """Take tasks from the queue for pilots with room (holding the lock)."""
        sends: list[tuple[_Pilot, list[tuple[Any, ...]]]] = []
        now = time.monotonic()
        for pilot in self._pilots.values():
            if not self._queue:
                break
            if pilot.state != "active" or now >= pilot.deadline:
                continue
            room = _PREFETCH_FACTOR * pilot.workers - len(pilot.held)
            batch: list[tuple[str, dict[str, Any], int]] = []
            skipped: list[_Task] = []
            while room > 0 and self._queue and len(skipped) <= 2 * pilot.workers:
                entry = self._queue.popleft()
                if entry.future.done():
                    continue  # cancelled while waiting
                if entry.walltime_s is not None and now + entry.walltime_s > pilot.deadline:
                    skipped.append(entry)  # not enough of this pilot's time left
                    continue
                entry.pilot = pilot
                pilot.held[entry.future.external_id] = entry
                batch.append((entry.future.external_id, entry.spec, entry.env_version))
                room -= 1
            self._queue.extendleft(reversed(skipped))
            if batch:
                messages: list[tuple[Any, ...]] = []
                for version in sorted({version for _, _, version in batch} - pilot.envs):
                    messages.append(("env", version, self._envs[version]))
                    pilot.envs.add(version)
                messages.append(("tasks", batch))
                sends.append((pilot, messages))
        return sends

    def _plan_scaling(self) -> list[tuple[str, _Pilot | None]]:
        """What to start, stop and give up on now (holding the lock)."""
        actions: list[tuple[str, _Pilot | None]] = []
        now = time.monotonic()
        pilots = list(self._pilots.values())
        for pilot in pilots:
            if pilot.state in ("active", "draining", "leaving"):
                if now - pilot.last_heard > _HEARTBEAT_S * _HEARTBEAT_MISSES:
                    actions.append(("lost", pilot))
                elif now - pilot.last_sent > _HEARTBEAT_S:
                    actions.append(("heartbeat", pilot))
        staying = [p for p in pilots if p.state in ("starting", "active", "draining")]
        for pilot in pilots:
            idle = pilot.state == "active" and not pilot.held
            if idle and (self._closed or now - pilot.idle_since >= self._idle_timeout):
                if self._closed and self._queue:
                    continue  # shutting down, but tasks still wait for it
                if len(staying) > self._min or self._closed:
                    pilot.state = "leaving"
                    staying.remove(pilot)
                    actions.append(("exit", pilot))
        if self._closed and not self._live:
            return actions
        waiting = any(not entry.future.done() for entry in self._queue)
        # Dispatch ran just before: a task that still waits found no pilot with room.
        starting = any(p.state == "starting" for p in pilots)
        want = len(staying) < self._min or (waiting and not starting)
        if want and len(self._pilots) < self._max and self._start_failures < _START_FAILURES:
            actions.append(("start", None))
        if waiting and self._start_failures >= _START_FAILURES and not starting:
            actions.append(("give up", None))
        return actions

    def _act(self, actions: list[tuple[str, _Pilot | None]]) -> None:
        for action, pilot in actions:
            if action == "lost" and pilot is not None:
                silent = _HEARTBEAT_S * _HEARTBEAT_MISSES
                self._lose(pilot, f"no heartbeat for {silent:g} s", cancel_job=True)
            elif action == "heartbeat" and pilot is not None:
                self._send(pilot, ("heartbeat",))
            elif action == "exit" and pilot is not None:
                self._send(pilot, ("exit",))
            elif action == "start":
                self._start_pilot()
            elif action == "give up":
                self._fail_waiting()

    def _start_pilot(self) -> None:
        """Submit one pilot job (a command task of the inner PsijExecutor)."""
        pilot = _Pilot(uuid.uuid4().hex)
        command = (
            self._python,
            "-m",
            "genesis_platform.compute.pilot",
            "--connect",
            f"{self._address}:{self._port}",
            "--authkey-file",
            str(self._key_file),
            "--pilot-id",
            pilot.key,
            "--workers",
            str(self._workers or 0),
            "--walltime",
            repr(self._walltime),
        )
        spec = TaskSpec(
            command=command,
            resources=Resources(cores=self._workers or 1, walltime_s=self._walltime),
            name="genesis-pilot",
        )
        with self._lock:
            if self._stopping:
                return
            self._pilots[pilot.key] = pilot
        try:
            job = self._inner.submit(spec)
        except ExecutorError as exc:
            with self._lock:
                self._pilots.pop(pilot.key, None)
                self._start_failures += 1
                self._last_failure = str(exc)
                self._changed.notify_all()
            return
        with self._lock:
            pilot.job = job
        job.add_done_callback(lambda done: self._on_job_end(pilot, done))

    def _on_job_end(self, pilot: _Pilot, job: Future[TaskResult]) -> None:
        """The pilot's batch job ended (PSI/J's thread)."""
        with self._lock:
            never_connected = pilot.state == "starting"
            if never_connected and not pilot.stopped_by_us and not self._stopping:
                self._start_failures += 1
                self._last_failure = _job_error(job)
        self._lose(pilot, f"its job ended ({_job_error(job) or 'completed'})", cancel_job=False)

    def _fail_waiting(self) -> None:
        """Pilots keep failing to start: fail the tasks that wait for one."""
        with self._lock:
            waiting = [entry for entry in self._queue if not entry.future.done()]
            self._queue.clear()
            for entry in waiting:
                self._live.pop(entry.future.external_id, None)
            failure = self._last_failure
            self._changed.notify_all()
        for entry in waiting:
            entry.future.settle(
                error=ExecutorError(
                    f"{_START_FAILURES} pilot jobs in a row ended without reaching the "
                    f"interchange at {self._address}:{self._port}; can the compute nodes reach "
                    f"pilot_address {self._address!r}, and is genesis_platform importable by "
                    f"{self._python} there? The last one: {failure}",
                )
            )


def _check_count(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(name, f"must be an integer of at least {low}, got {value!r}")


def _check_seconds(name: str, value: object, low: float) -> None:
    """``value`` must be a finite number of seconds, at least ``low`` and above 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (low <= value < math.inf and value > 0)
    ):
        least = f"at least {low:g}" if low > 0 else "above 0"
        raise InvalidInput(name, f"must be a number of seconds {least}, got {value!r}")


def _outcome(
    external_id: str, kind: str, payload: Any
) -> tuple[TaskResult | None, BaseException | None]:
    """A pilot's report of a finished task as (result, error)."""
    if kind == "ok":
        output, logs, usage = payload
        return TaskResult(output, logs, usage, external_id), None
    if kind == "failed":
        message, trace, logs, usage = payload
        return None, TaskFailed(message, traceback=trace, logs=logs, usage=usage)
    if kind == "transient":
        return None, TransientFailure(f"{external_id}: {payload}")
    if kind == "cancelled":
        return None, ExecutorError(f"{external_id} was cancelled in its pilot")
    return None, ExecutorError(f"{external_id}: {payload}")


def _job_error(job: Future[TaskResult]) -> str:
    """What ended a pilot job, with the tail of its log ("" if it completed)."""
    if job.cancelled():
        return "cancelled"
    error = job.exception()
    if error is None:
        return ""
    tail = getattr(error, "traceback", "") or getattr(error, "details", {}).get("logs", "")
    return f"{error}" + (f"; its log ends:\n{tail[-2000:]}" if tail else "")


def _no_delay(conn: Connection) -> None:
    """Send small messages at once (no Nagle: with delayed ACKs it adds 40 ms a round trip)."""
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(conn.fileno()))
        with duplicate:
            duplicate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _hang_up(conn: Connection) -> None:
    """Close ``conn`` so that a thread blocked reading it wakes up."""
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(conn.fileno()))
        with duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        conn.close()


# -- the pilot, on a compute node -------------------------------------------------------------


class _Runtime:
    """The pilot's state: its connection, its local executor and what it owes its interchange.

    The main thread reads the connection; a sender thread sends reports in batches.
    """

    def __init__(self, conn: Connection, key: str, workers: int, walltime_s: float) -> None:
        self.conn = conn
        self.key = key
        self.workers = workers
        self.local = LocalExecutor(max_workers=workers)
        self.drain_at = time.monotonic() + walltime_s - drain_margin(walltime_s)
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.held: dict[str, TaskFuture] = {}
        self.started: list[str] = []
        self.done: list[tuple[str, str, Any]] = []
        self.returned: list[str] = []
        self.envs: dict[int, dict[str, str]] = {}
        self.draining = False
        self.exiting = False
        self.closing = False  # the sender flushes and ends
        self.silent = False  # being killed: report nothing (the interchange sees it lost)
        self.send_lock = threading.Lock()

    def run(self) -> int:
        """Serve the interchange until told to leave, drained, or cut off; the exit status."""
        self._send(
            (
                "hello",
                PROTOCOL_VERSION,
                self.key,
                self.workers,
                socket.gethostname(),
                max(0.0, self.drain_at - time.monotonic()),
            )
        )
        sender = threading.Thread(target=self._sender, name="genesis-pilot-send", daemon=True)
        sender.start()
        last_heard = time.monotonic()
        while True:
            try:
                if self.conn.poll(_TICK_S):
                    message = self.conn.recv()
                    last_heard = time.monotonic()
                    self._handle(message)
            except (EOFError, OSError):
                return self._abandon("the interchange hung up")
            now = time.monotonic()
            if now - last_heard > _HEARTBEAT_S * _HEARTBEAT_MISSES:
                return self._abandon("the interchange is silent")
            with self.lock:
                if not self.draining and not self.exiting and now >= self.drain_at:
                    self.draining = True
                    drain = True
                else:
                    drain = False
                finished = (self.draining or self.exiting) and not self.held
            if drain:
                self._send(("draining",))
            if finished:
                break
        self.local.shutdown(wait=True)
        with self.lock:
            self.closing = True
            self.wake.notify_all()
        sender.join()
        with contextlib.suppress(OSError):
            self._send(("bye",))
        self.conn.close()
        return 0

    def _abandon(self, reason: str) -> int:
        print(f"genesis pilot: {reason}; stopping its tasks", file=sys.stderr, flush=True)
        self.stop()
        return 1

    def stop(self) -> None:
        """Kill every task at once, reporting none of them (the pilot is going away)."""
        with self.lock:
            self.silent = True
            self.wake.notify_all()
        self.local.terminate()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "tasks":
            for external_id, spec, version in message[1]:
                self._take(external_id, spec, version)
        elif kind == "env":
            self.envs[message[1]] = message[2]
        elif kind == "cancel":
            for external_id in message[1]:
                with self.lock:
                    future = self.held.get(external_id)
                if future is not None:
                    future.cancel()
        elif kind == "exit":
            with self.lock:
                self.exiting = True

    def _take(self, external_id: str, spec: dict[str, Any], version: int) -> None:
        with self.lock:
            if self.draining or self.exiting:
                self.returned.append(external_id)
                self.wake.notify_all()
                return
        try:
            task = TaskSpec.from_dict(spec)
            task = dataclasses.replace(task, env={**self.envs[version], **task.env})
            future = self.local.submit(task)
        except InvalidInput as exc:  # e.g. the function is not importable on this node
            self._report(external_id, "error", f"cannot run it on {socket.gethostname()}: {exc}")
            return
        except Exception as exc:
            self._report(external_id, "transient", f"the pilot could not start it: {exc}")
            return
        with self.lock:
            self.held[external_id] = future
        future.add_start_callback(lambda _: self._started(external_id))
        future.add_done_callback(lambda done: self._finished(external_id, done))

    def _started(self, external_id: str) -> None:
        with self.lock:
            self.started.append(external_id)
            self.wake.notify_all()

    def _finished(self, external_id: str, future: Future[TaskResult]) -> None:
        with self.lock:
            self.held.pop(external_id, None)
        if future.cancelled():
            self._report(external_id, "cancelled", None)
            return
        error = future.exception()
        if error is None:
            result = future.result()
            self._report(external_id, "ok", (result.output, result.logs, dict(result.usage)))
        elif isinstance(error, TaskFailed):
            payload = (
                error.message,
                error.traceback,
                str(error.details.get("logs", "")),
                dict(error.details.get("usage", {})),
            )
            self._report(external_id, "failed", payload)
        elif isinstance(error, TransientFailure):
            self._report(external_id, "transient", str(error))
        else:
            self._report(external_id, "error", str(error))

    def _report(self, external_id: str, kind: str, payload: Any) -> None:
        with self.lock:
            if self.silent:
                return
            self.done.append((external_id, kind, payload))
            self.wake.notify_all()

    def _sender(self) -> None:
        """Thread: send what has gathered as one report; a heartbeat when there is nothing."""
        while True:
            with self.lock:
                if not (self.started or self.done or self.returned or self.closing):
                    self.wake.wait(_HEARTBEAT_S)
                if self.silent:
                    return
                started, self.started = self.started, []
                done, self.done = self.done, []
                returned, self.returned = self.returned, []
                closing = self.closing
            try:
                if started or done or returned:
                    self._send(("report", started, done, returned))
                elif not closing:
                    self._send(("heartbeat",))
            except (OSError, ValueError):
                return  # the main thread notices the connection is gone
            if closing:
                return

    def _send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.conn.send(message)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of a pilot job; the exit status (0: left when told or drained)."""
    parser = argparse.ArgumentParser(
        prog="python -m genesis_platform.compute.pilot",
        description="A Genesis pilot: run tasks from an interchange in a local worker pool.",
    )
    parser.add_argument("--connect", required=True, help="the interchange, HOST:PORT")
    parser.add_argument("--authkey-file", required=True, type=Path)
    parser.add_argument("--pilot-id", required=True)
    parser.add_argument("--workers", type=int, default=0, help="0: one per CPU of this job")
    parser.add_argument("--walltime", type=float, required=True, help="this job's walltime, s")
    args = parser.parse_args(argv)
    host, _, port = args.connect.rpartition(":")
    authkey = args.authkey_file.read_bytes()
    workers = args.workers or usable_cpus()
    deadline = time.monotonic() + _CONNECT_TIMEOUT_S
    while True:
        try:
            conn = Client((host, int(port)), family="AF_INET", authkey=authkey)
            break
        except OSError as exc:
            if time.monotonic() >= deadline:
                print(f"genesis pilot: cannot reach {args.connect}: {exc}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    _no_delay(conn)
    runtime = _Runtime(conn, args.pilot_id, workers, args.walltime)

    def terminate(signum: int, frame: FrameType | None) -> None:
        # Not here: the main thread may hold the local executor's lock.
        def stop() -> None:
            runtime.stop()  # kills commands in their own sessions, too
            os._exit(128 + signum)

        threading.Thread(target=stop, name="genesis-pilot-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, terminate)
    return runtime.run()


if __name__ == "__main__":
    sys.exit(main())
