"""The executor protocol: run tasks somewhere, get futures back.

Like :class:`concurrent.futures.Executor`, but tasks are data (:class:`TaskSpec`) so they can
be stored, sent to a remote site, and re-attached after a restart through their external id.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "Resources", "TaskResult", "TaskSpec"]


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
    """

    function: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    resources: Resources = field(default_factory=Resources)
    name: str = ""


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


@runtime_checkable
class Executor(Protocol):
    """Runs tasks and returns futures that resolve to :class:`TaskResult`.

    A future fails with :class:`~genesis_platform.errors.TaskFailed` when the task's own
    code raised (or its command exited non-zero) and with
    :class:`~genesis_platform.errors.ExecutorError` when the backend failed.
    """

    def submit(self, task: TaskSpec) -> Future[TaskResult]:
        """Start ``task`` and return its future at once."""
        ...

    def capacity(self) -> int:
        """How many more tasks could start right now (free slots)."""
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks; with ``wait``, block until running ones finish."""
        ...
