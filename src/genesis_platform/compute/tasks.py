"""The task service (``p.tasks``): run tasks on sites, and keep a record of every one.

A task is stored (state ``new``) before it is submitted; its external id is stored as soon
as the site's executor returns it (state ``queued``); the record follows it to ``active``
and to ``completed``, ``failed`` or ``canceled`` with its output, error, logs, exit status
and usage. These are the DOE IRI job states.

Each record names its **owner**, the process that follows the task (``host:pid:start``).
Another process (``genesis task cancel``) asks for a cancel by setting the record's
``cancel_requested``; the owner polls for such requests and cancels. When the owner is gone
(the platform crashed or was killed), :meth:`TaskService.recover`, run by the next
long-lived process, claims the record and:

- re-attaches to the task by its external id when the site can (a Slurm job keeps running
  and its result is collected);
- otherwise marks it ``failed`` with the reason and, for a callable that may be retried
  (``retries`` left in the site's policy), submits it again. Its old worker died with the
  platform, so the two never run at the same time. A command is not resubmitted: it runs in
  its own session, may have outlived the platform, and would then run twice.

A failure the executor marks transient (:class:`~genesis_platform.errors.TransientFailure`:
a node failure, a preemption, a killed worker) is retried up to the site's ``retries`` with
a backoff that doubles from ``retry_backoff_s``; a task's own failure never is.

A task of a project with an allocation on the site
(:mod:`~genesis_platform.governance.allocations`) is refused before it is stored when its
worst case does not fit in what is left, and its usage is charged with its final record.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, update

from genesis_platform.catalog.tables import TaskRow, utcnow
from genesis_platform.compute._recorder import Recorder
from genesis_platform.compute._serial import SerialWorker
from genesis_platform.compute.local import check_task
from genesis_platform.compute.protocols import (
    CancellableFuture,
    Resources,
    TaskFuture,
    TaskResult,
    TaskSpec,
)
from genesis_platform.compute.service import SiteInfo, SiteService
from genesis_platform.compute.sites import BATCH_KINDS, LOCAL_SITE
from genesis_platform.compute.staging import (
    TaskFiles,
    collect_outputs,
    register_outputs,
    stage_inputs,
    working_directory,
)
from genesis_platform.data.service import DatasetService
from genesis_platform.errors import (
    ExecutorError,
    GenesisError,
    InvalidInput,
    NotFound,
    TaskFailed,
    TransientFailure,
)
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.allocations import (
    AllocationService,
    Charge,
    Hold,
    task_hours,
    task_needs,
)
from genesis_platform.governance.state import AssetFacts
from genesis_platform.provenance.graph import Edge, Node, ProvenanceGraph

__all__ = ["TaskInfo", "TaskService", "UsageRow", "process_owner"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
ACTIVE_STATES = ("new", "queued", "active")
FINAL_STATES = ("completed", "failed", "canceled")
_CANCEL_POLL_S = 0.5
_QUICK_SUBMIT_KINDS = frozenset({"local", "ray"})
"""Site kinds whose executors submit without waiting (a batch site's runs ``sbatch``)."""
_LIST_CHUNK = 200
"""Rows read at a time by ``TaskService.list`` while it skips tasks the caller may not read."""
_LIST_SCAN_MAX = 2_000
"""Rows ``TaskService.list`` reads at most (or ``limit``, if more): each costs a decision."""


def process_owner() -> str:
    """This process as a task owner: ``host:pid:start`` (start in clock ticks since boot)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` is a process of this host that has ended."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another host's process: cannot tell, assume alive
    return _start_ticks(int(pid_text)) == start


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


@dataclass(frozen=True)
class TaskInfo:
    """A task as the catalog records it."""

    id: int
    site: str
    name: str
    state: str
    spec: TaskSpec
    external_id: str
    owner: str
    attempts: int
    project: str
    output: Any
    error: str
    exit_status: int | None
    usage: Mapping[str, float]
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    submitted_by: str
    cancel_requested: bool
    files: TaskFiles = field(default_factory=TaskFiles)
    outputs: tuple[Mapping[str, Any], ...] = ()
    outputs_dataset: str = ""


@dataclass(frozen=True)
class UsageRow:
    """Resource use summed over the finished tasks of one project on one site."""

    project: str
    site: str
    tasks: int
    core_seconds: float
    gpu_seconds: float
    wall_seconds: float


@dataclass
class _Tracked:
    """A task this process follows: its record id, its spec, and the user's future.

    ``result`` resolves to the task's :class:`TaskResult`, or to its output alone when
    ``output_only`` (the future :meth:`TaskService.submit` returns).
    """

    task_id: int
    site: str
    spec: TaskSpec
    attempts: int
    output_only: bool = False
    project: str = ""
    hold: Hold | None = None
    """What it may use of its project's allocation, held until its charge is written."""
    result: CancellableFuture[Any] = field(init=False, repr=False)
    full: CancellableFuture[TaskResult] | None = field(default=None, repr=False)
    """With ``output_only``, a future of the whole TaskResult, made when :meth:`follow` asks."""
    current: TaskFuture | None = None
    timer: threading.Timer | None = field(default=None, repr=False)
    files: TaskFiles = field(default_factory=TaskFiles)
    started: float | None = None
    """When its current attempt started (monotonic seconds), once it has."""
    canceling: bool = False
    """A cancel has begun: no later attempt may be sent (set under the service's lock)."""
    finished: bool = False
    """Its final record is written: nothing else is (set under the service's lock)."""
    spent: dict[str, float] = field(default_factory=dict)
    """Usage of its earlier attempts (retried after transient failures), already charged."""


class TaskService:
    """Tasks on the sites of one platform (limited by ``allocations`` when given)."""

    def __init__(
        self,
        ctx: ServiceContext,
        sites: SiteService,
        datasets: DatasetService,
        allocations: AllocationService | None = None,
    ) -> None:
        self._ctx = ctx
        ctx.resolve("task", self._task_facts)
        self._sites = sites
        self._datasets = datasets
        self._allocations = allocations
        self._outputs = SerialWorker("genesis-task-outputs")
        self._dispatcher = SerialWorker("genesis-task-dispatch")
        self._owner = process_owner()
        self._tracked: dict[int, _Tracked] = {}
        self._lock = threading.Lock()
        self._recorder = Recorder(ctx, allocations)
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- submitting --------------------------------------------------------------------------

    def submit(
        self,
        site: str = LOCAL_SITE,
        *,
        function: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        resources: Resources | None = None,
        name: str = "",
        project: str = "",
        inputs: Mapping[str, str] | None = None,
        outputs: Sequence[str] | None = None,
        register_outputs: str | None = None,
    ) -> CancellableFuture[Any]:
        """Run ``function(**kwargs)`` (or ``command``) on ``site``.

        The future's result is the function's return value (or the command's exit status,
        0); cancelling it cancels the task.

        Args:
            site: Where it runs (``genesis site list``).
            function: ``"package.module:function"``, called with ``kwargs``.
            kwargs: JSON-serializable keyword arguments.
            command: argv of a command, instead of a function.
            env: Extra environment variables.
            cwd: Working directory (default: a fresh one when files are staged, else the
                executor's).
            resources: Nodes, cores, GPUs, memory, walltime.
            name: A label for listings.
            project: The project its usage counts for (default: the principal's).
            inputs: Folder of the working directory -> dataset ``NAME[@VERSION]`` whose
                files are copied there before the task starts.
            outputs: Glob patterns (relative to the working directory) of files to keep as
                blobs when the task has completed; listed on its record.
            register_outputs: Dataset that the kept files become the next version of.

        Raises:
            InvalidInput: a malformed task, a callable that cannot be imported, a command
                that does not exist, resources the site cannot give, or bad inputs or
                outputs (naming the field); nothing is stored or submitted.
            AllocationExceeded: the project has an allocation on the site and the task's
                worst case (cores x walltime, nodes x walltime; the site's
                ``default_walltime_s`` for a task without one) does not fit in what is
                left, or it is not active; nothing is stored or submitted.
            NotFound: no such site.
        """
        spec = TaskSpec(
            function=function,
            kwargs=dict(kwargs or {}),
            command=None if command is None else tuple(command),
            env=dict(env or {}),
            cwd=cwd,
            resources=resources or Resources(),
            name=name,
        )
        files = TaskFiles.create(inputs, outputs, register_outputs)
        return self._start(site, spec, project, files, output_only=True)

    def run(
        self, site: str, spec: TaskSpec, *, project: str = "", files: TaskFiles | None = None
    ) -> CancellableFuture[TaskResult]:
        """Run ``spec`` on ``site``, recorded like :meth:`submit`.

        The future's result is the whole
        :class:`~genesis_platform.compute.protocols.TaskResult` (output, logs, usage).

        Raises:
            InvalidInput: as :meth:`submit`.
            NotFound: no such site.
        """
        return self._start(site, spec, project, files or TaskFiles(), output_only=False)

    def _start(
        self, site: str, spec: TaskSpec, project: str, files: TaskFiles, *, output_only: bool
    ) -> CancellableFuture[Any]:
        """Check ``spec``, stage its inputs and queue its record; dispatched once stored."""
        config = self._sites.config(site)
        default_walltime = config.options.get("default_walltime_s")
        if spec.resources.walltime_s is None and default_walltime is not None:
            spec = replace(spec, resources=replace(spec.resources, walltime_s=default_walltime))
        _check_for_site(spec, config.kind)
        self._ctx.authorize("run", Resource("site", site))
        executor = self._sites.executor(site)  # opened here, not on the records' thread
        limits = getattr(executor, "limits", None)
        if limits is not None:
            limits().check(spec.resources, site)
        project = project or self._ctx.principal.project or ""
        self._ctx.check_project(project)
        hold = self._hold(project, site, spec, default_walltime is not None)
        if files:
            folder = Path(spec.cwd) if spec.cwd else working_directory(self._file_area(site))
            try:
                stage_inputs(files, self._datasets, folder)
            except BaseException:
                self._release(hold)
                raise
            spec = replace(spec, cwd=str(folder))
        label = spec.name or spec.function or " ".join(spec.command or ())
        tracked = self._track(0, site, spec, attempts=0, output_only=output_only, project=project)
        tracked.files = files
        tracked.hold = hold
        values = {
            "site": site,
            "name": label,
            "spec": {**spec.to_dict(), **({"files": files.to_dict()} if files else {})},
            "owner": self._owner,
            "project": project,
            "submitted_by": str(self._ctx.principal),
            "submitted_at": utcnow(),
        }
        if self._closed.is_set():
            self._release(hold)
            raise ExecutorError("the task service is closed; open the platform again")
        self._recorder.insert(
            values,
            lambda task_id: self._stored(tracked, task_id),
            lambda error: self._not_stored(tracked, error),
        )
        return tracked.result

    def _stored(self, tracked: _Tracked, task_id: int) -> None:
        """The task's record committed: follow it, and dispatch it.

        Runs on the records' thread, which must go on writing: a task of a site whose
        executor submits without waiting (local, Ray) is dispatched here, saving a thread's
        wake-up in every round trip (the first task of a local site waits here for its
        process pool to start); others (an ``sbatch``) from the dispatch thread.
        Resolving futures (user callbacks, which may wait for records) never happens here
        (:meth:`_off_records`).
        """
        tracked.task_id = task_id
        with self._lock:
            self._tracked[task_id] = tracked
        try:
            quick = self._sites.config(tracked.site).kind in _QUICK_SUBMIT_KINDS
        except Exception:  # e.g. the site was removed meanwhile: _dispatch records that
            quick = False
        if quick:
            self._dispatch(tracked)
        else:
            self._dispatcher.submit(self._dispatch, tracked)
        self._start_watcher()

    def _off_records(self, call: Callable[..., object], *args: Any) -> None:
        """``call(*args)``, on the dispatch thread if this is the records' thread."""
        if self._recorder.is_writer_thread():
            self._dispatcher.submit(call, *args)
        else:
            call(*args)

    def _not_stored(self, tracked: _Tracked, error: BaseException) -> None:
        """The record could not be written: the task never ran; fail its future."""
        self._release(tracked.hold)
        tracked.hold = None
        self._dispatcher.submit(_resolve, tracked, None, error)

    def _hold(self, project: str, site: str, spec: TaskSpec, default: bool) -> Hold | None:
        """Hold the task's worst case of ``project``'s allocation on ``site`` (if it has one).

        Raises:
            AllocationExceeded: it does not fit in what is left.
        """
        if self._allocations is None or not self._allocations.limited(project, "site", site):
            return None
        r = spec.resources
        note = f"default walltime of site {site}" if default else "walltime"
        needs, what = task_needs(r.nodes, r.cores, r.walltime_s, note)
        return self._allocations.hold(project, "site", site, needs, what)

    def _release(self, hold: Hold | None) -> None:
        if self._allocations is not None:
            self._allocations.release(hold)

    def follow(self, name: str) -> CancellableFuture[TaskResult] | None:
        """The future of the newest task called ``name``, for a process that restarted.

        A finished task gives a future that is already resolved with what the record holds
        (nothing runs again). A task this process follows gives its future. A task of an
        owner that is gone is re-attached by its external id when the site can; otherwise
        (or when there is no such task) the answer is None.
        """
        self._recorder.flush()
        with self._ctx.db.session(write=False) as s:
            task_id = s.scalar(
                select(TaskRow.id).where(TaskRow.name == name).order_by(TaskRow.id.desc()).limit(1)
            )
        if task_id is None:
            return None
        info = self.get(task_id)  # authorized as that task
        with self._lock:
            tracked = self._tracked.get(info.id)
        if tracked is not None:
            return _whole_result(tracked)
        if info.state in FINAL_STATES:
            return _recorded(info)
        if owner_alive(info.owner) or not info.external_id or not self._claim(info.id, info.owner):
            return None
        try:
            future = self._attach(info)
        except ExecutorError:
            self._unclaim(info.id, info.owner)
            return None
        if future is None:
            self._update(info.id, state="failed", error=_lost(info), finished_at=utcnow())
            return None
        return future

    def _track(
        self,
        task_id: int,
        site: str,
        spec: TaskSpec,
        attempts: int,
        output_only: bool = False,
        project: str = "",
    ) -> _Tracked:
        """A record of a task this process follows; cancelling its future cancels the task."""
        tracked = _Tracked(task_id, site, spec, attempts, output_only, project)
        tracked.result = CancellableFuture(lambda: self._cancel_tracked(tracked))
        return tracked

    def _dispatch(self, tracked: _Tracked) -> None:
        """Submit one attempt of ``tracked`` and store its external id."""
        if tracked.canceling or tracked.result.done():  # cancelled before it was sent
            self._finish(tracked, "canceled", error="canceled")
            return
        if tracked.attempts and self._closed.is_set():  # a retry: recover() resubmits it
            return
        spec = replace(tracked.spec, task_id=str(tracked.task_id))
        tracked.attempts += 1
        try:
            future = self._sites.executor(tracked.site).submit(spec)
        except Exception as exc:
            self._finish(tracked, "failed", error=_describe(exc))
            self._off_records(_resolve, tracked, None, exc)
            return
        with self._lock:  # against _cancel_tracked: one of the two stops this attempt
            tracked.current = future
            canceling = tracked.canceling
        # Recovery needs a batch job's id (its job keeps running): write it soon. Without
        # a state, the id may follow the final record, which a cancel may have written.
        ids = {"external_id": future.external_id, "attempts": tracked.attempts}
        soon = self._sites.config(tracked.site).kind in BATCH_KINDS
        if canceling or not self._note(tracked, {"state": "queued", **ids}, soon=soon):
            self._recorder.update(tracked.task_id, ids, soon=soon)
        if canceling:  # cancelled while it was being sent: its canceller records that
            _stop(future)
            return
        future.add_start_callback(lambda f: self._started(tracked, f))
        future.add_done_callback(lambda f: self._off_records(self._done, tracked, f))
        if tracked.result.cancelled():  # cancelled while it was being sent
            _stop(future)

    def _started(self, tracked: _Tracked, future: TaskFuture) -> None:
        if tracked.current is future and not future.done():
            tracked.started = time.monotonic()
            self._note(tracked, {"state": "active", "started_at": utcnow()})

    def _done(self, tracked: _Tracked, future: Future[TaskResult]) -> None:
        """Record how an attempt ended; retry a transient failure if the policy allows."""
        if future.cancelled():
            self._finish(tracked, "canceled", error="canceled")
            _cancel(tracked)
            return
        error = future.exception()
        if error is None:
            result: TaskResult = future.result()
            if tracked.files:  # keeping outputs is file work: not on the executor's thread
                try:
                    self._outputs.submit(self._complete, tracked, result)
                except RuntimeError:  # the service is closing: keep them on this thread
                    self._complete(tracked, result)
            else:
                self._complete(tracked, result)
            return
        if isinstance(error, TransientFailure) and self._retry(tracked, error):
            return
        details = getattr(error, "details", {})
        self._finish(
            tracked,
            "failed",
            error=_describe(error),
            logs=str(details.get("logs", "")),
            usage=self._attempt_usage(tracked, error),
        )
        _resolve(tracked, error=error)

    def _complete(self, tracked: _Tracked, result: TaskResult) -> None:
        """Record a completed task (keeping its outputs first), then resolve its future."""
        values: dict[str, Any] = {}
        if tracked.files:
            try:
                values = self._keep_outputs(tracked)
            except Exception as exc:
                error = ExecutorError(f"the task ran, but its outputs were not kept: {exc}")
                self._finish(tracked, "failed", error=_describe(error), logs=result.logs)
                _resolve(tracked, error=error)
                return
        exit_status = result.output if tracked.spec.command is not None else None
        self._finish(
            tracked,
            "completed",
            error="",
            output=result.output,
            logs=result.logs,
            usage=_usage(result.usage, tracked.spec.resources),
            exit_status=exit_status,
            **values,
        )
        _resolve(tracked, result)

    def _keep_outputs(self, tracked: _Tracked) -> dict[str, Any]:
        """Store the task's output files; register them as a dataset version if asked."""
        assert tracked.spec.cwd is not None  # set when its inputs were staged
        found, kept = collect_outputs(tracked.files, Path(tracked.spec.cwd), self._ctx.blobs)
        version = register_outputs(tracked.files, found, self._datasets, tracked.task_id)
        if version is None:
            return {"outputs": kept}
        edge = Edge(
            Node("dataset_version", version.id), "wasGeneratedBy", Node("task", tracked.task_id)
        )
        with self._ctx.mutation("write", Resource("dataset", version.name), {"op": "task"}) as s:
            ProvenanceGraph().record(s, [edge])
        return {"outputs": kept, "outputs_dataset": version.ref}

    def _file_area(self, site: str) -> Path:
        """Where the working directories of ``site``'s staged tasks go."""
        config = self._sites.config(site)
        settings = config.settings()
        if config.kind in BATCH_KINDS:
            root = settings.work_dir or str(self._ctx.home / "sites" / site)
            return Path(root) / "staging"
        return self._ctx.home / "tasks"

    def _attempt_usage(self, tracked: _Tracked, error: BaseException) -> dict[str, float]:
        """What a failed attempt used: as the executor measured it, else what it held."""
        measured = getattr(error, "details", {}).get("usage") or {}
        if measured:
            return _usage(measured, tracked.spec.resources)
        if tracked.started is not None:
            return _reserved_usage(tracked, time.monotonic() - tracked.started)
        return {}

    def _retry(self, tracked: _Tracked, error: BaseException) -> bool:
        """Schedule the next attempt after a transient failure; False if none is left.

        The failed attempt is charged now, and the next one needs a hold of its own: a
        project whose allocation cannot cover it is not retried (True is returned, as the
        task is recorded ``failed`` here; so it is when the allocation cannot be read).
        """
        policy = self._sites.config(tracked.site).settings()
        if tracked.attempts > policy.retries or self._closed.is_set():
            return False
        used = self._attempt_usage(tracked, error)
        delay = policy.retry_backoff_s * 2 ** (tracked.attempts - 1)
        refused: Exception | None = None
        with self._lock:  # a cancel or close sees the whole retry or none of it
            stopped = tracked.canceling or tracked.finished or self._closed.is_set()
            if not stopped:
                try:
                    charge, hold = self._next_hold(tracked, used)
                except Exception as exc:  # AllocationExceeded, or the catalog is unreadable
                    refused = exc
                else:
                    spent = _sum_usage(tracked.spent, used)
                    retrying = {
                        "state": "queued",
                        "error": f"retrying: {_describe(error)}",
                        "usage": spent,  # kept if the platform restarts before the task ends
                    }
                    self._recorder.update(tracked.task_id, retrying, charge=charge)
                    tracked.spent, tracked.started, tracked.hold = spent, None, hold
                    tracked.current = None  # a cancel while it waits ends the task
                    tracked.timer = threading.Timer(delay, self._dispatch, args=(tracked,))
                    tracked.timer.daemon = True
                    tracked.timer.start()
        if refused is not None:
            reason = f"{_describe(error)}; not retried: {refused}"
            self._finish(tracked, "failed", error=reason, usage=used)
            failure = TransientFailure(reason)
            failure.__cause__ = error
            _resolve(tracked, error=failure)
        elif stopped and tracked.canceling:  # cancelled while this attempt failed
            self._finish(tracked, "canceled", error="canceled", usage=used)
            _cancel(tracked)
        elif stopped and not tracked.finished:  # closing: recorded failed, as before
            return False
        return True

    def _next_hold(
        self, tracked: _Tracked, used: Mapping[str, float]
    ) -> tuple[Charge | None, Hold | None]:
        """The charge of a failed attempt and the hold of the next one.

        Both are None where the task's project has no allocation on its site.

        Raises:
            AllocationExceeded: the next attempt does not fit (nothing is changed).
        """
        allocations = self._allocations
        if allocations is None:
            return None, None
        r = tracked.spec.resources
        if tracked.hold is None and not allocations.limited(tracked.project, "site", tracked.site):
            return None, None
        needs, what = task_needs(r.nodes, r.cores, r.walltime_s)
        held = tracked.hold or Hold(tracked.project, "site", tracked.site, {})  # e.g. recovered
        return allocations.renew(held, task_hours(used, r.nodes), needs, what)

    # -- reading -----------------------------------------------------------------------------

    def site(self, name: str) -> SiteInfo:
        """Site ``name`` (tasks' callers need not hold the site service).

        Raises:
            NotFound: no such site.
        """
        return self._sites.get(name)

    def capacity(self, site: str) -> int:
        """Free slots on ``site`` now (opens its executor)."""
        return self._sites.executor(site).capacity()

    def get(self, task_id: int) -> TaskInfo:
        """One task's record.

        Raises:
            NotFound: no task with that id.
        """
        return self._row(task_id, _info)

    def list(
        self, *, site: str | None = None, state: str | None = None, limit: int = 50
    ) -> builtins.list[TaskInfo]:
        """Up to ``limit`` of the newest tasks the caller may read, of one site or state.

        Tasks the caller may not read are skipped, not counted against ``limit``, among the
        newest ``max(limit, 2000)`` rows (each row read costs a policy decision).
        """
        if state is not None and state not in ACTIVE_STATES + FINAL_STATES:
            raise InvalidInput(
                "state", f"unknown state {state!r}", f"use one of {ACTIVE_STATES + FINAL_STATES}"
            )
        query = select(TaskRow).order_by(TaskRow.id.desc())
        if site is not None:
            query = query.where(TaskRow.site == site)
        if state is not None:
            query = query.where(TaskRow.state == state)
        self._recorder.flush()
        chunk, scan_max = max(limit, _LIST_CHUNK), max(limit, _LIST_SCAN_MAX)
        found: builtins.list[TaskInfo] = []
        before: int | None = None
        scanned = 0
        while len(found) < limit and scanned < scan_max:
            page = query if before is None else query.where(TaskRow.id < before)
            # The read is authorized and audited once, with the first chunk.
            opened = (
                self._ctx.reading(Resource("task", "*"))
                if before is None
                else self._ctx.db.session(write=False)
            )
            with opened as s:
                infos = [_info(row) for row in s.scalars(page.limit(chunk))]
            seen = self._ctx.visible("task", [str(i.id) for i in infos])
            found += [info for info, ok in zip(infos, seen, strict=True) if ok]
            scanned += len(infos)
            if len(infos) < chunk:
                break
            before = infos[-1].id
        return found[:limit]

    def _task_facts(self, task_id: str) -> AssetFacts | None:
        """A task's governance attributes: its submitter's organization's, in its project."""
        if not task_id.isdigit():
            return None
        with self._ctx.db.session(write=False) as s:
            row = s.execute(
                select(TaskRow.submitted_by, TaskRow.project).where(TaskRow.id == int(task_id))
            ).first()
        if row is None:
            return None
        return AssetFacts("task", task_id, row[0].rpartition("@")[2], project=row[1] or "")

    def logs(self, task_id: int) -> str:
        """What the task printed (stdout and stderr; the last 64,000 characters)."""
        return self._row(task_id, lambda row: row.logs)

    def _row(self, task_id: int, read: Callable[[TaskRow], T]) -> T:
        """``read`` of task ``task_id``'s record, after this process's changes are written.

        Raises:
            NotFound: no task with that id.
        """
        self._recorder.flush()
        with self._ctx.reading(Resource("task", str(task_id))) as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFound("task", task_id, "`genesis task list` shows the tasks")
            return read(row)

    def usage(
        self, *, project: str | None = None, site: str | None = None
    ) -> builtins.list[UsageRow]:
        """Core-, GPU- and wall-seconds of finished tasks, per project and site.

        Of the tasks the principal's organization submitted and of their projects' tasks
        (the operator's admins: all).
        """
        core = func.sum(TaskRow.usage["core_seconds"].as_float())
        gpu = func.sum(TaskRow.usage["gpu_seconds"].as_float())
        wall = func.sum(TaskRow.usage["wall_seconds"].as_float())
        query = (
            select(TaskRow.project, TaskRow.site, func.count(TaskRow.id), core, gpu, wall)
            .where(TaskRow.state.in_(FINAL_STATES))
            .group_by(TaskRow.project, TaskRow.site)
            .order_by(TaskRow.project, TaskRow.site)
        )
        if project is not None:
            query = query.where(TaskRow.project == project)
        if site is not None:
            query = query.where(TaskRow.site == site)
        if not self._ctx.may("administer", Resource("task", "*")):  # not the operator's admins
            mine = TaskRow.submitted_by.endswith(f"@{self._ctx.principal.org}")
            query = query.where(mine | TaskRow.project.in_(sorted(self._ctx.projects() or ())))
        self._recorder.flush()
        with self._ctx.reading(Resource("task", "*")) as s:
            return [
                UsageRow(p, st, n, float(c or 0), float(g or 0), float(w or 0))
                for p, st, n, c, g, w in s.execute(query)
            ]

    # -- cancel, recover, close --------------------------------------------------------------

    def cancel(self, task_id: int) -> bool:
        """Cancel a task, from any process. False if it had already finished.

        A task this process follows is cancelled at once. For another process's task the
        request is stored, and its owner cancels it within about half a second; a task
        whose owner is gone is marked ``canceled`` (after stopping it on its site when the
        site can reach it by external id).
        """
        info = self.get(task_id)
        if info.state in FINAL_STATES:
            return False
        with self._lock:
            tracked = self._tracked.get(task_id)
        if tracked is not None:
            return self._cancel_tracked(tracked)
        with self._ctx.mutation("run", Resource("task", str(task_id)), {"cancel": True}) as s:
            s.execute(update(TaskRow).where(TaskRow.id == task_id).values(cancel_requested=True))
        if not owner_alive(info.owner) and self._claim(task_id, info.owner):
            # Claimed first, so that a recover() elsewhere does not resubmit it meanwhile.
            if info.external_id:
                with contextlib.suppress(GenesisError, OSError):
                    attached = self._sites.executor(info.site).attach(info.external_id)
                    if attached is not None:
                        attached.cancel()
            self._update(task_id, state="canceled", error="canceled", finished_at=utcnow())
        return True

    def _cancel_tracked(self, tracked: _Tracked) -> bool:
        """Cancel a task this process follows (its ``_done`` records ``canceled``)."""
        with self._lock:  # against _dispatch: one of the two stops a new attempt
            tracked.canceling = True
            current = tracked.current
        if tracked.timer is not None:
            tracked.timer.cancel()
        if current is not None:
            if current.cancel():
                _cancel(tracked)
                return True
            # Its attempt has ended: its _done records how (canceling stays set, so no
            # retry follows it). A retry waiting for its timer has no current attempt.
            return False
        with self._lock:
            following = self._tracked.get(tracked.task_id) is tracked
        if not following:
            return False
        self._finish(tracked, "canceled", error="canceled")  # waiting for a retry
        _cancel(tracked)
        return True

    def recover(self) -> dict[str, int]:
        """Take over the unfinished tasks of owners that are gone.

        Returns:
            Counts: ``reattached``, ``resubmitted``, ``failed``, and ``deferred`` (the site
            could not be asked now; a later call tries again).
        """
        counts = {"reattached": 0, "resubmitted": 0, "failed": 0, "deferred": 0}
        with self._ctx.reading(Resource("task", "*")) as s:
            orphans = [
                (row.id, row.owner)
                for row in s.scalars(select(TaskRow).where(TaskRow.state.in_(ACTIVE_STATES)))
                if row.owner != self._owner and not owner_alive(row.owner)
            ]
        for task_id, old_owner in orphans:
            if self._claim(task_id, old_owner):
                counts[self._adopt(self.get(task_id), old_owner)] += 1
        if any(counts.values()):
            self._start_watcher()
        return counts

    def _unclaim(self, task_id: int, old_owner: str) -> None:
        """Give a claimed task back to its ended owner, for a later recovery."""
        with self._ctx.mutation("run", Resource("task", str(task_id)), {"recover": False}) as s:
            s.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id, TaskRow.owner == self._owner)
                .values(owner=old_owner)
            )

    def _outlives_platform(self, site: str) -> bool:
        """Whether the site's tasks run on when the platform stops (batch jobs, plugins).

        A removed site counts as one: its tasks cannot be submitted there again anyway.
        """
        try:
            config = self._sites.config(site)
        except NotFound:
            return True
        if config.kind in ("local", "ray"):
            return False
        return not (config.kind in BATCH_KINDS and config.settings().pilot)

    def _claim(self, task_id: int, old_owner: str) -> bool:
        """Become the owner of ``task_id`` unless another process did first."""
        with self._ctx.mutation("run", Resource("task", str(task_id)), {"recover": True}) as s:
            claimed = s.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id, TaskRow.owner == old_owner)
                .values(owner=self._owner)
            )
            return bool(getattr(claimed, "rowcount", 0))

    def _attach(self, info: TaskInfo) -> CancellableFuture[TaskResult] | None:
        """Follow a claimed task of an ended owner through its site, if the site can.

        Raises:
            ExecutorError: the site cannot be asked now (e.g. the batch system is down):
                the task is neither followed nor lost.
        """
        if not info.external_id:
            return None
        try:
            future = self._sites.executor(info.site).attach(info.external_id)
        except (InvalidInput, NotFound) as exc:  # the site was removed or cannot be opened
            raise ExecutorError(f"site {info.site!r} cannot be asked: {exc}") from exc
        if future is None:
            return None
        tracked = self._track(info.id, info.site, info.spec, info.attempts, project=info.project)
        tracked.files = info.files
        tracked.spent = dict(info.usage)  # earlier attempts', written when they were retried
        tracked.current = future
        with self._lock:
            self._tracked[info.id] = tracked
        future.add_done_callback(lambda f: self._done(tracked, f))
        self._start_watcher()
        return tracked.result

    def _adopt(self, info: TaskInfo, old_owner: str) -> str:
        """Re-attach, resubmit or fail a claimed task of an ended owner; say which."""
        try:
            if self._attach(info) is not None:
                return "reattached"
        except ExecutorError:
            self._unclaim(info.id, old_owner)  # a later recover() tries again
            return "deferred"
        tracked = self._track(info.id, info.site, info.spec, info.attempts, project=info.project)
        tracked.spent = dict(info.usage)  # earlier attempts', written when they were retried
        reason = _lost(info)
        if self._outlives_platform(info.site):
            # Its job may exist though its id was never recorded (the platform stopped
            # between sbatch and the record): submitting again could run it twice.
            reason += "; not resubmitted, as its job may still run: check the batch system"
            self._finish(tracked, "failed", error=reason)
            _resolve(tracked, error=TransientFailure(reason))
            return "failed"
        policy = self._sites.config(info.site).settings()
        retry = info.state == "new" or info.attempts <= policy.retries
        if info.spec.function is not None and retry:
            # Written before the task is followed, so a cancel cannot land before it: one
            # requested meanwhile is seen by the cancel watcher once it is followed.
            self._update(info.id, state="queued", error=f"retrying: {reason}")
            with self._lock:
                self._tracked[info.id] = tracked
            self._dispatch(tracked)
            return "resubmitted"
        self._finish(tracked, "failed", error=reason)
        _resolve(tracked, error=TransientFailure(reason))
        return "failed"

    def wait_all(self, timeout: float | None = None) -> None:
        """Block until every task this process follows has finished (or ``timeout`` s)."""
        with self._lock:
            futures = [t.result for t in self._tracked.values()]
        concurrent.futures.wait(futures, timeout=timeout)

    def close(self) -> None:
        """Stop following tasks (they keep running where they can; see :meth:`recover`)."""
        self._closed.set()
        with self._lock:
            tracked = list(self._tracked.values())
        for each in tracked:
            if each.timer is not None:
                each.timer.cancel()
        self._recorder.flush()  # tasks stored by now are dispatched before the dispatcher stops
        self._dispatcher.shutdown(wait=True)
        self._outputs.shutdown(wait=True)
        self._recorder.close()

    # -- recording ---------------------------------------------------------------------------

    def _note(self, tracked: _Tracked, values: dict[str, Any], soon: bool = False) -> bool:
        """Record a change of a task that has not finished; False (nothing written) if it has.

        Under the lock, so that no change lands after (and overwrites) the final record.
        """
        with self._lock:
            if tracked.finished:
                return False
            self._recorder.update(tracked.task_id, values, soon=soon)
            return True

    def _finish(self, tracked: _Tracked, state: str, **values: Any) -> None:
        """Write ``tracked``'s final record and charge its allocation, once.

        Later calls (a cancel racing the attempt's own end) change nothing.
        """
        with self._lock:
            if tracked.finished:
                return
            tracked.finished = True
            self._tracked.pop(tracked.task_id, None)
        values.update(state=state, finished_at=utcnow())
        if not values.get("usage") and tracked.started is not None:
            values["usage"] = _reserved_usage(tracked, time.monotonic() - tracked.started)
        charge = None
        if self._allocations is not None:  # the last attempt, with the final record
            hold, tracked.hold = tracked.hold, None
            usage, nodes = values.get("usage"), tracked.spec.resources.nodes
            try:
                charge = self._allocations.charge_task(
                    tracked.project, tracked.site, usage, nodes, hold
                )
            except Exception:  # e.g. the allocations could not be read: record it anyway
                _log.exception("task %s: its allocation charge is lost", tracked.task_id)
                charge = Charge(tracked.project, "site", tracked.site, {}, hold) if hold else None
        if tracked.spent:  # the earlier attempts count in its usage too (charged already)
            values["usage"] = _sum_usage(tracked.spent, values.get("usage") or {})
        self._recorder.update(tracked.task_id, values, soon=True, charge=charge)

    def _update(self, task_id: int, **values: Any) -> None:
        """Change a record now (off the hot path: cancels from outside, recovery)."""
        self._recorder.flush()
        with self._ctx.db.session() as s:
            s.execute(update(TaskRow).where(TaskRow.id == task_id).values(**values))

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch_cancels, name="genesis-task-cancels", daemon=True
            )
        self._watcher.start()

    def _watch_cancels(self) -> None:
        """Cancel the tasks of this process that another process asked to cancel."""
        while not self._closed.wait(_CANCEL_POLL_S):
            try:
                self._cancel_requested()
            except Exception:  # e.g. the catalog is locked: ask again next time
                _log.exception("reading cancel requests failed")

    def _cancel_requested(self) -> None:
        with self._lock:
            if not self._tracked:
                return
        with self._ctx.db.session(write=False) as s:
            wanted = s.scalars(
                select(TaskRow.id).where(
                    TaskRow.owner == self._owner,
                    TaskRow.cancel_requested.is_(True),
                    TaskRow.state.in_(ACTIVE_STATES),
                )
            ).all()
        for task_id in wanted:
            with self._lock:
                tracked = self._tracked.get(task_id)
            if tracked is not None:
                self._cancel_tracked(tracked)


def _resolve(
    tracked: _Tracked, result: TaskResult | None = None, error: BaseException | None = None
) -> None:
    """Settle a tracked task's futures.

    The user's (its output alone for ``submit``) and, when :meth:`TaskService.follow` asked
    for it, the whole result.
    """
    if error is not None:
        tracked.result.settle(error=error)
    else:
        assert result is not None
        tracked.result.settle(result.output if tracked.output_only else result)
    if tracked.full is not None:
        tracked.full.settle(result, error)


def _stop(future: TaskFuture) -> None:
    """Cancel an attempt whose task was cancelled; a site that cannot be asked is logged."""
    try:
        future.cancel()
    except GenesisError as exc:
        _log.error("could not cancel attempt %s of a canceled task: %s", future.external_id, exc)


def _cancel(tracked: _Tracked) -> None:
    tracked.result.cancel()
    if tracked.full is not None:
        tracked.full.cancel()


def _whole_result(tracked: _Tracked) -> CancellableFuture[TaskResult]:
    """A future of the task's whole TaskResult (for a ``submit``-ed one, made on demand)."""
    if not tracked.output_only:
        return tracked.result
    if tracked.full is None:
        tracked.full = CancellableFuture(tracked.result.cancel)
        if tracked.result.cancelled():
            tracked.full.cancel()
        elif tracked.result.done() and tracked.result.exception() is not None:
            tracked.full.settle(error=tracked.result.exception())
    return tracked.full


def _check_for_site(spec: TaskSpec, kind: str) -> None:
    """Refuse, before anything is stored, what the site cannot run."""
    check_task(spec)
    resources = spec.resources
    for name in ("nodes", "cores"):
        value = getattr(resources, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"resources.{name}", f"must be a whole number >= 1, got {value!r}")
    if resources.walltime_s is not None and not resources.walltime_s > 0:
        raise InvalidInput("resources.walltime_s", "must be > 0 seconds", "or None for no limit")
    if kind == "local":
        _check_local(spec)


def _check_local(spec: TaskSpec) -> None:
    if spec.command is not None:
        program = spec.command[0]
        path = program if os.sep in program else shutil.which(program, path=spec.env.get("PATH"))
        if path is None or not os.access(path, os.X_OK):
            raise InvalidInput(
                "command",
                f"no program {program!r} on this machine",
                "check the name, or give its full path",
            )


def _reserved_usage(tracked: _Tracked, wall_s: float) -> dict[str, float]:
    """What an attempt that ended without a measurement (canceled, lost) held while it ran.

    Its cores (and GPUs) for its wall time, as batch facilities charge: so canceling work
    before it ends is no way around an allocation.
    """
    r = tracked.spec.resources
    usage = {"wall_seconds": wall_s, "core_seconds": r.cores * r.nodes * wall_s, "estimated": 1.0}
    if r.gpus:
        usage["gpu_seconds"] = r.gpus * r.nodes * wall_s
    return usage


def _sum_usage(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Two attempts' usage together; estimated if either was."""
    out = {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b} if k != "estimated"}
    if "estimated" in a or "estimated" in b:
        out["estimated"] = 1.0
    return out


def _usage(usage: Mapping[str, Any], resources: Resources) -> dict[str, float]:
    out = {k: float(v) for k, v in usage.items() if isinstance(v, int | float)}
    if resources.gpus and "gpu_seconds" not in out:
        out["gpu_seconds"] = resources.gpus * resources.nodes * out.get("wall_seconds", 0.0)
    return out


def _lost(info: TaskInfo) -> str:
    return f"lost: the process that followed it ({info.owner}) ended"


def _recorded(info: TaskInfo) -> CancellableFuture[TaskResult]:
    """A resolved future holding what the record of finished task ``info`` says."""
    future: CancellableFuture[TaskResult] = CancellableFuture()
    if info.state == "completed":
        future.settle(TaskResult(info.output, "", dict(info.usage), info.external_id))
    elif info.state == "canceled":
        future.cancel()
    else:
        future.settle(error=TaskFailed(info.error, usage=dict(info.usage)))
    return future


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _info(row: TaskRow) -> TaskInfo:
    spec = dict(row.spec)
    files = TaskFiles.from_dict(spec.pop("files", None) or {})
    return TaskInfo(
        id=row.id,
        site=row.site,
        name=row.name,
        state=row.state,
        spec=TaskSpec.from_dict(spec),
        external_id=row.external_id,
        owner=row.owner,
        attempts=row.attempts,
        project=row.project,
        output=row.output,
        error=row.error,
        exit_status=row.exit_status,
        usage=dict(row.usage),
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        submitted_by=row.submitted_by,
        cancel_requested=row.cancel_requested,
        files=files,
        outputs=tuple(row.outputs or ()),
        outputs_dataset=row.outputs_dataset,
    )
