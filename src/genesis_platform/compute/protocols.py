"""The executor protocol: run tasks somewhere, get futures back.

Like :class:`concurrent.futures.Executor`, but tasks are data (:class:`TaskSpec`) so they can
be stored, sent to a remote site, and re-attached after a restart through their external id.

Every executor keeps three promises:

- :meth:`Executor.submit` returns a :class:`TaskFuture` whose ``external_id`` (the backend's
  id: a Slurm job id, a Ray task id, ...) is known when ``submit`` returns, so the caller can
  store it before the task can finish;
- a task is stopped by :meth:`TaskFuture.cancel` or :meth:`Executor.cancel`, queued or
  running;
- a future fails with :class:`~genesis_platform.errors.TaskFailed` when the task's own code
  failed (never worth a retry), with :class:`~genesis_platform.errors.TransientFailure` when
  the backend lost it in a way a retry may fix (node failure, preemption, a killed worker),
  and with :class:`~genesis_platform.errors.ExecutorError` for any other backend failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from genesis_platform.errors import InvalidInput

__all__ = [
    "CancellableFuture",
    "Executor",
    "Resources",
    "SiteLimits",
    "TaskFuture",
    "TaskResult",
    "TaskSpec",
    "then",
]

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Resources:
    """What a task asks of its site.

    Attributes:
        nodes: Nodes (batch sites; 1 elsewhere).
        cores: CPU cores (per node).
        gpus: GPUs (per node).
        memory_mb: Memory in MiB, or None for the site's default.
        walltime_s: Wall-time limit in seconds, or None for no limit.
    """

    nodes: int = 1
    cores: int = 1
    gpus: int = 0
    memory_mb: int | None = None
    walltime_s: float | None = None


@dataclass(frozen=True)
class SiteLimits:
    """The most a site can give one task; None where the site does not say.

    An executor that knows its limits offers them through a ``limits()`` method, and the
    task service refuses, before storing anything, a task that asks for more.

    Attributes:
        nodes: Nodes.
        cores_per_node: CPU cores on one node.
        gpus_per_node: GPUs on one node.
        memory_mb_per_node: Memory of one node, MiB.
        walltime_s: Longest walltime, s.
    """

    nodes: int | None = None
    cores_per_node: int | None = None
    gpus_per_node: int | None = None
    memory_mb_per_node: int | None = None
    walltime_s: float | None = None

    def check(self, resources: Resources, site: str) -> None:
        """Raise InvalidInput (field ``resources.<name>``) if ``resources`` asks too much."""
        asked = (
            ("nodes", resources.nodes, self.nodes, "nodes"),
            ("cores", resources.cores, self.cores_per_node, "cores per node"),
            ("gpus", resources.gpus, self.gpus_per_node, "GPUs per node"),
            ("memory_mb", resources.memory_mb, self.memory_mb_per_node, "MiB per node"),
            ("walltime_s", resources.walltime_s, self.walltime_s, "seconds of walltime"),
        )
        for name, value, most, what in asked:
            if value is not None and most is not None and value > most:
                raise InvalidInput(
                    f"resources.{name}",
                    f"site {site!r} has at most {most} {what}, the task asks for {value}",
                    f"ask for at most {most}, or use another site",
                )


@dataclass(frozen=True)
class TaskSpec:
    """One unit of work: a Python callable by reference, or a command.

    Exactly one of ``function`` and ``command`` is set.

    Attributes:
        function: ``"package.module:function"``, called with ``kwargs``.
        kwargs: JSON-serializable keyword arguments for ``function``.
        command: argv of a command to run.
        env: Extra environment variables for the task.
        cwd: Working directory, or None for the executor's default.
        resources: Cores, GPUs, memory, walltime.
        name: A label for logs and listings.
        task_id: Genesis's id of the task (empty outside the task service); executors may
            use it in job names and external ids.
    """

    function: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    resources: Resources = field(default_factory=Resources)
    name: str = ""
    task_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, which :meth:`from_dict` reads back unchanged."""
        resources = self.resources
        return {
            "function": self.function,
            "kwargs": dict(self.kwargs),
            "command": None if self.command is None else list(self.command),
            "env": dict(self.env),
            "cwd": self.cwd,
            "resources": {
                "nodes": resources.nodes,
                "cores": resources.cores,
                "gpus": resources.gpus,
                "memory_mb": resources.memory_mb,
                "walltime_s": resources.walltime_s,
            },
            "name": self.name,
            "task_id": self.task_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Read :meth:`to_dict`'s form back."""
        fields = dict(data)
        fields["resources"] = Resources(**fields.get("resources", {}))
        if fields.get("command") is not None:
            fields["command"] = tuple(fields["command"])
        return cls(**fields)


@dataclass(frozen=True)
class TaskResult:
    """What a finished task returned.

    Attributes:
        output: The callable's return value (JSON-serializable), or the command's exit code.
        logs: Captured stdout and stderr (may be truncated).
        usage: Resource use, e.g. ``{"core_seconds": 1.2, "wall_seconds": 1.1}``.
        external_id: The backend's id for the task (pool task id, Ray id, Slurm job id).
    """

    output: Any
    logs: str = ""
    usage: Mapping[str, float] = field(default_factory=dict)
    external_id: str = ""


class CancellableFuture(Future[T]):
    """A future that stays pending while its work runs, so :meth:`cancel` works until done.

    Cancelling marks the future cancelled and calls ``canceller`` to stop the work. The
    producer resolves it only with :meth:`settle`, never ``set_running_or_notify_cancel``.

    Args:
        canceller: Called (with no arguments) when the future is cancelled.
    """

    def __init__(self, canceller: Callable[[], object] | None = None) -> None:
        super().__init__()
        self._canceller = canceller
        self._settle_lock = threading.RLock()

    def cancel(self) -> bool:
        """Cancel the work, queued or running. False if it had already finished."""
        with self._settle_lock:
            if self.cancelled():
                return True
            if not super().cancel():
                return False
            # Tell waiters (concurrent.futures.wait, as_completed): cancel() alone does not.
            self.set_running_or_notify_cancel()
        if self._canceller is not None:
            self._canceller()
        return True

    def settle(self, result: T | None = None, error: BaseException | None = None) -> bool:
        """Resolve with ``result`` or ``error``; False (and no change) if already done."""
        with self._settle_lock:
            if self.done():
                return False
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)  # type: ignore[arg-type]
            return True


class TaskFuture(CancellableFuture[TaskResult]):
    """The future of one submitted task, with the backend's id of the task.

    Args:
        external_id: The backend's id of the task.
        canceller: Called with ``external_id`` when the future is cancelled.
    """

    def __init__(self, external_id: str, canceller: Callable[[str], object] | None = None) -> None:
        super().__init__(None if canceller is None else lambda: canceller(external_id))
        self.external_id = external_id
        self.started_at: float | None = None
        self._start_callbacks: list[Callable[[TaskFuture], object]] = []

    def notify_started(self) -> None:
        """Executors call this when the task begins to run (once; later calls do nothing)."""
        with self._settle_lock:
            if self.started_at is not None:
                return
            self.started_at = time.time()
            callbacks, self._start_callbacks = self._start_callbacks, []
        for callback in callbacks:
            callback(self)

    def add_start_callback(self, callback: Callable[[TaskFuture], object]) -> None:
        """Call ``callback(self)`` when the task starts (at once if it has started)."""
        with self._settle_lock:
            if self.started_at is None:
                self._start_callbacks.append(callback)
                return
        callback(self)


@runtime_checkable
class Executor(Protocol):
    """Runs tasks and returns futures that resolve to :class:`TaskResult`.

    A future fails with :class:`~genesis_platform.errors.TaskFailed` when the task's own
    code raised (or its command exited non-zero) and with
    :class:`~genesis_platform.errors.ExecutorError` when the backend failed.
    """

    def submit(self, task: TaskSpec) -> TaskFuture:
        """Start (or queue) ``task`` and return its future, with its external id, at once."""
        ...

    def capacity(self) -> int:
        """How many more tasks could start right now (free slots)."""
        ...

    def cancel(self, external_id: str) -> bool:
        """Stop the task ``external_id``, queued or running. False if unknown or finished."""
        ...

    def attach(self, external_id: str) -> TaskFuture | None:
        """A future for a task submitted earlier, maybe by another process.

        None when the backend cannot follow that task (e.g. a local process that died with
        the platform that started it).
        """
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks; with ``wait``, block until running ones finish."""
        ...


def then(source: Future[T], convert: Callable[[T], U]) -> CancellableFuture[U]:
    """A future of ``convert(source.result())``, failing as either fails.

    Cancelling it cancels ``source`` (for a :class:`CancellableFuture`, even while its work
    runs); a cancelled ``source`` cancels it.
    """
    out: CancellableFuture[U] = CancellableFuture(source.cancel)

    def done(finished: Future[T]) -> None:
        if finished.cancelled():
            out.cancel()
            return
        try:
            out.settle(convert(finished.result()))
        except BaseException as exc:
            out.settle(error=exc)

    source.add_done_callback(done)
    return out
