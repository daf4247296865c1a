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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "Resources", "TaskFuture", "TaskResult", "TaskSpec"]


@dataclass(frozen=True)
class Resources:
    """What a task asks of its site.

    Attributes:
        cores: CPU cores.
        gpus: GPUs.
        memory_mb: Memory in MiB, or None for the site's default.
        walltime_s: Wall-time limit in seconds, or None for no limit.
    """

    cores: int = 1
    gpus: int = 0
    memory_mb: int | None = None
    walltime_s: float | None = None


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


class TaskFuture(Future[TaskResult]):
    """The future of one submitted task.

    Unlike a plain :class:`~concurrent.futures.Future`, it stays pending while the task runs,
    so :meth:`cancel` works until the task is done: it marks the future cancelled and asks
    the executor to stop the task wherever it is.

    Args:
        external_id: The backend's id of the task.
        canceller: Called with ``external_id`` when the future is cancelled.
    """

    def __init__(
        self, external_id: str, canceller: Callable[[str], object] | None = None
    ) -> None:
        super().__init__()
        self.external_id = external_id
        self._canceller = canceller
        self._settle_lock = threading.RLock()

    def cancel(self) -> bool:
        """Cancel the task, queued or running. False if it had already finished."""
        with self._settle_lock:
            if not super().cancel():
                return False
        if self._canceller is not None:
            self._canceller(self.external_id)
        return True

    def settle(
        self, result: TaskResult | None = None, error: BaseException | None = None
    ) -> bool:
        """Resolve with ``result`` or ``error``; False (and no change) if already done."""
        with self._settle_lock:
            if self.done():
                return False
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)  # type: ignore[arg-type]
            return True


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
