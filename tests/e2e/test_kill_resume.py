"""SIGKILL a running campaign at a random moment, resume it, and check nothing was lost
or run twice."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

TRIALS = 14
CAMPAIGN = f"""
name: crash-test
space:
  salt_molality: {{type: real, low: 0.1, high: 3.0}}
  temperature_c: {{type: int, low: 10, high: 60}}
  solvent: {{type: choice, values: [EC-DMC, EC-EMC, PC]}}
objectives: {{value: min}}
planner: gp
runner: {{site: local, function: "genesis_platform.testing.functions:journaled"}}
budget: {{trials: {TRIALS}, parallel: 2, retries: 0}}
snapshot_every: 4
seed: 11
"""


def _genesis(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["genesis", *args], env=env, capture_output=True, text=True, timeout=300)


def _journal(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    journal = tmp_path / "journal.jsonl"
    spec = tmp_path / "campaign.yaml"
    spec.write_text(CAMPAIGN)
    env = {
        **os.environ,
        "GENESIS_HOME": str(tmp_path / "home"),
        "GENESIS_TEST_JOURNAL": str(journal),
        "GENESIS_TEST_SLEEP": "0.25",
    }
    process = subprocess.Popen(
        ["genesis", "campaign", "run", str(spec), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not _journal(journal) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _journal(journal), "the campaign never started a trial"
    time.sleep(rng.uniform(0.0, 1.5))
    os.killpg(process.pid, signal.SIGKILL)  # the process, its pool and its workers
    process.wait()
    killed_at = len(_journal(journal))
    assert killed_at < TRIALS, "the campaign ended before the kill; raise TRIALS"

    resumed = _genesis(env, "campaign", "resume", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr

    shown = json.loads(_genesis(env, "campaign", "show", "1", "--json").stdout)
    trials = shown["trials"]
    assert shown["state"] == "completed"
    assert [t["number"] for t in trials] == list(range(1, TRIALS + 1))  # none lost
    assert {t["state"] for t in trials} <= {"observed", "interrupted"}
    ran = [json.dumps(entry["params"], sort_keys=True) for entry in _journal(journal)]
    assert len(ran) == len(set(ran)), "a trial ran twice"
    stored = {json.dumps(t["params"], sort_keys=True): t for t in trials}
    assert set(ran) <= set(stored), "a trial ran that the catalog does not know"
    for key, trial in stored.items():
        if trial["state"] == "observed":
            assert key in ran  # its observation came from a real run
    assert shown["n_observed"] >= TRIALS - 2  # at most the two in-flight trials interrupted
