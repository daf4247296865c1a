"""Sites behind the task service: recovery after a crash, and the limits of batch nodes.

A platform killed while its tasks run: the next one takes them over, site by site.

A process submits a task on a site and is killed (SIGKILL) while the task runs. A new
platform's ``recover()`` then re-attaches the task where the site can (a Slurm job keeps
running: its result is collected, and it ran once), or submits it again where the task died
with the platform (a local or Ray callable: it ran twice, never at the same time).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesis_platform import InvalidInput, Platform
from genesis_platform.compute.protocols import Resources
from genesis_platform.compute.psij import _slurm_duration
from tests.unit.compute.backend_slurm import POLL_INTERVAL_S, require_slurm

VICTIM = """
import sys, time
from genesis_platform import Platform
if __name__ == "__main__":
    p = Platform.open()
    p.tasks.submit(
        sys.argv[1], function="genesis_platform.testing.functions:journaled", kwargs={"x": 2}
    )
    while not __import__("os").path.exists(sys.argv[2]):  # the task has begun its work
        time.sleep(0.02)
    while p.tasks.list()[0].state not in ("queued", "active"):  # its dispatch is recorded
        time.sleep(0.02)
    print("running", flush=True)
    time.sleep(120)
"""


def add_site(platform: Platform, kind: str) -> str:
    if kind == "slurm":
        require_slurm()
        platform.sites.add("hpc", "slurm", {"poll_interval_s": POLL_INTERVAL_S})
        return "hpc"
    if kind == "slurm_pilot":
        require_slurm()
        options = {
            "poll_interval_s": POLL_INTERVAL_S,
            "pilot": True,
            "pilot_workers": 1,
            "pilot_idle_timeout_s": 5,
            "pilot_address": "127.0.0.1",
        }
        platform.sites.add("hpc-pilot", "slurm", options)
        return "hpc-pilot"
    if kind == "ray":
        pytest.importorskip("ray") if os.environ.get("CI") != "true" else None
        platform.sites.add("cluster", "ray")  # shares a Ray this process may already have
        return "cluster"
    return "local"


def kill_while_running(site: str, journal: Path) -> None:
    env = {**os.environ, "GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": "2"}
    with subprocess.Popen(
        [sys.executable, "-c", VICTIM, site, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as victim:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "running"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)


@pytest.mark.parametrize(
    ("kind", "how", "runs"),
    [
        ("local", "resubmitted", 2),
        ("ray", "resubmitted", 2),
        ("slurm", "reattached", 1),
        ("slurm_pilot", "resubmitted", 2),
    ],
)
def test_recover_after_the_platform_was_killed(
    platform: Platform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    how: str,
    runs: int,
) -> None:
    site = add_site(platform, kind)
    journal = tmp_path / "journal.jsonl"
    kill_while_running(site, journal)
    [task] = platform.tasks.list()
    assert task.state in {"queued", "active"} and task.external_id
    monkeypatch.setenv("GENESIS_TEST_JOURNAL", str(journal))  # for a resubmitted attempt
    counts = platform.tasks.recover()
    assert counts[how] == 1 and sum(counts.values()) == 1
    deadline = time.monotonic() + 120
    while (state := platform.tasks.get(task.id).state) not in {"completed", "failed"}:
        assert time.monotonic() < deadline, f"the task stayed {state}"
        time.sleep(0.1)
    done = platform.tasks.get(task.id)
    assert done.state == "completed", done.error
    assert done.output == {"value": pytest.approx(2.89)}
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == runs


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"nodes": 2}, "resources.nodes"),
        ({"cores": 1000}, "resources.cores"),
        ({"memory_mb": 10**9}, "resources.memory_mb"),
    ],
)
def test_a_batch_site_refuses_what_its_nodes_cannot_give(
    platform: Platform, resources: dict[str, int], field: str
) -> None:
    site = add_site(platform, "slurm")
    with pytest.raises(InvalidInput) as info:
        platform.tasks.submit(site, command=["true"], resources=Resources(**resources))
    assert info.value.field == field and "site 'hpc' has at most" in str(info.value)
    assert platform.tasks.list() == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("infinite", None), ("30", 1800), ("1:30", 90), ("2:00:00", 7200), ("1-00:00:10", 86410)],
)
def test_slurm_time_limits_are_read(text: str, seconds: float | None) -> None:
    assert _slurm_duration(text) == seconds
