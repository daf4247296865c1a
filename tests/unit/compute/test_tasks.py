"""The task service: records, futures, cancel from any process, retries, recovery, usage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from genesis_platform import Platform
from genesis_platform.catalog.tables import TaskRow
from genesis_platform.compute.protocols import Resources
from genesis_platform.compute.tasks import TaskInfo
from genesis_platform.errors import (
    ExecutorError,
    InvalidInput,
    NotFound,
    TaskFailed,
    TransientFailure,
)
from genesis_platform.testing import branin

FUNCTIONS = "genesis_platform.testing.functions"


def count_tasks(platform: Platform) -> int:
    with platform._db.session(write=False) as s:
        return int(s.scalar(select(func.count(TaskRow.id))) or 0)


def wait_for_state(platform: Platform, task_id: int, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (state := platform.tasks.get(task_id).state) not in states:
        assert time.monotonic() < deadline, f"task {task_id} stayed {state}"
        time.sleep(0.05)
    return state


def wait_for_task(platform: Platform, timeout: float = 30) -> TaskInfo:
    """The one task, once another process's record of it has been written."""
    deadline = time.monotonic() + timeout
    while not (tasks := platform.tasks.list()):
        assert time.monotonic() < deadline, "no task was recorded"
        time.sleep(0.02)
    [task] = tasks
    return task


def test_a_callable_returns_its_value_and_is_recorded(platform: Platform) -> None:
    future = platform.tasks.submit(
        "local", function=f"{FUNCTIONS}:branin", kwargs={"x": 1.0, "y": 2.0}, project="p1"
    )
    assert future.result(timeout=60) == pytest.approx(branin(1.0, 2.0))
    [task] = platform.tasks.list()
    assert task.state == "completed"
    assert task.output == pytest.approx(branin(1.0, 2.0))
    assert task.external_id.startswith("local:")
    assert task.attempts == 1 and task.project == "p1" and task.site == "local"
    assert task.submitted_at <= task.started_at <= task.finished_at  # type: ignore[operator]
    assert task.usage["core_seconds"] >= 0 and task.usage["wall_seconds"] >= 0
    assert task.spec.kwargs == {"x": 1.0, "y": 2.0}


def test_a_command_keeps_its_logs_and_exit_status(platform: Platform) -> None:
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    future = platform.tasks.submit(command=[sys.executable, "-c", code], name="hello")
    assert future.result(timeout=60) == 0
    [task] = platform.tasks.list()
    assert (task.name, task.state, task.exit_status) == ("hello", "completed", 0)
    assert "to stdout" in platform.tasks.logs(task.id)
    assert "to stderr" in platform.tasks.logs(task.id)


def test_a_failing_task_is_recorded_and_never_retried(platform: Platform) -> None:
    future = platform.tasks.submit(function=f"{FUNCTIONS}:always_fails", kwargs={"a": 1})
    with pytest.raises(TaskFailed, match="always_fails was called"):
        future.result(timeout=60)
    [task] = platform.tasks.list()
    assert task.state == "failed" and task.attempts == 1
    assert "RuntimeError: always_fails was called" in task.error


def test_a_transient_failure_is_retried_per_the_site_policy(platform: Platform) -> None:
    platform.sites.add("flaky", "local", {"retries": 2, "retry_backoff_s": 0.05})
    future = platform.tasks.submit("flaky", function=f"{FUNCTIONS}:exits_abruptly", kwargs={"a": 1})
    with pytest.raises(TransientFailure):
        future.result(timeout=120)
    [task] = platform.tasks.list()
    assert task.state == "failed"
    assert task.attempts == 3  # the first attempt and two retries


def test_every_attempt_of_a_retried_task_counts_in_its_usage(platform: Platform) -> None:
    platform.sites.add("flaky", "local", {"retries": 2, "retry_backoff_s": 0.05})
    future = platform.tasks.submit(
        "flaky", function=f"{FUNCTIONS}:sleep_then_exit_abruptly", kwargs={"seconds": 0.4}
    )
    with pytest.raises(TransientFailure):
        future.result(timeout=120)
    [task] = platform.tasks.list()
    assert task.attempts == 3
    # Three attempts of at least 0.4 s each, held on one core (estimated: none measured).
    assert task.usage["wall_seconds"] >= 3 * 0.4
    assert task.usage["core_seconds"] >= 3 * 0.4
    assert task.usage["estimated"] == 1.0
    assert platform.tasks.usage()[0].core_seconds == pytest.approx(task.usage["core_seconds"])


def test_cancel_a_running_task_from_this_process(platform: Platform, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = {"GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": "60"}
    future = platform.tasks.submit(function=f"{FUNCTIONS}:journaled", kwargs={"x": 1}, env=env)
    [task] = platform.tasks.list()
    wait_for_state(platform, task.id, {"active"})
    assert platform.tasks.cancel(task.id)
    with pytest.raises(CancelledError):
        future.result(timeout=30)
    assert wait_for_state(platform, task.id, {"canceled"}) == "canceled"
    assert not platform.tasks.cancel(task.id)  # already ended


def test_cancelling_the_future_cancels_the_task(platform: Platform, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    code = f"import time; open({str(marker)!r}, 'w').close(); time.sleep(60)"
    future = platform.tasks.submit(command=[sys.executable, "-c", code])
    while not marker.exists():
        time.sleep(0.02)
    assert future.cancel()
    [task] = platform.tasks.list()
    assert wait_for_state(platform, task.id, {"canceled"}) == "canceled"


SUBMITTER = """
import sys, time
from genesis_platform import Platform
if __name__ == "__main__":
    with Platform.open() as p:
        future = p.tasks.submit(command=[sys.executable, "-c", "import time; time.sleep(60)"])
        print("submitted", flush=True)
        try:
            future.result(timeout=120)
        except BaseException as exc:
            print("ended", type(exc).__name__, flush=True)
"""


def test_cancel_from_another_process(platform: Platform, genesis_home: Path) -> None:
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER], stdout=subprocess.PIPE, text=True
    )
    with submitter:
        assert submitter.stdout is not None
        assert submitter.stdout.readline().strip() == "submitted"
        task = wait_for_task(platform)
        wait_for_state(platform, task.id, {"active"})
        cli = subprocess.run(
            [sys.executable, "-m", "genesis_platform.cli", "task", "cancel", str(task.id)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert submitter.stdout.readline().strip() == "ended CancelledError"
        assert submitter.wait(timeout=30) == 0
    assert platform.tasks.get(task.id).state == "canceled"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"function": "no_colon"}, "function"),
        ({"function": "genesis_no_such_module:run"}, "function"),
        ({"function": f"{FUNCTIONS}:branin", "kwargs": {"x": object()}}, "kwargs"),
        ({"command": ["genesis-no-such-program-xyz"]}, "command"),
        ({"command": []}, "command"),
        ({}, "task"),
        ({"command": ["true"], "resources": Resources(gpus=1)}, "resources.gpus"),
        ({"command": ["true"], "resources": Resources(nodes=2)}, "resources.nodes"),
        ({"command": ["true"], "resources": Resources(cores=10_000)}, "resources.cores"),
        ({"command": ["true"], "resources": Resources(walltime_s=0)}, "resources.walltime_s"),
    ],
)
def test_bad_tasks_are_refused_before_anything_is_stored(
    platform: Platform, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        platform.tasks.submit("local", **arguments)  # type: ignore[arg-type]
    assert info.value.field == field
    assert count_tasks(platform) == 0


def test_an_unknown_site_is_refused(platform: Platform) -> None:
    with pytest.raises(NotFound, match="genesis site list"):
        platform.tasks.submit("nowhere", command=["true"])
    assert count_tasks(platform) == 0


def test_usage_is_summed_per_project_and_site(platform: Platform) -> None:
    platform.sites.add("second", "local", {"max_workers": 1})
    spin = "x = 0\nfor i in range(3_000_000): x += i"
    for project, site in [("a", "local"), ("a", "local"), ("b", "second")]:
        platform.tasks.submit(site, command=[sys.executable, "-c", spin], project=project).result(
            timeout=60
        )
    rows = {(r.project, r.site): r for r in platform.tasks.usage()}
    assert set(rows) == {("a", "local"), ("b", "second")}
    assert rows["a", "local"].tasks == 2 and rows["b", "second"].tasks == 1
    assert rows["a", "local"].core_seconds > rows["b", "second"].core_seconds > 0.01
    assert [r.site for r in platform.tasks.usage(project="b")] == ["second"]


VICTIM = """
import os, sys, time
from genesis_platform import Platform
if __name__ == "__main__":
    p = Platform.open()
    kind = sys.argv[1]
    if kind == "function":
        p.tasks.submit(function="genesis_platform.testing.functions:journaled", kwargs={"x": 2})
        while not os.path.exists(os.environ["GENESIS_TEST_JOURNAL"]):  # it has begun
            time.sleep(0.01)
    else:
        p.tasks.submit(command=[sys.executable, "-c", "import time; time.sleep(3)"])
    while p.tasks.list()[0].state != "active":  # its record says it runs
        time.sleep(0.01)
    print("submitted", flush=True)
    time.sleep(120)
"""


def run_victim(kind: str, env: dict[str, str]) -> None:
    """Start a process that submits one task, then kill it (SIGKILL) while the task runs."""
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, kind], stdout=subprocess.PIPE, text=True, env=env
    )
    with victim:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "submitted"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)


def test_recover_resubmits_a_callable_lost_with_its_process(
    platform: Platform, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, "GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": "1"}
    os.environ["GENESIS_TEST_JOURNAL"] = str(journal)  # for the resubmitted attempt
    try:
        run_victim("function", env)
        [task] = platform.tasks.list()
        assert task.state in {"queued", "active"}
        counts = platform.tasks.recover()
        assert counts == {"reattached": 0, "resubmitted": 1, "failed": 0, "deferred": 0}
        assert wait_for_state(platform, task.id, {"completed", "failed"}) == "completed"
    finally:
        del os.environ["GENESIS_TEST_JOURNAL"]
    recovered = platform.tasks.get(task.id)
    assert recovered.attempts == 2 and recovered.output == {"value": pytest.approx(2.89)}
    runs = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["pid"] != runs[1]["pid"]
    assert platform.tasks.recover() == {
        "reattached": 0,
        "resubmitted": 0,
        "failed": 0,
        "deferred": 0,
    }


def test_recover_fails_a_lost_command_rather_than_run_it_twice(platform: Platform) -> None:
    run_victim("command", dict(os.environ))
    [task] = platform.tasks.list()
    assert platform.tasks.recover() == {
        "reattached": 0,
        "resubmitted": 0,
        "failed": 1,
        "deferred": 0,
    }
    lost = platform.tasks.get(task.id)
    assert lost.state == "failed"
    assert "lost: the process that followed it" in lost.error


def test_follow_gives_a_finished_tasks_result_from_its_record(
    platform: Platform, genesis_home: Path
) -> None:
    spec_kwargs = {"x": 1.0, "y": 2.0}
    platform.tasks.submit(
        function=f"{FUNCTIONS}:branin", kwargs=spec_kwargs, name="site:local:trial-7.1"
    ).result(timeout=60)
    with Platform.open(genesis_home) as other:  # a restarted platform
        found = other.tasks.follow("site:local:trial-7.1")
        assert found is not None and found.done()
        result = found.result()
        assert result.output == pytest.approx(branin(1.0, 2.0))
        assert result.usage["core_seconds"] >= 0
        assert other.tasks.follow("site:local:trial-8.1") is None


def test_follow_of_a_lost_local_task_is_none_and_marks_it_failed(platform: Platform) -> None:
    run_victim("command", dict(os.environ))
    [task] = platform.tasks.list()
    assert platform.tasks.follow(task.name) is None
    lost = platform.tasks.get(task.id)
    assert lost.state == "failed" and "lost" in lost.error


STAGE = """
import csv, pathlib
def run():
    rows = list(csv.DictReader(open("data/electrolyte_screen.csv")))
    pathlib.Path("results").mkdir()
    pathlib.Path("results/count.txt").write_text(str(len(rows)))
    pathlib.Path("scratch.tmp").write_text("not kept")
    return len(rows)
"""


def test_inputs_are_staged_and_outputs_kept_and_registered(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(__file__).parents[3] / "examples" / "data" / "electrolyte_screen.csv"
    platform.datasets.add("screen", [source])
    module = tmp_path / "stagejob.py"
    module.write_text(STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    future = platform.tasks.submit(
        function="stagejob:run",
        inputs={"data": "screen@1"},
        outputs=["results/*.txt"],
        register_outputs="screen-counts",
    )
    rows = future.result(timeout=60)
    assert rows > 0
    [task] = platform.tasks.list()
    assert [o["path"] for o in task.outputs] == ["results/count.txt"]
    assert task.outputs_dataset == "screen-counts@1"
    version = platform.datasets.get("screen-counts")
    [kept] = version.files
    assert kept.path == "results/count.txt" and kept.digest == task.outputs[0]["digest"]
    assert platform._ctx.blobs.read_bytes(kept.digest) == str(rows).encode()
    assert "task" in platform.lineage.text("dataset", "screen-counts", 1)


def test_a_cancel_while_outputs_are_kept_leaves_the_task_completed(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeping, release = threading.Event(), threading.Event()
    keep_outputs = platform.tasks._keep_outputs

    def slow_keep_outputs(tracked: Any) -> Any:
        keeping.set()
        release.wait(30)
        return keep_outputs(tracked)

    monkeypatch.setattr(platform.tasks, "_keep_outputs", slow_keep_outputs)
    code = "import pathlib; pathlib.Path('out.txt').write_text('42')"
    future = platform.tasks.submit(command=[sys.executable, "-c", code], outputs=["*.txt"])
    try:
        assert keeping.wait(60), "the task's outputs were never kept"
        [task] = platform.tasks.list()
        assert not platform.tasks.cancel(task.id)  # its work is done: too late to cancel
    finally:
        release.set()
    assert future.result(timeout=60) == 0
    task = platform.tasks.get(task.id)
    assert task.state == "completed"
    assert [o["path"] for o in task.outputs] == ["out.txt"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"inputs": {"../up": "screen"}}, "inputs.../up"),
        ({"inputs": {"data": "no-such-dataset"}}, "inputs.data"),
        ({"inputs": {"data": "screen@x"}}, "inputs.data"),
        ({"outputs": ["/etc/*"]}, "outputs[0]"),
        ({"outputs": [""]}, "outputs[0]"),
        ({"register_outputs": "x"}, "register_outputs"),
    ],
)
def test_bad_files_are_refused_before_anything_runs(
    platform: Platform, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        platform.tasks.submit(command=["true"], **arguments)
    assert info.value.field == field
    assert count_tasks(platform) == 0


def orphan(platform: Platform, site: str, state: str, external_id: str = "") -> int:
    """A task record left by a process that has ended (its owner's pid does not exist)."""
    spec = {"command": ["true"], "kwargs": {}, "env": {}, "resources": {}}
    with platform._db.session() as s:
        row = TaskRow(
            site=site,
            name="left behind",
            spec=spec,
            state=state,
            external_id=external_id,
            owner=f"{socket.gethostname()}:999999999:1",
            submitted_by="someone",
        )
        s.add(row)
        s.flush()
        return row.id


def test_a_batch_task_without_a_job_id_is_not_resubmitted(platform: Platform) -> None:
    platform.sites.add("hpc", "slurm")
    task_id = orphan(platform, "hpc", "new")
    assert platform.tasks.recover()["failed"] == 1
    task = platform.tasks.get(task_id)
    assert task.state == "failed" and "not resubmitted" in task.error
    assert task.attempts == 0


def test_a_site_that_cannot_be_asked_defers_recovery(platform: Platform) -> None:
    task_id = orphan(platform, "removed-site", "queued", "slurm:12345")
    counts = platform.tasks.recover()
    assert counts["deferred"] == 1 and counts["failed"] == 0
    task = platform.tasks.get(task_id)
    assert task.state == "queued" and task.owner.endswith(":999999999:1")  # left for later


def test_callbacks_may_read_records_from_any_thread(platform: Platform) -> None:
    platform.sites.add("closed", "local")
    platform.sites.executor("closed").shutdown()  # refuses every task at dispatch
    seen: list[str] = []
    done = threading.Event()

    def read_records(future: Any) -> None:
        seen.extend(t.state for t in platform.tasks.list())
        done.set()

    future = platform.tasks.submit("closed", command=["true"])
    future.add_done_callback(read_records)
    assert done.wait(30), "a callback reading the records hung"
    assert seen == ["failed"]


def test_submitting_to_a_closed_service_fails_at_once(platform: Platform) -> None:
    platform.tasks.close()
    with pytest.raises(ExecutorError, match="closed"):
        platform.tasks.submit(command=["true"])


def test_follow_gives_the_whole_result_of_a_submitted_task(platform: Platform) -> None:
    output = platform.tasks.submit(
        function=f"{FUNCTIONS}:sleep_then_return", kwargs={"seconds": 0.5, "x": 1.0}, name="t-1"
    )
    followed = platform.tasks.follow("t-1")
    assert followed is not None
    result = followed.result(timeout=30)  # a TaskResult, not the bare output
    assert result.output == output.result(timeout=30)
    assert result.output["slept_s"] == 0.5
    assert result.usage["wall_seconds"] > 0
