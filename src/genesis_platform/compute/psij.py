"""Batch sites: tasks as Slurm (PBS, LSF, Flux) jobs through PSI/J.

:class:`PsijExecutor` submits each task as one batch job through `PSI/J
<https://exaworks.org/psij>`_ (``psij-python``), which speaks Slurm, PBS, LSF and Flux with one
API; only Slurm is tested here (``scripts/slurm start`` runs a real single-node cluster).

How a task travels, all through files in ``work_dir``, which must be on a file system the
submitting machine shares with the compute nodes::

    work_dir/tasks/<uuid>/task.json           the task (written by worker.write_spec)
    work_dir/tasks/<uuid>/task.outcome.json   its outcome (written by the worker)
    work_dir/tasks/<uuid>/worker.out, .err    the worker's own stdout and stderr
    work_dir/jobs/<kind>-<native id>          symlink to the task's folder, for attach
    work_dir/psij/<kind>/                     PSI/J's submit scripts and exit-code files

:meth:`PsijExecutor.submit` writes the spec and runs ``sbatch`` (through PSI/J) synchronously,
so the future's ``external_id``, ``"slurm:<job id>"``, exists when it returns. The job runs
``python -m genesis_platform.compute.worker task.json`` (:mod:`.worker`), which writes the
outcome file. PSI/J polls the queue (``squeue``) every ``poll_interval_s`` seconds; when the
job reaches a final state the future is settled from the outcome file:

- an outcome: the result, or :class:`~genesis_platform.errors.TaskFailed` when the task's
  code raised, its command exited non-zero, or it ran past its walltime;
- no outcome, job cancelled through this executor: the future is already cancelled;
- no outcome, job cancelled from outside (``scancel``; decided: a retry may well be what the
  operator wanted, and an explicit stop goes through Genesis), the worker died (a crash, a
  signal such as the OOM killer's SIGKILL), or the batch system failed the job (node failure,
  preemption): :class:`~genesis_platform.errors.TransientFailure`;
- no outcome, the batch system's time limit came first: ``TaskFailed`` (walltime exceeded);
- no outcome, the worker could not run at all (no such ``python``, ``genesis_platform`` not
  importable, unreadable spec), PSI/J lost track of the job (its queue polls failed for a
  minute; the job may still run: attach again), or the job ended without an outcome (the
  work dir is not shared): :class:`~genesis_platform.errors.ExecutorError`, with the worker's
  stderr.

The future's start (:meth:`~genesis_platform.compute.protocols.TaskFuture.notify_started`)
is noted when a poll sees the job running, or at the latest when its outcome arrives.

Re-attach: :meth:`PsijExecutor.attach` maps ``"slurm:<job id>"`` back to the task's folder
through ``work_dir/jobs``; if the outcome is there the future is settled at once, otherwise
PSI/J follows the job by its native id (``JobExecutor.attach``) and the outcome is read when
it ends. The process that submitted the job need not be alive.

What is enforced: the walltime, by the worker at ``walltime_s`` (a callable gets SIGALRM,
then is ended 2 s later; a command's process group is killed) and, as a backstop, by the
batch system's time limit at ``walltime_s + 60`` s (rounded up to whole minutes by Slurm);
cores, GPUs and memory, as the batch system enforces its requests (``--cpus-per-task``,
``--gpus-per-task``, ``--mem``). Not enforced: ``max_jobs``. Each submit reaches the batch
system at once, which queues jobs beyond its free nodes; :meth:`PsijExecutor.capacity` only
reports ``max_jobs`` minus the jobs in flight, for schedulers that ask before submitting.

Latency: Slurm starts a batch job on its next scheduler pass (up to 1 s after ``sbatch`` on
an idle cluster with ``batch_sched_delay=0``), the worker then imports ``genesis_platform``
(0.5 s here), and the end is seen at the next queue poll: a short task takes 1.5-2 s from
submit to result. One job per task suits tasks of minutes or more; many small tasks want
pilot jobs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType

import psij
from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutorConfig

from genesis_platform.compute import worker
from genesis_platform.compute.local import check_task
from genesis_platform.compute.protocols import SiteLimits, TaskFuture, TaskResult, TaskSpec
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure

__all__ = ["KINDS", "PsijExecutor"]

KINDS = ("slurm", "pbs", "pbs_classic", "lsf", "flux")
"""Batch systems :class:`PsijExecutor` accepts (PSI/J executor names)."""
_BATCH_TIME_MARGIN_S = 60
"""The batch system's time limit is the task's walltime plus this, s (the worker acts first)."""
_OUTCOME_WAIT_S = 2.0
"""How long to wait for an outcome the worker says it wrote (slow shared file systems), s."""
_TAIL_CHARS = 4_000
"""Characters of the worker's stderr kept in an error."""
_LOST_TRACK = re.compile(r"^(Failed to poll|Failed to update job status|Error updating)")
"""PSI/J's messages when it fails a job because it could not read the queue."""
_POLL_OUTAGE_S = 60.0
"""Queue polls may fail this long in a row before PSI/J gives up on the jobs in flight, s."""
_WORKER_BROKEN = (1, worker.EXIT_BAD_SPEC, 126, 127)
"""Exit statuses of a worker that could not run its task: Python or genesis_platform is
missing on the node (127, 126: no such or no executable program; 1: an import failed), or
the spec is unreadable (2). Retrying will not help."""
_SIGNALS = {int(each): each.name for each in signal.Signals}


@dataclass
class _Job:
    """One task in flight: its PSI/J job, folder and future."""

    job: psij.Job
    folder: Path
    future: TaskFuture | None = None  # made once the batch system gave the job its id
    early_end: psij.JobStatus | None = None  # a final status that came before the future
    cancel_requested: bool = False


class PsijExecutor:
    """Runs each task as one batch job (Slurm, PBS, LSF, Flux) through PSI/J.

    Args:
        kind: The batch system, one of :data:`KINDS`.
        work_dir: A folder on a file system shared with the compute nodes (created if
            missing); task files and outcomes live there (see the module docstring).
        poll_interval_s: Seconds between queue polls (PSI/J's ``queue_polling_interval``);
            a finished task is noticed up to this long after it ends. Fractions are fine.
        queue: Partition or queue to submit to, or None for the system's default.
        account: Account (project) to charge, or None for the default.
        python: The Python on the compute nodes, with ``genesis_platform`` importable.
        max_jobs: Jobs in flight :meth:`capacity` counts against (not enforced).
        max_workers: Another name for ``max_jobs`` (the name other executors use); wins
            over ``max_jobs`` when given.

    Raises:
        InvalidInput: An option is invalid (``field`` names it).
        ExecutorError: PSI/J cannot load the executor for ``kind``.
    """

    def __init__(
        self,
        kind: str = "slurm",
        *,
        work_dir: str | os.PathLike[str],
        poll_interval_s: float = 1.0,
        queue: str | None = None,
        account: str | None = None,
        python: str = sys.executable,
        max_jobs: int = 100,
        max_workers: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise InvalidInput("kind", f"unknown batch system {kind!r}", f"use one of {KINDS}")
        if (
            isinstance(poll_interval_s, bool)
            or not isinstance(poll_interval_s, int | float)
            or not 0 < poll_interval_s < math.inf
        ):
            raise InvalidInput(
                "poll_interval_s", f"must be a positive number, got {poll_interval_s!r}"
            )
        if max_workers is not None:
            max_jobs = max_workers
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            field = "max_jobs" if max_workers is None else "max_workers"
            raise InvalidInput(field, f"must be a positive integer, got {max_jobs!r}")
        self.kind = kind
        self.work_dir = Path(work_dir).absolute()
        self._tasks = self.work_dir / "tasks"
        self._index = self.work_dir / "jobs"
        for folder in (self._tasks, self._index):
            folder.mkdir(parents=True, exist_ok=True)
        self._queue = queue
        self._account = account
        self._python = python
        self._max_jobs = max_jobs
        self._limits: SiteLimits | None = None
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # notified when a job leaves _jobs
        self._jobs: dict[str, _Job] = {}  # by external id
        self._closed = False
        config: psij.JobExecutorConfig
        if kind == "flux":  # event-driven; no queue polling
            config = psij.JobExecutorConfig(work_directory=self.work_dir / "psij")
        else:
            config = BatchSchedulerExecutorConfig(
                work_directory=self.work_dir / "psij",
                # PSI/J's types say int; its poll thread only sleeps these.
                queue_polling_interval=poll_interval_s,  # type: ignore[arg-type]
                initial_queue_polling_delay=poll_interval_s,  # type: ignore[arg-type]
                # PSI/J fails every job in flight once this many polls in a row failed;
                # ride out a minute of batch system outage (a slurmctld restart).
                queue_polling_error_threshold=math.ceil(_POLL_OUTAGE_S / poll_interval_s),
            )
        try:
            self._psij = psij.JobExecutor.get_instance(kind, config=config)
        except Exception as exc:  # PSI/J raises ValueError, or the plugin's import error
            raise ExecutorError(f"PSI/J cannot load its {kind} executor: {exc}") from exc

    def limits(self) -> SiteLimits:
        """Slurm's nodes, CPUs and memory per node, and time limit of the queue (``sinfo``).

        Asked once and kept; other batch systems (and a failed ``sinfo``) give no limits.
        """
        if self._limits is None:
            self._limits = _slurm_limits(self._queue) if self.kind == "slurm" else SiteLimits()
        return self._limits

    @property
    def max_jobs(self) -> int:
        """Jobs in flight that :meth:`capacity` counts against."""
        return self._max_jobs

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Submit ``task`` as a batch job and return its future, with the job id, at once.

        Raises:
            InvalidInput: The task is malformed (see
                :meth:`~genesis_platform.compute.local.LocalExecutor.submit`).
            ExecutorError: The executor is shut down, or the batch system refused the job
                (the message has its reply).
        """
        check_task(task)
        with self._lock:
            if self._closed:
                raise ExecutorError(f"the {self.kind} executor is shut down; create a new one")
        folder = self._tasks / uuid.uuid4().hex
        folder.mkdir(mode=0o700)
        spec_path = folder / "task.json"
        worker.write_spec(spec_path, task)
        entry = _Job(psij.Job(self._job_spec(task, folder, spec_path)), folder)
        entry.job.set_job_status_callback(lambda job, status: self._on_status(entry, status))
        try:
            self._psij.submit(entry.job)
        except (psij.SubmitException, psij.InvalidJobException, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ExecutorError(f"{self.kind} refused the job for {_label(task)}: {exc}") from exc
        external_id = self._external_id(entry.job)
        link = self._index / f"{self.kind}-{entry.job.native_id}"
        temporary = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
        os.symlink(os.path.relpath(folder, self._index), temporary)
        os.replace(temporary, link)  # a reused job id (a reset cluster) now names this task
        return self._follow(entry, external_id)

    def capacity(self) -> int:
        """Free slots: ``max_jobs`` minus jobs queued or running (0 once shut down)."""
        with self._lock:
            return 0 if self._closed else max(0, self._max_jobs - len(self._jobs))

    def cancel(self, external_id: str) -> bool:
        """Cancel the job ``external_id`` (``scancel``), queued or running.

        Its future is cancelled. False if this executor does not follow the job (submit or
        attach it first), or it has finished or is being cancelled already.

        Raises:
            ExecutorError: The batch system refused to cancel it.
        """
        with self._lock:
            entry = self._jobs.get(external_id)
            future = None if entry is None else entry.future
            if entry is None or future is None or entry.cancel_requested:
                return False
            entry.cancel_requested = True
        # TaskFuture.cancel calls back into this method, which returns at the guard above.
        if not future.cancel():
            return False
        try:
            entry.job.cancel()
        except (psij.SubmitException, OSError) as exc:
            raise ExecutorError(f"{self.kind} cannot cancel {external_id}: {exc}") from exc
        return True

    def attach(self, external_id: str) -> TaskFuture | None:
        """A future for the job ``external_id``, submitted earlier through this ``work_dir``.

        The submitting process may be gone: the outcome comes back through the work dir.
        None if the id belongs to another batch system or no task of this work dir has it.

        Raises:
            InvalidInput: ``external_id`` is not ``"<kind>:<job id>"``.
            ExecutorError: The executor is shut down, or PSI/J cannot follow the job.
        """
        kind, _, native_id = external_id.partition(":")
        if not kind or not re.fullmatch(r"[\w.\[\]-]+", native_id):
            raise InvalidInput(
                "external_id", f"{external_id!r} is not a job id", "e.g. slurm:12345"
            )
        with self._lock:
            if self._closed:
                raise ExecutorError(f"the {self.kind} executor is shut down; create a new one")
            if external_id in self._jobs:
                return self._jobs[external_id].future
        link = self._index / f"{kind}-{native_id}"
        if kind != self.kind or not link.is_symlink():
            return None
        folder = link.resolve()
        with contextlib.suppress(FileNotFoundError):  # no outcome yet: follow the job
            result, error = _settled(folder, external_id)
            future = TaskFuture(external_id, canceller=self.cancel)
            future.notify_started()
            future.settle(result, error)
            return future
        entry = _Job(psij.Job(psij.JobSpec(executable=self._python, name="attached")), folder)
        entry.job.set_job_status_callback(lambda job, status: self._on_status(entry, status))
        try:
            self._psij.attach(entry.job, native_id)
        except Exception as exc:  # PSI/J's attach raises whatever its backend raises
            raise ExecutorError(f"PSI/J cannot follow {external_id}: {exc}") from exc
        return self._follow(entry, external_id)

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks.

        Args:
            wait: Block until the jobs in flight end. Without it, they run on in the batch
                system and their futures still settle while this object lives; another
                executor (in another process) can :meth:`attach` to them.
        """
        with self._lock:
            self._closed = True
            # Until the batch system reports each job ended (a cancelled future is done
            # before its job is); concurrent.futures.wait() would also miss cancellations.
            while wait and self._jobs:
                self._ended.wait()

    def __enter__(self) -> PsijExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"PsijExecutor({self.kind!r}, work_dir={str(self.work_dir)!r})"

    def _external_id(self, job: psij.Job) -> str:
        return f"{self.kind}:{job.native_id}"

    def _job_spec(self, task: TaskSpec, folder: Path, spec_path: Path) -> psij.JobSpec:
        walltime = task.resources.walltime_s
        attributes = psij.JobAttributes(queue_name=self._queue, account=self._account)
        if self.kind == "slurm":  # PSI/J 0.9's template names jobs from a missing job.name
            attributes.set_custom_attribute("slurm.job-name", _label(task))
        # PSI/J asks for 10 minutes unless told otherwise; None asks for the queue's default.
        attributes.duration = (
            None  # type: ignore[assignment]
            if walltime is None
            else timedelta(seconds=math.ceil(walltime) + _BATCH_TIME_MARGIN_S)
        )
        resources = task.resources
        return psij.JobSpec(
            executable=self._python,
            arguments=["-m", "genesis_platform.compute.worker", str(spec_path)],
            directory=task.cwd,
            name=_label(task),
            stdout_path=folder / "worker.out",
            stderr_path=folder / "worker.err",
            # One process per node runs the worker (PSI/J's single launcher runs it once, on
            # the first node); cores, GPUs and memory are per node.
            resources=psij.ResourceSpecV1(
                node_count=resources.nodes,
                processes_per_node=1,
                cpu_cores_per_process=resources.cores,
                gpu_cores_per_process=resources.gpus or None,
                memory=None if resources.memory_mb is None else resources.memory_mb * 2**20,
            ),
            attributes=attributes,
        )

    def _follow(self, entry: _Job, external_id: str) -> TaskFuture:
        """Make the future of a job PSI/J now follows, and count it in flight."""
        future = TaskFuture(external_id, canceller=self.cancel)
        with self._lock:
            entry.future = future
            early_end = entry.early_end
            if early_end is None:
                self._jobs[external_id] = entry
        if early_end is not None:  # hardly possible this soon, but PSI/J's thread decides
            self._settle(entry, future, early_end)
        return future

    def _on_status(self, entry: _Job, status: psij.JobStatus) -> None:
        """PSI/J's status thread: note the start, settle the future at a final state."""
        with self._lock:
            future = entry.future
            if future is None:  # _follow has not made it yet; it settles it
                if status.state.final:
                    entry.early_end = status
                return
        if status.state == psij.JobState.ACTIVE:
            future.notify_started()
        elif status.state.final:
            self._settle(entry, future, status)

    def _settle(self, entry: _Job, future: TaskFuture, status: psij.JobStatus) -> None:
        external_id = future.external_id
        try:
            result, error = self._final(entry, future, status)
        except Exception as exc:  # never let a bug leave the future pending
            result, error = None, ExecutorError(f"cannot settle {external_id}: {exc!r}")
        with self._lock:  # free the slot before the future settles: capacity() is exact
            self._jobs.pop(external_id, None)
            self._ended.notify_all()
        if result is not None or isinstance(error, TaskFailed):
            future.notify_started()  # it ran, even if no poll saw it running
        future.settle(result, error)

    def _final(
        self, entry: _Job, future: TaskFuture, status: psij.JobStatus
    ) -> tuple[TaskResult | None, BaseException | None]:
        """The result or error of a job in its final ``status``."""
        external_id = future.external_id
        exit_code = status.exit_code
        # The worker exits 0 or 3 only after writing the outcome: wait for a slow file system.
        patience = _OUTCOME_WAIT_S if exit_code in (worker.EXIT_OK, worker.EXIT_FAILED) else 0.0
        deadline = time.monotonic() + patience
        while True:
            try:
                return _settled(entry.folder, external_id)
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        if future.cancelled():
            return None, None
        where = f"{external_id} ({entry.folder})"
        message = (status.message or "").strip()
        stderr = _tail(entry.folder / "worker.err")
        if status.state == psij.JobState.CANCELED:
            return None, TransientFailure(
                f"{where} was cancelled outside Genesis (e.g. scancel); resubmit it",
                logs=stderr,
            )
        if exit_code in _WORKER_BROKEN:
            return None, ExecutorError(
                f"{where}: the worker failed (exit status {exit_code}); is genesis_platform "
                f"importable by {self._python} on the compute nodes? Its stderr:\n{stderr}",
                logs=stderr,
            )
        if exit_code is not None and exit_code != 0:
            how = f"exit status {exit_code}"
            if exit_code > 128 and exit_code - 128 in _SIGNALS:
                how = f"killed by {_SIGNALS[exit_code - 128]}"
            return None, TransientFailure(
                f"{where}: the worker died abruptly ({how}: a crash, out of memory, or killed "
                f"from outside) without reporting an outcome; resubmit the task. Its stderr:\n"
                f"{stderr}",
                logs=stderr,
            )
        if exit_code is None and status.state == psij.JobState.FAILED:
            if _LOST_TRACK.search(message):  # PSI/J could not poll: the job may still run
                return None, ExecutorError(
                    f"lost track of {where}, which may still run: {message.splitlines()[0]}; "
                    "attach to it again once the batch system answers",
                    logs=stderr,
                )
            if "time limit" in message.lower():
                return None, TaskFailed(
                    f"walltime exceeded: {where} reached the batch system's time limit",
                    traceback=stderr,
                )
            return None, TransientFailure(
                f"{where} was lost by the batch system: {message or 'no reason given'}; "
                "resubmit it",
                logs=stderr,
            )
        return None, ExecutorError(
            f"{where} ended ({status.state}) without an outcome: it was lost before the "
            "worker could write one, or work_dir is not on a file system the compute nodes "
            "share",
            logs=stderr,
        )


def _settled(folder: Path, external_id: str) -> tuple[TaskResult | None, BaseException | None]:
    """The outcome the worker wrote in ``folder``, as (result, error).

    Raises:
        FileNotFoundError: There is no outcome (yet).
    """
    try:
        return worker.read_outcome(worker.outcome_path(folder / "task.json"), external_id), None
    except ExecutorError as exc:  # TaskFailed, or an unreadable outcome
        return None, exc


def _label(task: TaskSpec) -> str:
    """A job name: the task's name or id, else its function or program."""
    label = task.name or task.task_id
    if not label:
        label = task.function or (os.path.basename(task.command[0]) if task.command else "")
    return re.sub(r"[^\w.:-]+", "_", label)[:64] or "genesis-task"


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-_TAIL_CHARS:]
    except OSError:
        return ""


def _slurm_limits(queue: str | None) -> SiteLimits:
    """The partition's node count, largest node (CPUs, MiB) and time limit, from ``sinfo``."""
    argv = ["sinfo", "-h", "-o", "%D|%c|%m|%l"] + (["-p", queue] if queue else [])
    try:
        lines = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return SiteLimits()
    nodes = cores = memory = 0
    walltime: float | None = 0.0
    for line in lines:
        count, cpus, mem, limit = line.split("|")
        nodes += _number(count)
        cores, memory = max(cores, _number(cpus)), max(memory, _number(mem))
        seconds = _slurm_duration(limit)
        walltime = None if walltime is None or seconds is None else max(walltime, seconds)
    if not nodes:
        return SiteLimits()
    return SiteLimits(
        nodes=nodes,
        cores_per_node=cores or None,
        memory_mb_per_node=memory or None,
        walltime_s=walltime or None,
    )


def _number(text: str) -> int:
    digits = text.rstrip("+")
    return int(digits) if digits.isdigit() else 0


def _slurm_duration(text: str) -> float | None:
    """Seconds of a Slurm time limit (``[D-]HH:MM:SS``, ``MM:SS``, ``MM``); None: infinite."""
    if text in {"infinite", "UNLIMITED", "n/a"}:
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")] if clock else []
    if len(parts) == 1:
        parts = [0, parts[0], 0]  # minutes
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
