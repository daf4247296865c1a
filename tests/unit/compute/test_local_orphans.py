"""A worker of the local process pool does not outlive the platform that started it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import time
from genesis_platform.compute.local import LocalExecutor
from genesis_platform.compute.protocols import TaskSpec
executor = LocalExecutor(1)
executor.submit(TaskSpec(function="genesis_platform.testing.functions:journaled", kwargs={"x": 1}))
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_exits_when_the_platform_is_killed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, "GENESIS_TEST_JOURNAL": str(journal), "GENESIS_TEST_SLEEP": "30"}
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env)
    try:
        deadline = time.monotonic() + 60
        while not journal.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = json.loads(journal.read_text().splitlines()[0])["pid"]
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)  # the platform alone, not its process group
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker went on running after the platform died"
    finally:
        parent.kill()
        parent.wait()
