"""The executor contract, run over every compute backend.

``local`` is built in. Every other backend ``NAME`` has a module ``backend_NAME`` beside this
file with ``make_executor(max_workers: int) -> Executor``; it starts (or finds) the real
service the backend needs, and skips with a message saying how to start it when the service
is missing, except under ``CI=true``, where a missing service fails the test.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from genesis_platform.compute.local import LocalExecutor, resolve_function
from genesis_platform.compute.protocols import (
    Executor,
    Resources,
    TaskFuture,
    TaskResult,
    TaskSpec,
)
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure
from genesis_platform.testing import branin

FUNCTIONS = "genesis_platform.testing.functions"
BACKENDS = ["local", "ray", "slurm", "slurm_pilot"]

MakeExecutor = Callable[..., Executor]


def make_executor(backend: str, max_workers: int = 2) -> Executor:
    if backend == "local":
        return LocalExecutor(max_workers=max_workers)
    module = importlib.import_module(f"tests.unit.compute.backend_{backend}")
    executor: Executor = module.make_executor(max_workers=max_workers)
    return executor


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def executor(backend: str) -> Iterator[Executor]:
    """One executor shared by the module's tests (worker start-up is paid once)."""
    shared = make_executor(backend)
    yield shared
    shared.shutdown(wait=True)


@pytest.fixture
def new_executor(backend: str) -> Iterator[MakeExecutor]:
    """Fresh executors for tests that shut them down or count their slots."""
    made: list[Executor] = []

    def make(**options: int) -> Executor:
        made.append(make_executor(backend, **options))
        return made[-1]

    yield make
    for each in made:
        each.shutdown(wait=True)


def call(function: str, walltime_s: float | None = None, **kwargs: object) -> TaskSpec:
    return TaskSpec(
        function=f"{FUNCTIONS}:{function}",
        kwargs=kwargs,
        resources=Resources(walltime_s=walltime_s),
    )


def python(code: str, walltime_s: float | None = None, **env: str) -> TaskSpec:
    return TaskSpec(
        command=(sys.executable, "-c", code), env=env, resources=Resources(walltime_s=walltime_s)
    )


def test_is_an_executor(executor: Executor) -> None:
    assert isinstance(executor, Executor)


def test_callable_result(executor: Executor) -> None:
    result = executor.submit(call("branin", x=1.0, y=2.0)).result(timeout=60)
    assert isinstance(result, TaskResult)
    assert result.output == pytest.approx(branin(1.0, 2.0))
    assert result.external_id
    assert set(result.usage) >= {"wall_seconds", "core_seconds"}
    assert all(v >= 0 and math.isfinite(v) for v in result.usage.values())


def test_callable_gets_its_kwargs(executor: Executor) -> None:
    task = call("quadratic", a=0.3, b=1.3, c=-0.7, label="ignored")
    assert executor.submit(task).result(timeout=60).output == pytest.approx({"value": 2.0})


def test_callable_exception_fails_with_the_remote_traceback(executor: Executor) -> None:
    future = executor.submit(call("always_fails", a=1))
    with pytest.raises(TaskFailed, match="RuntimeError: always_fails was called") as info:
        future.result(timeout=60)
    assert "Traceback" in info.value.traceback
    assert "always_fails" in info.value.traceback


def test_callable_sees_the_submitters_environment(
    executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("GENESIS_TEST_JOURNAL", str(journal))
    executor.submit(call("journaled", x=0.5)).result(timeout=60)
    task = TaskSpec(
        function=f"{FUNCTIONS}:journaled",
        kwargs={"x": 0.7},
        env={"GENESIS_TEST_JOURNAL": str(tmp_path / "other.jsonl")},
    )
    executor.submit(task).result(timeout=60)
    [line] = journal.read_text().splitlines()
    assert json.loads(line)["params"] == {"x": 0.5}
    assert json.loads((tmp_path / "other.jsonl").read_text())["params"] == {"x": 0.7}


def test_a_crashed_worker_fails_its_task_and_the_executor_goes_on(
    new_executor: MakeExecutor,
) -> None:
    executor = new_executor(max_workers=1)
    with pytest.raises(TransientFailure):
        executor.submit(call("exits_abruptly", a=1)).result(timeout=60)
    assert executor.submit(call("quadratic", a=1.3)).result(timeout=60).output == {"value": 1.0}


def test_callable_walltime_is_enforced(executor: Executor) -> None:
    start = time.monotonic()
    future = executor.submit(call("sleep_then_return", walltime_s=0.3, seconds=10))
    with pytest.raises(TaskFailed, match="walltime exceeded"):
        future.result(timeout=30)
    assert time.monotonic() - start < 5
    assert executor.submit(call("quadratic", a=0.3)).result(timeout=60).output == {"value": 0.0}


def test_command_success_captures_output(executor: Executor) -> None:
    code = "import os, sys; print('hello', os.environ['GREETING']); print('oops', file=sys.stderr)"
    result = executor.submit(python(code, GREETING="world")).result(timeout=60)
    assert result.output == 0
    assert "hello world" in result.logs and "oops" in result.logs
    assert result.external_id
    assert set(result.usage) >= {"wall_seconds", "core_seconds"}


def test_command_failure_reports_status_and_log_tail(executor: Executor) -> None:
    future = executor.submit(python("print('last words'); raise SystemExit(3)"))
    with pytest.raises(TaskFailed, match="status 3") as info:
        future.result(timeout=60)
    assert "last words" in info.value.traceback


def test_command_walltime_kills_it(executor: Executor) -> None:
    start = time.monotonic()
    future = executor.submit(python("import time; time.sleep(10)", walltime_s=0.3))
    with pytest.raises(TaskFailed, match="walltime exceeded"):
        future.result(timeout=30)
    assert time.monotonic() - start < 5


def test_missing_program_fails_the_task(executor: Executor) -> None:
    future = executor.submit(TaskSpec(command=("genesis-no-such-program-xyz",)))
    with pytest.raises(TaskFailed, match="genesis-no-such-program-xyz"):
        future.result(timeout=60)


def test_capacity_counts_free_slots(new_executor: MakeExecutor) -> None:
    executor = new_executor(max_workers=2)
    assert executor.capacity() == 2
    futures = [executor.submit(python("import time; time.sleep(0.3)")) for _ in range(3)]
    assert executor.capacity() == 0
    for future in futures:
        future.result(timeout=60)
    assert executor.capacity() == 2


def test_tasks_run_in_parallel(new_executor: MakeExecutor) -> None:
    executor = new_executor(max_workers=2)
    code = "import time; print(time.time()); time.sleep(1.0); print(time.time())"
    futures = [executor.submit(python(code)) for _ in range(2)]
    (start_a, end_a), (start_b, end_b) = (
        map(float, future.result(timeout=120).logs.split()) for future in futures
    )
    assert start_a < end_b and start_b < end_a  # the two runs overlapped


def test_shutdown_waits_then_refuses_new_tasks(new_executor: MakeExecutor) -> None:
    executor = new_executor(max_workers=1)
    running = executor.submit(python("import time; time.sleep(0.2)"))
    executor.shutdown(wait=True)
    assert running.done() and running.result().output == 0
    assert executor.capacity() == 0
    with pytest.raises(ExecutorError):
        executor.submit(call("quadratic", a=1.0))


@pytest.mark.parametrize(
    "reference",
    [
        "no_colon_here",
        "too:many:colons",
        ":function",
        f"{FUNCTIONS}:",
        "not a module:f",
        "genesis_no_such_module_xyz:run",
        f"{FUNCTIONS}:no_such_function",
        f"{FUNCTIONS}:JOURNAL_ENV",
    ],
)
def test_bad_references_name_the_field(executor: Executor, reference: str) -> None:
    with pytest.raises(InvalidInput) as info:
        executor.submit(TaskSpec(function=reference))
    assert info.value.field == "function"
    assert "package.module:function" in str(info.value)
    with pytest.raises(InvalidInput):
        resolve_function(reference)


def test_resolve_function_returns_the_callable() -> None:
    assert resolve_function(f"{FUNCTIONS}:branin") is branin


def test_kwargs_must_be_json(executor: Executor) -> None:
    with pytest.raises(InvalidInput) as info:
        executor.submit(call("quadratic", a=object()))
    assert info.value.field == "kwargs"


@pytest.mark.parametrize(
    "task",
    [
        TaskSpec(),
        TaskSpec(function=f"{FUNCTIONS}:quadratic", command=("true",)),
        TaskSpec(command=()),
    ],
)
def test_malformed_tasks_are_refused(executor: Executor, task: TaskSpec) -> None:
    with pytest.raises(InvalidInput):
        executor.submit(task)


# -- external ids, cancel, attach -------------------------------------------------------------


STARTUP_TIMEOUT_S = 180.0
"""How long a task may take to start. A second here, but a batch scheduler on a slow, busy CI
machine has taken over 60 s to start a job that needs the whole node."""


def wait_for(path: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Block until ``path`` exists (a task has started)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared{batch_queue()}"
        time.sleep(0.02)


def batch_queue() -> str:
    """The Slurm queue, for a failure's message ("" where no cluster is in use)."""
    if "SLURM_CONF" not in os.environ or shutil.which("squeue") is None:
        return ""
    answer = subprocess.run(
        ["squeue", "-o", "%i %T %C %M %r %j"], capture_output=True, text=True, timeout=30
    )
    return f"; squeue:\n{answer.stdout}{answer.stderr}"


def started_callable(journal: Path, seconds: float = 60.0) -> TaskSpec:
    """A callable that writes ``journal`` when it starts, then sleeps ``seconds``."""
    env = {"GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": str(seconds)}
    return TaskSpec(function=f"{FUNCTIONS}:journaled", kwargs={"x": 1.0}, env=env)


def started_command(
    marker: Path, seconds: float = 60.0, resources: Resources | None = None
) -> TaskSpec:
    """A command that writes its pid to ``marker`` when it starts, then sleeps ``seconds``."""
    code = (
        f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); "
        f"time.sleep({seconds})"
    )
    return TaskSpec(command=(sys.executable, "-c", code), resources=resources or Resources())


def node_filling(backend: str) -> Resources:
    """Resources that leave no room for a second task, where the backend itself schedules
    by cores (Ray, Slurm) rather than by ``max_workers``.

    A backend module says how many cores that takes with ``blocking_cores()``.
    """
    if backend == "local":
        return Resources()
    module = importlib.import_module(f"tests.unit.compute.backend_{backend}")
    blocking = getattr(module, "blocking_cores", None)
    return Resources(cores=blocking()) if blocking else Resources()


def process_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1]
        except (FileNotFoundError, ProcessLookupError):  # it ended between the two looks
            return True
        if state.startswith("Z"):
            return True  # a zombie has stopped running
        time.sleep(0.05)
    return False


def test_external_id_is_known_when_submit_returns(executor: Executor) -> None:
    future = executor.submit(call("quadratic", a=0.3))
    assert isinstance(future, TaskFuture)
    assert future.external_id
    assert future.result(timeout=60).external_id == future.external_id
    other = executor.submit(call("quadratic", a=0.3))
    assert other.external_id != future.external_id
    other.result(timeout=60)


def test_cancel_a_running_callable_frees_its_slot(
    new_executor: MakeExecutor, tmp_path: Path
) -> None:
    executor = new_executor(max_workers=1)
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(started_callable(journal))
    wait_for(journal)
    start = time.monotonic()
    assert executor.cancel(future.external_id)
    assert future.cancelled()
    done, _ = concurrent.futures.wait([future], timeout=5)  # waiters hear of the cancel
    assert future in done
    with pytest.raises(CancelledError):
        future.result(timeout=1)
    after = executor.submit(call("quadratic", a=1.3))
    assert after.result(timeout=60).output == {"value": 1.0}
    assert time.monotonic() - start < 30  # not after the 60 s sleep
    assert not executor.cancel(after.external_id)  # finished: nothing to cancel


def test_cancel_a_running_command_kills_it(executor: Executor, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    future = executor.submit(started_command(marker))
    wait_for(marker)
    pid = int(marker.read_text())
    assert future.cancel()
    assert future.cancelled()
    assert process_gone(pid)


def test_cancel_a_queued_task_means_it_never_runs(
    new_executor: MakeExecutor, tmp_path: Path, backend: str
) -> None:
    executor = new_executor(max_workers=1)
    first = executor.submit(started_command(tmp_path / "first", 60, node_filling(backend)))
    queued = executor.submit(started_command(tmp_path / "queued", seconds=0))
    assert executor.cancel(queued.external_id)
    wait_for(tmp_path / "first")
    assert executor.cancel(first.external_id)
    last = executor.submit(python("print('after')"))
    assert "after" in last.result(timeout=STARTUP_TIMEOUT_S).logs
    assert not (tmp_path / "queued").exists()
    assert queued.cancelled()


def test_cancel_of_an_unknown_task_is_false(executor: Executor) -> None:
    assert not executor.cancel("no-such-task-id")


def test_attach_follows_a_task_of_this_executor(executor: Executor, tmp_path: Path) -> None:
    future = executor.submit(call("sleep_then_return", seconds=0.3, a=1.3))
    attached = executor.attach(future.external_id)
    assert attached is not None
    assert attached.result(timeout=60).output == {"value": 1.0, "slept_s": 0.3}
