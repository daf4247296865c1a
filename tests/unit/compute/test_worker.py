"""The compute-node worker, run as ``python -m genesis_platform.compute.worker SPEC``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesis_platform.compute.protocols import Resources, TaskSpec
from genesis_platform.compute.worker import (
    EXIT_BAD_SPEC,
    EXIT_FAILED,
    EXIT_OK,
    outcome_path,
    read_outcome,
    write_spec,
)
from genesis_platform.errors import ExecutorError, TaskFailed
from genesis_platform.testing import branin

FUNCTIONS = "genesis_platform.testing.functions"

STUCK_MODULE = '''
import signal, time

def stuck(seconds):
    """Block SIGALRM, as code inside a C extension effectively does, then sleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return {"value": 0.0}
'''


def run_worker(
    spec: Path | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genesis_platform.compute.worker", str(spec)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_task(tmp_path: Path, task: TaskSpec, **env: str) -> tuple[int, Path]:
    spec = tmp_path / "task.json"
    write_spec(spec, task)
    done = run_worker(spec, env)
    return done.returncode, outcome_path(spec)


def test_outcome_sits_beside_the_spec(tmp_path: Path) -> None:
    assert outcome_path(tmp_path / "task.json") == tmp_path / "task.outcome.json"


def test_callable_result_and_usage(tmp_path: Path) -> None:
    task = TaskSpec(function=f"{FUNCTIONS}:branin", kwargs={"x": 1.0, "y": 2.0})
    code, outcome = run_task(tmp_path, task)
    assert code == EXIT_OK
    result = read_outcome(outcome, external_id="slurm:1")
    assert result.output == pytest.approx(branin(1.0, 2.0))
    assert result.external_id == "slurm:1"
    assert set(result.usage) == {"wall_seconds", "core_seconds"}
    assert all(value >= 0 for value in result.usage.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task.json", "task.outcome.json"]
    assert (tmp_path / "task.json").stat().st_mode & 0o077 == 0  # private to its owner


def test_callable_sees_the_spec_env_and_cwd(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    task = TaskSpec(
        function=f"{FUNCTIONS}:journaled",
        kwargs={"x": 0.5},
        env={"GENESIS_TEST_JOURNAL": "journal.jsonl"},  # relative: to cwd
        cwd=str(tmp_path),
    )
    code, outcome = run_task(tmp_path, task)
    assert code == EXIT_OK
    assert read_outcome(outcome).output == {"value": pytest.approx(0.04)}
    assert '"x": 0.5' in journal.read_text()


def test_callable_failure_keeps_the_traceback(tmp_path: Path) -> None:
    code, outcome = run_task(tmp_path, TaskSpec(function=f"{FUNCTIONS}:always_fails"))
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match="RuntimeError: always_fails was called") as info:
        read_outcome(outcome)
    assert "Traceback" in info.value.traceback
    assert set(info.value.details["usage"]) == {"wall_seconds", "core_seconds"}


@pytest.mark.parametrize(
    "task",
    [
        TaskSpec(
            function=f"{FUNCTIONS}:sleep_then_return",
            kwargs={"seconds": 10},
            resources=Resources(walltime_s=0.3),
        ),
        TaskSpec(
            command=(sys.executable, "-c", "import time; time.sleep(10)"),
            resources=Resources(walltime_s=0.3),
        ),
    ],
    ids=["callable", "command"],
)
def test_walltime_ends_the_task(tmp_path: Path, task: TaskSpec) -> None:
    start = time.monotonic()
    code, outcome = run_task(tmp_path, task)
    assert time.monotonic() - start < 5
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match="walltime exceeded"):
        read_outcome(outcome)


def test_uninterruptible_callable_is_ended_after_the_walltime(tmp_path: Path) -> None:
    (tmp_path / "stuck_module.py").write_text(STUCK_MODULE)
    task = TaskSpec(
        function="stuck_module:stuck", kwargs={"seconds": 30}, resources=Resources(walltime_s=0.5)
    )
    start = time.monotonic()
    code, outcome = run_task(tmp_path, task, PYTHONPATH=str(tmp_path))
    assert time.monotonic() - start < 10  # walltime + 2 s grace, not 30 s
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match=r"walltime exceeded.*could not be interrupted"):
        read_outcome(outcome)


def test_bad_reference_fails_the_task(tmp_path: Path) -> None:
    code, outcome = run_task(tmp_path, TaskSpec(function=f"{FUNCTIONS}:no_such_function"))
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match="no attribute"):
        read_outcome(outcome)


def test_command_output_logs_and_env(tmp_path: Path) -> None:
    code_ = "import os, sys; print('hello', os.environ['GREETING']); print('oops', file=sys.stderr)"
    task = TaskSpec(command=(sys.executable, "-c", code_), env={"GREETING": "world"})
    code, outcome = run_task(tmp_path, task)
    assert code == EXIT_OK
    result = read_outcome(outcome)
    assert result.output == 0
    assert "hello world" in result.logs and "oops" in result.logs
    assert result.usage["core_seconds"] > 0  # the child's CPU time, from wait4


def test_command_failure(tmp_path: Path) -> None:
    task = TaskSpec(command=(sys.executable, "-c", "print('last words'); raise SystemExit(3)"))
    code, outcome = run_task(tmp_path, task)
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match="status 3") as info:
        read_outcome(outcome)
    assert "last words" in info.value.traceback


def test_missing_program(tmp_path: Path) -> None:
    code, outcome = run_task(tmp_path, TaskSpec(command=("genesis-no-such-program-xyz",)))
    assert code == EXIT_FAILED
    with pytest.raises(TaskFailed, match="genesis-no-such-program-xyz"):
        read_outcome(outcome)


@pytest.mark.parametrize("content", [None, "not json", '{"version": 99}', '{"version": 1}'])
def test_unreadable_spec_exits_2_without_outcome(tmp_path: Path, content: str | None) -> None:
    spec = tmp_path / "task.json"
    if content is not None:
        spec.write_text(content)
    done = run_worker(spec)
    assert done.returncode == EXIT_BAD_SPEC
    assert "cannot read the task spec" in done.stderr
    assert not outcome_path(spec).exists()


def test_usage_message_without_a_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genesis_platform.compute.worker"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_BAD_SPEC
    assert "usage" in done.stderr


def test_read_outcome_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_outcome(tmp_path / "missing.outcome.json")
    (tmp_path / "bad.outcome.json").write_text("{")
    with pytest.raises(ExecutorError, match="unreadable"):
        read_outcome(tmp_path / "bad.outcome.json")
