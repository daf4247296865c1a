"""What only the Ray executor does: clusters, Ray's own cancel, lost workers, its options.

Tests in this process share the test session's local Ray (``backend_ray``); those that need
a Ray connection of their own (start a local Ray, join a running cluster) run a script in a
subprocess, since Ray allows one connection per process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from genesis_platform.compute.protocols import Executor, Resources, TaskFuture, TaskSpec
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure
from tests.unit.compute import backend_ray

try:
    import ray  # noqa: F401  (only whether it imports)
except ImportError as exc:  # pragma: no cover - depends on the installation
    message = f"Ray is not installed ({exc}); pip install -e '.[ray]'"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

from genesis_platform.compute import ray as ray_module
from genesis_platform.compute.ray import RayExecutor

FUNCTIONS = "genesis_platform.testing.functions"
JOURNAL_ENV = "GENESIS_TEST_JOURNAL"


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    shared = backend_ray.make_executor(max_workers=2)
    yield shared
    shared.shutdown(wait=True)


def wait_for(path: Path, timeout: float = 60.0) -> str:
    """Block until ``path`` has content (a task has started); return it."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    time.sleep(0.05)  # the writer may be halfway through its line
    return path.read_text()


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def journaled(journal: Path, sleep_s: float = 60.0) -> TaskSpec:
    """A callable that writes its worker's pid to ``journal``, then sleeps ``sleep_s``."""
    env = {"GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": str(sleep_s)}
    return TaskSpec(function=f"{FUNCTIONS}:journaled", kwargs={"x": 1.0}, env=env)


# -- Ray's cancel and lost workers ------------------------------------------------------------


def test_cancel_a_running_callable_ends_its_worker(executor: Executor, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(journaled(journal))
    worker = json.loads(wait_for(journal))["pid"]
    assert executor.cancel(future.external_id)
    with pytest.raises(CancelledError):
        future.result(timeout=1)
    assert gone_within([worker], 10), "the Ray worker of a cancelled callable still runs"
    assert executor.attach(future.external_id) is future
    assert not executor.cancel(future.external_id)


def test_cancel_a_running_command_kills_its_process_tree(
    executor: Executor, tmp_path: Path
) -> None:
    marker = tmp_path / "pids"
    # The command starts a grandchild; a forced cancel (worker killed) would leave it behind.
    code = (
        "import os, subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}'); "
        "time.sleep(60)"
    )
    future = executor.submit(TaskSpec(command=(sys.executable, "-c", code)))
    pids = [int(pid) for pid in wait_for(marker).split()]
    assert future.cancel()
    # Sooner than the 5 s after which a stuck cancellation kills the worker instead.
    assert gone_within(pids, 4), "the command or its child outlived the cancel"
    assert executor.submit(TaskSpec(command=("true",))).result(timeout=60).output == 0


def test_a_worker_killed_from_outside_is_a_transient_failure(
    executor: Executor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(journaled(journal))
    worker = json.loads(wait_for(journal))["pid"]
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(TransientFailure, match="Ray lost the task") as info:
        future.result(timeout=60)
    assert info.value.details["external_id"] == future.external_id
    task = TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": 1.3})
    assert executor.submit(task).result(timeout=60).output == {"value": 1.0}


def test_walltime_ends_a_callable_stuck_in_c_code(executor: Executor) -> None:
    # system() waits for its child inside C, so SIGALRM's handler cannot run until it returns.
    task = TaskSpec(
        function="os:system", kwargs={"command": "sleep 8"}, resources=Resources(walltime_s=0.5)
    )
    start = time.monotonic()
    with pytest.raises(TaskFailed, match="walltime exceeded"):
        executor.submit(task).result(timeout=60)
    assert time.monotonic() - start < 15


def test_cores_are_ray_cpus(executor: Executor) -> None:
    # Two tasks that each take all of the local Ray's CPUs cannot run at once.
    whole = Resources(cores=backend_ray.LOCAL_CPUS)
    sleep = (sys.executable, "-c", "import time; time.sleep(0.4)")
    start = time.monotonic()
    futures = [executor.submit(TaskSpec(command=sleep, resources=whole)) for _ in range(2)]
    for future in futures:
        future.result(timeout=60)
    assert time.monotonic() - start >= 0.8


# -- how outcomes come back -------------------------------------------------------------------


def test_a_task_that_overtakes_older_ones_is_settled_without_waiting_for_them() -> None:
    # max_workers=1: with 4 tasks in flight the dispatcher waits for the oldest as a batch,
    # and finds the quick task only by polling the others.
    executor = backend_ray.make_executor(max_workers=1)
    slow = TaskSpec(function=f"{FUNCTIONS}:sleep_then_return", kwargs={"seconds": 20})
    slow_futures = [executor.submit(slow) for _ in range(backend_ray.LOCAL_CPUS - 1)]
    start = time.monotonic()
    quick = executor.submit(TaskSpec(function=f"{FUNCTIONS}:noop"))
    assert quick.result(timeout=60).output is None
    assert time.monotonic() - start < 5, "the quick task waited for the slow ones"
    assert not any(future.done() for future in slow_futures)
    for future in slow_futures:
        future.cancel()
    executor.shutdown(wait=True)


def test_many_tasks_in_flight_settle_in_batches_and_a_crash_fails_only_its_task() -> None:
    executor = backend_ray.make_executor(max_workers=2)
    # Far more than twice max_workers: the dispatcher waits for batches of the oldest.
    tasks = [TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": i / 10}) for i in range(60)]
    tasks[30] = TaskSpec(function=f"{FUNCTIONS}:exits_abruptly")
    futures = [executor.submit(task) for task in tasks]
    concurrent.futures.wait(futures, timeout=120)
    with pytest.raises(TransientFailure, match="Ray lost the task"):
        futures[30].result(timeout=0)
    for i, future in enumerate(futures):
        if i != 30:
            expected = (i / 10 - 0.3) ** 2
            assert future.result(timeout=0).output["value"] == pytest.approx(expected)
    assert executor.capacity() == 2
    executor.shutdown(wait=True)


def test_a_plain_call_and_a_call_with_kwargs_of_one_function(executor: Executor) -> None:
    # The first travels without an argument, the second with the task as bytes.
    plain = executor.submit(TaskSpec(function=f"{FUNCTIONS}:quadratic"))
    given = executor.submit(TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": 1.3}))
    assert plain.result(timeout=60).output == {"value": 0}
    assert given.result(timeout=60).output == {"value": pytest.approx(1.0)}


# -- bundles of short tasks -------------------------------------------------------------------


def journal_task(journal: Path, i: int) -> TaskSpec:
    """A short task that appends ``i`` to ``journal`` (so a test sees whether it ran)."""
    return TaskSpec(
        function=f"{FUNCTIONS}:journaled", kwargs={"i": i}, env={JOURNAL_ENV: str(journal)}
    )


def sleeper(seconds: float, **kwargs: float) -> TaskSpec:
    return TaskSpec(
        function=f"{FUNCTIONS}:sleep_then_return", kwargs={"seconds": seconds, **kwargs}
    )


@pytest.fixture
def lenient_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short call is one under 0.5 s, not 5 ms.

    A call's wall time is what counts, and on a loaded machine even a no-op's exceeds 5 ms
    now and then; these tests need to know which calls are short.
    """
    monkeypatch.setattr(ray_module, "_SHORT_S", 0.5)


def fill_ray(executor: Executor) -> list[TaskFuture]:
    """Put twice max_workers (1) long tasks in flight, so short ones wait in the executor."""
    return [executor.submit(sleeper(120)) for _ in range(2)]


def full_executor() -> tuple[Executor, list[TaskFuture]]:
    """An executor (max_workers 1) that has seen ``sleep_then_return`` be short, Ray full."""
    executor = backend_ray.make_executor(max_workers=1)
    executor.submit(sleeper(0)).result(timeout=60)
    return executor, fill_ray(executor)


def release(blockers: list[TaskFuture]) -> None:
    for blocker in blockers:
        blocker.cancel()


def journal_entries(journal: Path) -> list[int]:
    return sorted(json.loads(line)["params"]["i"] for line in journal.read_text().splitlines())


def test_short_tasks_wait_for_room_then_travel_in_bundles_each_with_its_outcome(
    lenient_short: None,
    tmp_path: Path,
) -> None:
    executor = backend_ray.make_executor(max_workers=1)
    assert isinstance(executor, RayExecutor)
    journal = tmp_path / "journal"
    executor.submit(journal_task(journal, -1)).result(timeout=60)  # now known to be short
    blockers = fill_ray(executor)
    futures = [executor.submit(journal_task(journal, i)) for i in range(40)]
    assert all(f.external_id.startswith("ray:held-") for f in futures)
    assert len({f.external_id for f in futures}) == 40
    assert executor.capacity() == 0
    assert executor.attach(futures[3].external_id) is futures[3]
    assert executor.cancel(futures[7].external_id)
    assert executor.attach(futures[7].external_id) is futures[7]
    time.sleep(0.3)  # less than a held task waits for room
    assert journal_entries(journal) == [-1], "a task ran while Ray had no room"
    release(blockers)
    for i, future in enumerate(futures):
        if i != 7:
            result = future.result(timeout=60)
            assert result.output == {"value": pytest.approx((i - 0.3) ** 2)}
            assert result.external_id == future.external_id
            assert result.usage["wall_seconds"] < 1
    assert futures[7].cancelled()
    tasks, bundles = executor.bundled
    assert tasks == 39
    assert bundles <= 20, "held tasks went one by one"
    concurrent.futures.wait(blockers, timeout=60)
    assert executor.capacity() == 1  # nothing held or in flight is counted any more
    executor.shutdown(wait=True)
    assert journal_entries(journal) == [-1, *(i for i in range(40) if i != 7)]
    assert executor.capacity() == 0


def test_a_held_task_goes_after_a_while_even_if_ray_stays_full(
    lenient_short: None,
) -> None:
    executor, blockers = full_executor()
    held = executor.submit(sleeper(0, a=2))
    assert held.external_id.startswith("ray:held-")
    # The test session's Ray has more CPUs than max_workers: the bundle runs beside them.
    assert held.result(timeout=60).output["slept_s"] == 0
    assert not any(blocker.done() for blocker in blockers)
    release(blockers)
    executor.shutdown(wait=True)


def test_what_ray_cannot_carry_is_refused_at_submit(
    lenient_short: None,
) -> None:
    class Local(str):  # JSON takes it; pickle cannot find it
        pass

    executor, blockers = full_executor()
    with pytest.raises(InvalidInput, match="kwargs"):  # would be held
        executor.submit(sleeper(0, a=Local("x")))  # type: ignore[arg-type]
    never_seen = TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": Local("x")})
    with pytest.raises(InvalidInput, match="kwargs"):  # would be sent alone
        executor.submit(never_seen)
    assert executor.capacity() == 0  # the two blockers only
    release(blockers)
    executor.shutdown(wait=True)


def test_only_functions_whose_calls_were_short_are_held(
    lenient_short: None, tmp_path: Path
) -> None:
    executor = backend_ray.make_executor(max_workers=1)
    blockers = fill_ray(executor)
    unseen = executor.submit(sleeper(0))  # never seen: sent to Ray's queue
    assert not unseen.external_id.startswith("ray:held-")
    release(blockers)
    unseen.result(timeout=60)
    blockers = fill_ray(executor)
    assert executor.submit(sleeper(0)).external_id.startswith("ray:held-")
    with_walltime = TaskSpec(
        function=f"{FUNCTIONS}:sleep_then_return",
        kwargs={"seconds": 0},
        resources=Resources(walltime_s=30),
    )
    assert not executor.submit(with_walltime).external_id.startswith("ray:held-")
    release(blockers)
    executor.submit(sleeper(2.0)).result(timeout=60)  # no longer short
    blockers = fill_ray(executor)
    assert not executor.submit(sleeper(0)).external_id.startswith("ray:held-")
    release(blockers)
    executor.shutdown(wait=True)


def test_without_bundles_every_task_is_sent(
    lenient_short: None, tmp_path: Path, executor: Executor
) -> None:
    alone = RayExecutor(max_workers=1, bundle=False)
    journal = tmp_path / "journal"
    alone.submit(journal_task(journal, 0)).result(timeout=60)
    blockers = fill_ray(alone)
    assert not alone.submit(journal_task(journal, 1)).external_id.startswith("ray:held-")
    release(blockers)
    alone.shutdown(wait=True)
    assert journal_entries(journal) == [0, 1]


def test_a_bundle_that_runs_on_after_a_cancel_is_ended_and_its_tasks_fail_transiently(
    lenient_short: None,
) -> None:
    executor, blockers = full_executor()
    first = executor.submit(sleeper(0, a=1))
    stuck = executor.submit(sleeper(120))  # a short function's call that is not short
    # Two more: with 4 held and room for 1 or 2 Ray tasks, bundles hold 2 or more.
    others = [executor.submit(sleeper(0, a=i)) for i in range(2)]
    assert all(f.external_id.startswith("ray:held-") for f in [first, stuck, *others])
    release(blockers)
    time.sleep(1.0)  # the bundle is sent, and runs ``first`` then ``stuck``
    start = time.monotonic()
    assert stuck.cancel()
    with pytest.raises(TransientFailure, match="bundle that was ended"):
        first.result(timeout=60)
    assert 1.5 < time.monotonic() - start < 30
    assert stuck.cancelled()
    for other in others:  # in the same bundle, or in one of their own
        with contextlib.suppress(TransientFailure):
            assert other.result(timeout=60).output["slept_s"] == 0
    assert executor.capacity() == 1
    blockers = fill_ray(executor)  # the function took long once: no longer bundled
    assert not executor.submit(sleeper(0)).external_id.startswith("ray:held-")
    release(blockers)
    executor.shutdown(wait=True)


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"address": "not an address"}, "address"),
        ({"address": "ray://"}, "address"),
        ({"address": "localhost:99999"}, "address"),
        ({"address": "http://localhost:6379"}, "address"),
        ({"address": 6379}, "address"),
        ({"num_cpus": 0}, "num_cpus"),
        ({"num_cpus": 1.5}, "num_cpus"),
        ({"num_cpus": True}, "num_cpus"),
        ({"address": "auto", "num_cpus": 2}, "num_cpus"),
        ({"max_workers": 0}, "max_workers"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        RayExecutor(**options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_an_address_where_nothing_listens_fails_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(ExecutorError, match="cannot reach"):
        RayExecutor(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - start < 5


# -- connections of their own, in subprocesses -----------------------------------------------

SCRIPT = """
import json, sys
import ray
from genesis_platform.compute.protocols import TaskSpec
from genesis_platform.compute.ray import RayExecutor

address = None if sys.argv[1] == "-" else sys.argv[1]
options = {"num_cpus": 1} if address is None else {}
executor = RayExecutor(address, **options)
task = TaskSpec(function="genesis_platform.testing.functions:quadratic", kwargs={"a": 1.3})
result = executor.submit(task).result(timeout=60)
command = executor.submit(TaskSpec(command=("echo", "hi"))).result(timeout=60)
executor.shutdown(wait=True)
print(json.dumps({
    "output": result.output,
    "external_id": result.external_id,
    "logs": command.logs,
    "max_workers": executor.max_workers,
    "connected_after_shutdown": ray.is_initialized(),
}))
"""


def run_script(address: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, address or "-"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """A Ray head node started by ``ray start --block`` in its own session."""

    def __init__(self) -> None:
        self.port, self.client_port = free_port(), free_port()
        # Short: Ray's socket paths live under it and must fit in 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="gr-", dir="/tmp")
        agent_ports = [free_port() for _ in range(4)]
        argv = [
            *("ray", "start", "--head", "--block", "--num-cpus", "2"),
            *("--port", str(self.port), "--ray-client-server-port", str(self.client_port)),
            *("--include-dashboard", "false", "--disable-usage-stats"),
            *("--dashboard-agent-listen-port", str(agent_ports[0])),
            *("--dashboard-agent-grpc-port", str(agent_ports[1])),
            *("--runtime-env-agent-port", str(agent_ports[2])),
            *("--metrics-export-port", str(agent_ports[3])),
            *("--temp-dir", self.temp_dir),
        ]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.output: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60):
            self.stop()
            raise AssertionError("ray start did not come up:\n" + "".join(self.output[-40:]))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "Ray runtime started" in line:
                self.ready.set()

    def alive(self) -> bool:
        status = subprocess.run(
            ["ray", "status", "--address", f"127.0.0.1:{self.port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return self.process.poll() is None and status.returncode == 0

    def stop(self) -> None:
        """Stop this cluster only (``ray stop`` would stop every Ray on the machine)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its processes
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster()
    yield started
    started.stop()


@pytest.mark.parametrize("scheme", ["gcs", "ray-client"])
def test_joins_a_running_cluster_and_leaves_it_running(cluster: Cluster, scheme: str) -> None:
    port = cluster.port if scheme == "gcs" else cluster.client_port
    address = f"127.0.0.1:{port}" if scheme == "gcs" else f"ray://127.0.0.1:{port}"
    report = run_script(address)
    assert report["output"] == {"value": 1.0}
    assert str(report["external_id"]).startswith("ray:")
    assert "hi" in str(report["logs"])
    assert report["max_workers"] == 2  # the cluster's CPUs
    assert report["connected_after_shutdown"] is False  # disconnected ...
    assert cluster.alive()  # ... and the cluster runs on


def test_starts_a_local_ray_and_stops_it() -> None:
    report = run_script(None)
    assert report["output"] == {"value": 1.0}
    assert report["max_workers"] == 1
    assert report["connected_after_shutdown"] is False
