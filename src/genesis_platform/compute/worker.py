"""Run one task on a compute node: ``python -m genesis_platform.compute.worker SPEC``.

A batch job (see :mod:`genesis_platform.compute.psij`) runs this module on the compute node.
``SPEC`` is a JSON file on the file system the node shares with the submitting machine,
written by :func:`write_spec`: the task in :meth:`TaskSpec.to_dict
<genesis_platform.compute.protocols.TaskSpec.to_dict>`'s form::

    {"version": 1, "task": {"function": "pkg.mod:f", "kwargs": {...}, "command": null,
     "env": {...}, "cwd": null, "resources": {"walltime_s": 60.0, ...}, ...}}

The worker runs the task and writes its outcome atomically (a temporary file, then
:func:`os.replace`) to :func:`outcome_path` of the spec, beside it::

    {"version": 1, "output": ..., "error": null, "traceback": "", "logs": "...",
     "usage": {"wall_seconds": 1.2, "core_seconds": 1.1}, "pid": 4242, "host": "node01"}

:func:`read_outcome` turns that file back into a
:class:`~genesis_platform.compute.protocols.TaskResult` or a
:class:`~genesis_platform.errors.TaskFailed`. Because the outcome is a file, the submitter
need not be alive when the task ends: a restarted platform finds it (re-attach).

Environment: the job inherits the submitter's environment (the batch system exports it), and
the worker adds the spec's ``env``; ``cwd`` (if set) is the working directory.

Callables run in this process, exactly as :class:`~genesis_platform.compute.local.LocalExecutor`
runs them in its pool workers (the same code: stdout and stderr captured, SIGALRM at the
walltime, usage as process time of the call). A callable stuck in C code past the walltime is
stopped by a watchdog thread ``walltime_s + 2`` s after the start: it writes the walltime
outcome and ends the process.

Commands also go through this worker rather than straight into the batch script, so that
both kinds of task behave alike on every site and as they do locally: the command runs in
its own session and its whole process group is killed at the walltime (batch systems only
count whole minutes), its interleaved stdout and stderr are the logs (last 64,000
characters), a program that cannot start fails the task with a message naming it, and usage
is measured with :func:`os.wait4` (``core_seconds`` is the CPU time of the command's process
tree as far as children were waited for, not cores x wall).

Exit status: 0 when the task succeeded, 3 when it failed (the outcome is written in both
cases), 2 when the spec cannot be read (no outcome). Any other status means the worker died
before writing the outcome (a crash, a signal).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genesis_platform.compute.local import (
    _WALLTIME_GRACE_S,
    _Call,
    _call_in_worker,
    _run_command,
)
from genesis_platform.compute.protocols import TaskResult, TaskSpec
from genesis_platform.errors import ExecutorError, TaskFailed

__all__ = [
    "EXIT_BAD_SPEC",
    "EXIT_FAILED",
    "EXIT_OK",
    "main",
    "outcome_path",
    "read_outcome",
    "run_spec",
    "write_spec",
]

SPEC_VERSION = 1
"""Version of the spec and outcome formats."""
EXIT_OK = 0
"""Exit status: the task succeeded and its outcome is written."""
EXIT_FAILED = 3
"""Exit status: the task failed and its outcome is written."""
EXIT_BAD_SPEC = 2
"""Exit status: the spec could not be read; no outcome."""


def outcome_path(spec: Path) -> Path:
    """Where the worker writes the outcome of ``spec``: ``task.json`` -> ``task.outcome.json``."""
    return spec.with_name(f"{spec.stem}.outcome.json")


def write_spec(path: Path, task: TaskSpec) -> None:
    """Write ``task`` as a worker spec at ``path`` (readable by its owner only).

    ``task`` must have been checked (exactly one of function and command, JSON kwargs).
    """
    _write_atomically(path, {"version": SPEC_VERSION, "task": task.to_dict()})


def read_outcome(path: Path, external_id: str = "") -> TaskResult:
    """The result written by the worker at ``path``.

    Raises:
        TaskFailed: The task failed (``traceback``, ``logs`` and ``usage`` attached).
        ExecutorError: The file is unreadable or not an outcome.
        FileNotFoundError: There is no outcome (yet).
    """
    try:
        outcome = json.loads(path.read_text(encoding="utf-8"))
        usage = {key: float(value) for key, value in outcome["usage"].items()}
        error, logs = outcome["error"], str(outcome["logs"])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExecutorError(f"the task's outcome {path} is unreadable: {exc}") from exc
    if error is not None:
        raise TaskFailed(
            str(error), traceback=str(outcome.get("traceback", "")), logs=logs, usage=usage
        )
    return TaskResult(outcome["output"], logs, usage, external_id)


def run_spec(spec_path: Path) -> bool:
    """Run the task of ``spec_path`` and write its outcome beside it; True if it succeeded.

    Raises:
        ExecutorError: The spec cannot be read (no outcome is written).
    """
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        if spec.get("version") != SPEC_VERSION:
            raise ValueError(f"unknown spec version {spec.get('version')!r}")
        task = TaskSpec.from_dict(spec["task"])
        env = {**os.environ, **{str(k): str(v) for k, v in task.env.items()}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExecutorError(f"cannot read the task spec {spec_path}: {exc}") from exc
    writer = _OutcomeWriter(outcome_path(spec_path))
    walltime = task.resources.walltime_s
    if task.command is not None:
        outcome = _run_command_task(task, env)
    else:
        assert task.function is not None  # exactly one is set (checked at submit)
        watchdog = None
        if walltime is not None:
            watchdog = threading.Timer(
                walltime + _WALLTIME_GRACE_S, _give_up, (writer, task.function, walltime)
            )
            watchdog.daemon = True
            watchdog.start()
        call = _Call(task.function, dict(task.kwargs), env, task.cwd, walltime)
        done = _call_in_worker(call)
        if watchdog is not None:
            watchdog.cancel()
        outcome = {
            "output": done.output,
            "error": done.error,
            "traceback": done.traceback,
            "logs": done.logs,
            "usage": {"wall_seconds": done.wall_seconds, "core_seconds": done.core_seconds},
        }
    writer.write(outcome)
    return outcome["error"] is None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the spec named by the only argument; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m genesis_platform.compute.worker SPEC.json", file=sys.stderr)
        return EXIT_BAD_SPEC
    try:
        return EXIT_OK if run_spec(Path(args[0])) else EXIT_FAILED
    except ExecutorError as exc:
        print(f"genesis worker: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC


def _run_command_task(task: TaskSpec, env: dict[str, str]) -> dict[str, Any]:
    assert task.command is not None
    try:
        result = _run_command(tuple(task.command), task, env)
    except TaskFailed as exc:
        return {
            "output": None,
            "error": exc.message,
            "traceback": exc.traceback,
            "logs": exc.details.get("logs", ""),
            "usage": exc.details.get("usage", {"wall_seconds": 0.0, "core_seconds": 0.0}),
        }
    return {
        "output": result.output,
        "error": None,
        "traceback": "",
        "logs": result.logs,
        "usage": dict(result.usage),
    }


class _OutcomeWriter:
    """Writes one outcome, once, whichever of the task and the watchdog finishes first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.perf_counter()
        self._lock = threading.Lock()
        self._written = False

    def write(self, outcome: dict[str, Any]) -> bool:
        """Write ``outcome`` unless one was written already; True if this call wrote it."""
        with self._lock:
            if self._written:
                return False
            record = {"version": SPEC_VERSION, **outcome}
            record.update(pid=os.getpid(), host=socket.gethostname())
            _write_atomically(self.path, record)
            self._written = True
            return True


def _give_up(writer: _OutcomeWriter, function: str, walltime: float) -> None:
    """Watchdog: the callable ignored SIGALRM (stuck in C code); fail it and end the process."""
    message = (
        f"walltime exceeded: {function} ran longer than {walltime} s and could not be "
        "interrupted; its process was ended"
    )
    usage = {
        "wall_seconds": time.perf_counter() - writer.start,
        "core_seconds": time.process_time(),
    }
    outcome = {"output": None, "error": message, "traceback": "", "logs": "", "usage": usage}
    if writer.write(outcome):
        os._exit(EXIT_FAILED)


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` so readers see the whole file or none (mode 0600)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(data, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
