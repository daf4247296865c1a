"""PsijExecutor on a real Slurm cluster: what the executor contract does not cover.

Job ids, cancel and ``scancel`` from outside, re-attach after the submitting process died,
the batch time limit, failures of the worker and of the batch system, bad options. The
cluster is the one ``scripts/slurm start`` runs (see ``backend_slurm``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import pytest

from genesis_platform.compute.protocols import Executor, Resources, TaskResult, TaskSpec
from genesis_platform.compute.psij import PsijExecutor
from genesis_platform.errors import ExecutorError, InvalidInput, TaskFailed, TransientFailure
from tests.unit.compute.backend_slurm import POLL_INTERVAL_S, make_executor, require_slurm

FUNCTIONS = "genesis_platform.testing.functions"


@pytest.fixture(scope="module")
def executor() -> Iterator[PsijExecutor]:
    shared = make_executor(max_workers=4)
    yield shared
    shared.shutdown(wait=True)


def started_callable(journal: Path, seconds: float = 60.0) -> TaskSpec:
    """A callable that appends its pid to ``journal`` when it starts, then sleeps."""
    env = {"GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": str(seconds)}
    return TaskSpec(function=f"{FUNCTIONS}:journaled", kwargs={"x": 1.0}, env=env, name="nap")


def wait_for(path: Path, future: Future[TaskResult], timeout: float = 60.0) -> None:
    """Block until ``path`` has content (the task started); raise the task's error if it ended."""
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if future.done():
            raise AssertionError(f"{path} never appeared: the task ended ({future.result()})")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def scontrol(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields (first value of each name)."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    fields: dict[str, str] = {}
    for word in out.split():
        name, _, value = word.partition("=")
        fields.setdefault(name, value)
    return fields


def slurm_state(job_id: str, final: bool = True, timeout: float = 30.0) -> str:
    """The job's Slurm state, waiting (if ``final``) until it leaves PENDING/RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        state = scontrol(job_id)["JobState"]
        if not final or state not in {"PENDING", "RUNNING", "COMPLETING"}:
            return state
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.1)


def test_is_an_executor(executor: PsijExecutor) -> None:
    assert isinstance(executor, Executor)
    assert executor.max_jobs == 4


def test_external_id_is_the_slurm_job_id(executor: PsijExecutor) -> None:
    task = TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": 1.3}, name="my quadratic")
    future = executor.submit(task)
    kind, _, job_id = future.external_id.partition(":")
    assert kind == "slurm" and job_id.isdigit()
    job = scontrol(job_id)  # exists as soon as submit returns
    assert job["JobId"] == job_id
    assert job["JobName"] == "my_quadratic"
    assert future.result(timeout=60).external_id == future.external_id
    assert slurm_state(job_id) == "COMPLETED"


def test_slurm_time_limit_is_walltime_plus_a_margin(executor: PsijExecutor) -> None:
    timed = executor.submit(
        TaskSpec(command=("true",), resources=Resources(walltime_s=30.5, cores=2))
    )
    untimed = executor.submit(TaskSpec(command=("true",)))
    job = scontrol(timed.external_id.split(":")[1])
    assert job["TimeLimit"] == "00:02:00"  # 30.5 s + 60 s, in Slurm's whole minutes
    assert job["NumCPUs"] == "2"
    assert scontrol(untimed.external_id.split(":")[1])["TimeLimit"] == "UNLIMITED"
    timed.result(timeout=60), untimed.result(timeout=60)


def test_cancel_a_running_job(executor: PsijExecutor, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(started_callable(journal))
    wait_for(journal, future)
    assert future.cancel()
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=1)
    assert slurm_state(future.external_id.split(":")[1]) == "CANCELLED"
    assert not executor.cancel(future.external_id)


def test_scancel_from_outside_is_a_transient_failure(
    executor: PsijExecutor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(started_callable(journal))
    wait_for(journal, future)
    subprocess.run(["scancel", future.external_id.split(":")[1]], check=True)
    with pytest.raises(TransientFailure, match="cancelled outside Genesis"):
        future.result(timeout=30)


def test_a_worker_killed_from_outside_is_a_transient_failure(
    executor: PsijExecutor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(started_callable(journal))
    wait_for(journal, future)
    os.kill(int(journal.read_text().split('"pid": ')[1].split("}")[0]), signal.SIGKILL)
    with pytest.raises(TransientFailure, match="killed by SIGKILL"):
        future.result(timeout=30)


def test_attach_after_the_submitting_process_died(tmp_path: Path) -> None:
    require_slurm()
    work_dir = tmp_path / "site"
    submitter = textwrap.dedent(
        f"""
        import os
        from genesis_platform.compute.protocols import TaskSpec
        from genesis_platform.compute.psij import PsijExecutor
        executor = PsijExecutor("slurm", work_dir={str(work_dir)!r})
        task = TaskSpec(
            function="{FUNCTIONS}:sleep_then_return", kwargs={{"seconds": 1.5, "a": 1.3}}
        )
        print(executor.submit(task).external_id, flush=True)
        os._exit(0)  # dies at once: no shutdown, no polling
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", submitter], capture_output=True, text=True, timeout=60, check=True
    )
    external_id = done.stdout.strip()
    assert slurm_state(external_id.split(":")[1], final=False) in {"PENDING", "RUNNING"}
    with PsijExecutor("slurm", work_dir=work_dir, poll_interval_s=POLL_INTERVAL_S) as fresh:
        future = fresh.attach(external_id)
        assert future is not None and future.external_id == external_id
        assert fresh.capacity() == fresh.max_jobs - 1
        result = future.result(timeout=60)
        assert result.output == {"value": 1.0, "slept_s": 1.5}
        assert result.external_id == external_id
        assert fresh.capacity() == fresh.max_jobs
        # Long done: the outcome is read at once, without asking Slurm.
        again = fresh.attach(external_id)
        assert again is not None and again.done()
        assert again.result().output == result.output


def test_attach_after_shutdown_without_waiting(tmp_path: Path) -> None:
    first = make_executor(max_workers=2)
    future = first.submit(TaskSpec(function=f"{FUNCTIONS}:always_fails"))
    first.shutdown(wait=False)
    assert first.capacity() == 0
    second = PsijExecutor("slurm", work_dir=first.work_dir, poll_interval_s=POLL_INTERVAL_S)
    attached = second.attach(future.external_id)
    assert attached is not None
    with pytest.raises(TaskFailed, match="always_fails was called") as info:
        attached.result(timeout=60)
    assert "Traceback" in info.value.traceback
    with pytest.raises(TaskFailed):  # the first executor's future still settles
        future.result(timeout=60)
    second.shutdown()


def test_attach_of_foreign_ids(executor: PsijExecutor) -> None:
    assert executor.attach("slurm:999999999") is None  # not a task of this work dir
    assert executor.attach("pbs:12.server") is None  # another batch system
    for bad in ("12345", "slurm:", "slurm:1;rm"):
        with pytest.raises(InvalidInput) as info:
            executor.attach(bad)
        assert info.value.field == "external_id"


def test_cancel_of_an_attached_job(executor: PsijExecutor, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    future = executor.submit(started_callable(journal))
    other = PsijExecutor("slurm", work_dir=executor.work_dir, poll_interval_s=POLL_INTERVAL_S)
    attached = other.attach(future.external_id)
    assert attached is not None
    wait_for(journal, future)
    assert other.cancel(future.external_id)
    assert attached.cancelled()
    assert slurm_state(future.external_id.split(":")[1]) == "CANCELLED"
    with pytest.raises(TransientFailure):  # to the submitter, someone else cancelled it
        future.result(timeout=30)
    other.shutdown()


def test_batch_system_refusal_is_an_executor_error(tmp_path: Path) -> None:
    executor = make_executor(queue="no-such-partition")
    with pytest.raises(ExecutorError, match="refused the job") as info:
        executor.submit(TaskSpec(command=("true",)))
    assert "partition" in str(info.value).lower()
    assert executor.capacity() == executor.max_jobs
    executor.shutdown()


def test_a_worker_that_cannot_start_is_an_executor_error() -> None:
    executor = make_executor(python="/no/such/python")
    with pytest.raises(ExecutorError) as info:
        executor.submit(TaskSpec(command=("true",))).result(timeout=60)
    assert not isinstance(info.value, TaskFailed | TransientFailure)
    assert "/no/such/python" in str(info.value)
    executor.shutdown()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"kind": "sge"}, "kind"),
        ({"poll_interval_s": 0}, "poll_interval_s"),
        ({"poll_interval_s": -1.0}, "poll_interval_s"),
        ({"poll_interval_s": math.nan}, "poll_interval_s"),
        ({"poll_interval_s": "1"}, "poll_interval_s"),
        ({"poll_interval_s": True}, "poll_interval_s"),
        ({"max_jobs": 0}, "max_jobs"),
        ({"max_workers": -2}, "max_workers"),
    ],
)
def test_bad_options_name_the_field(tmp_path: Path, options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        PsijExecutor(**{"work_dir": tmp_path, **options})
    assert info.value.field == field


def test_flux_without_flux_is_an_executor_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("flux") is not None:
        pytest.skip("Flux is installed")
    with pytest.raises(ExecutorError, match="flux"):
        PsijExecutor("flux", work_dir=tmp_path)
