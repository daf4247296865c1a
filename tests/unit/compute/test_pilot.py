"""PilotExecutor on a real Slurm cluster: what the executor contract does not cover.

Pilots start on demand and leave when idle, scale up to ``pilot_max`` and never above, a
pilot killed with ``scancel`` fails its tasks as transient and a new pilot takes the rest,
a pilot near its walltime takes no new tasks, bad options name their field. The cluster is
the one ``scripts/slurm start`` runs (see ``backend_slurm``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genesis_platform.compute.pilot import PilotExecutor, drain_margin
from genesis_platform.compute.protocols import Resources, TaskResult, TaskSpec
from genesis_platform.compute.sites import SiteConfig, open_executor
from genesis_platform.errors import InvalidInput, TransientFailure
from tests.unit.compute.backend_slurm_pilot import make_executor

FUNCTIONS = "genesis_platform.testing.functions"


@pytest.fixture
def executors() -> Iterator[Callable[..., PilotExecutor]]:
    made: list[PilotExecutor] = []

    def make(**options: Any) -> PilotExecutor:
        made.append(make_executor(**options))
        return made[-1]

    yield make
    for each in made:
        each.shutdown(wait=False)


def queued_jobs(job_ids: set[str]) -> set[str]:
    """Which of ``job_ids`` (``slurm:<id>``) squeue lists as pending or running."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "PD,R,CF", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    listed = {f"slurm:{line.strip()}" for line in out.split()}
    return listed & job_ids


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.1)


def job_of(result: TaskResult) -> str:
    """The Slurm job a command printing ``$SLURM_JOB_ID`` ran in."""
    return f"slurm:{result.logs.split()[-1]}"


def slurm_job_id(seconds: float = 0.0) -> TaskSpec:
    code = f"import os, time; time.sleep({seconds}); print(os.environ['SLURM_JOB_ID'])"
    return TaskSpec(command=(sys.executable, "-c", code))


def test_a_pilot_starts_on_demand_and_leaves_when_idle(
    executors: Callable[..., PilotExecutor],
) -> None:
    executor = executors(max_workers=1, pilot_idle_timeout_s=1.0)
    assert executor.pilots() == []  # pilot_min 0: nothing runs before a task comes
    result = executor.submit(slurm_job_id()).result(timeout=60)
    [pilot] = executor.pilots()
    assert pilot.job_id == job_of(result)
    assert pilot.workers == 1 and pilot.host
    assert queued_jobs({pilot.job_id}) == {pilot.job_id}
    until(lambda: not executor.pilots(), 15, "the idle pilot leaving")
    until(lambda: not queued_jobs({pilot.job_id}), 15, "the pilot job ending")
    assert executor.submit(slurm_job_id()).result(timeout=60).output == 0  # a new one starts


def test_scaling_up_to_pilot_max_and_never_above(
    executors: Callable[..., PilotExecutor],
) -> None:
    executor = executors(max_workers=1, pilot_max=2)
    futures = [
        executor.submit(TaskSpec(function=f"{FUNCTIONS}:sleep_then_return", kwargs={"seconds": 1}))
        for _ in range(8)
    ]
    seen: set[str] = set()
    while not all(future.done() for future in futures):
        pilots = executor.pilots()
        assert len(pilots) <= 2
        seen |= {pilot.job_id for pilot in pilots if pilot.job_id}
        assert len(queued_jobs(seen)) <= 2
        time.sleep(0.1)
    assert all(future.result().output["slept_s"] == 1.0 for future in futures)
    assert len(seen) == 2


def test_scancel_fails_a_pilots_tasks_as_transient_and_a_new_pilot_takes_the_rest(
    executors: Callable[..., PilotExecutor], tmp_path: Path
) -> None:
    executor = executors(max_workers=1)
    journal = tmp_path / "journal.jsonl"
    env = {"GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": "60"}
    running = executor.submit(
        TaskSpec(function=f"{FUNCTIONS}:journaled", kwargs={"x": 1.0}, env=env)
    )
    # One worker holds two tasks (one next in line); the third waits in the interchange.
    quadratic = TaskSpec(function=f"{FUNCTIONS}:quadratic", kwargs={"a": 1.3})
    behind = [executor.submit(quadratic) for _ in range(2)]
    until(lambda: journal.exists(), 60, "the first task starting")
    [pilot] = executor.pilots()
    subprocess.run(["scancel", pilot.job_id.split(":")[1]], check=True)
    # "the pilot ... was lost", or its worker's death if the pilot heard of that first.
    with pytest.raises(TransientFailure):
        running.result(timeout=30)
    assert behind[-1].result(timeout=60).output == {"value": 1.0}
    [replacement] = executor.pilots()
    assert replacement.job_id != pilot.job_id


def test_a_pilot_near_its_walltime_takes_no_new_tasks(
    executors: Callable[..., PilotExecutor],
) -> None:
    walltime = 20.0
    executor = executors(max_workers=1, pilot_walltime_s=walltime)
    first = executor.submit(slurm_job_id()).result(timeout=60)
    # Still running when the pilot stops taking tasks, and done before its walltime.
    drain_at = walltime - drain_margin(walltime)
    straddling = executor.submit(slurm_job_id(seconds=drain_at + 1.0))
    until(
        lambda: [p.state for p in executor.pilots()] == ["draining"],
        walltime,
        "the pilot draining",
    )
    after = executor.submit(slurm_job_id())
    assert job_of(straddling.result(timeout=30)) == job_of(first)  # allowed to finish
    assert job_of(after.result(timeout=60)) != job_of(first)  # the next pilot took it
    with pytest.raises(InvalidInput) as info:  # no pilot could run it
        executor.submit(TaskSpec(command=("true",), resources=Resources(walltime_s=drain_at + 1)))
    assert info.value.field == "resources.walltime_s"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"pilot_max": 0}, "pilot_max"),
        ({"pilot_max": 2, "pilot_min": 3}, "pilot_min"),
        ({"pilot_min": -1}, "pilot_min"),
        ({"pilot_workers": 0}, "pilot_workers"),
        ({"pilot_idle_timeout_s": 0}, "pilot_idle_timeout_s"),
        ({"pilot_idle_timeout_s": "inf"}, "pilot_idle_timeout_s"),
        ({"pilot_walltime_s": 5}, "pilot_walltime_s"),
        ({"pilot_address": "two words"}, "pilot_address"),
        ({"pilot_address": "host:1234"}, "pilot_address"),
    ],
)
def test_bad_pilot_options_name_the_field(
    tmp_path: Path, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        SiteConfig.create("hpc", "slurm", {"pilot": True, **options})
    assert info.value.field == f"options.{field}"
    typed = {key: float(value) if value == "inf" else value for key, value in options.items()}
    with pytest.raises(InvalidInput) as info:
        PilotExecutor("slurm", work_dir=tmp_path, **typed)
    assert info.value.field == field


def test_a_site_in_pilot_mode_opens_a_pilot_executor(tmp_path: Path) -> None:
    config = SiteConfig.create(
        "hpc", "slurm", {"pilot": "true", "pilot_max": "3", "pilot_workers": "2"}
    )
    assert SiteConfig.from_dict(config.to_dict()) == config
    executor = open_executor(config, tmp_path)
    try:
        assert isinstance(executor, PilotExecutor)
        assert executor.work_dir == tmp_path / "sites" / "hpc"
        assert executor.capacity() == 6  # 3 pilots of 2 workers, none started yet
        assert executor.pilots() == []
    finally:
        executor.shutdown()
