"""Crash a running campaign (SIGKILL, several times, at random moments) or interrupt it
(Ctrl-C), resume it, and check that no trial was lost or run twice and that the budget
was completed."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from genesis_platform import Platform
from genesis_platform.catalog.tables import ProvenanceEdge

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
snapshot_every: 3
seed: 11
"""


def _journal(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    log = Path(env["GENESIS_HOME"]).parent / "cli.log"
    with log.open("ab") as stderr:
        return subprocess.Popen(
            ["genesis", "campaign", *args, "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: the CLI, its pool and workers
        )


def _signal_after_new_runs(
    process: subprocess.Popen[bytes], journal: Path, sig: int, delay: float
) -> None:
    before = len(_journal(journal))
    deadline = time.monotonic() + 120
    while len(_journal(journal)) <= before and time.monotonic() < deadline:
        assert process.poll() is None, "genesis ended early; see cli.log beside the home"
        time.sleep(0.02)
    time.sleep(delay)
    os.killpg(process.pid, sig)
    process.wait(timeout=60)


def _setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    journal = tmp_path / "journal.jsonl"
    spec = tmp_path / "campaign.yaml"
    spec.write_text(CAMPAIGN)
    env = {
        **os.environ,
        "GENESIS_HOME": str(tmp_path / "home"),
        "GENESIS_TEST_JOURNAL": str(journal),
        "GENESIS_TEST_SLEEP": "0.2",
    }
    return env, journal, spec


def _show(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        ["genesis", "campaign", "show", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _resume_to_the_end(env: dict[str, str]) -> None:
    resumed = subprocess.run(
        ["genesis", "campaign", "resume", "1", "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr


def _check_complete_and_once(env: dict[str, str], journal: Path, max_interrupted: int) -> None:
    shown = _show(env)
    trials: list[dict[str, object]] = shown["trials"]  # type: ignore[assignment]
    assert shown["state"] == "completed", shown
    assert [t["number"] for t in trials] == list(range(1, len(trials) + 1))  # none lost
    assert {t["state"] for t in trials} <= {"observed", "interrupted"}
    assert shown["n_observed"] == TRIALS  # the budget was completed
    assert shown["n_interrupted"] <= max_interrupted

    ran = [json.dumps(entry["params"], sort_keys=True) for entry in _journal(journal)]
    assert len(ran) == len(set(ran)), "a trial ran twice"
    stored = {json.dumps(t["params"], sort_keys=True): t for t in trials}
    assert set(ran) <= set(stored), "a trial ran that the catalog does not know"
    for key, trial in stored.items():
        if trial["state"] == "observed":
            assert key in ran, "an observation did not come from a run"

    with Platform.open(env["GENESIS_HOME"]) as p, p._db.session() as s:
        memberships = s.execute(
            select(ProvenanceEdge.object_id, func.count())
            .where(ProvenanceEdge.relation == "hadMember")
            .group_by(ProvenanceEdge.object_id)
        ).all()
        table = p.datasets.read_table("crash-test-1-observations")
        model = p.models.get("crash-test-1-surrogate")
    assert len(memberships) == TRIALS and all(n == 1 for _, n in memberships)
    assert sorted(table.column("trial").to_pylist()) == sorted(
        t["number"] for t in trials if t["state"] == "observed"
    )
    assert (
        model.trained_on
        == f"crash-test-1-observations@{p.datasets.get('crash-test-1-observations').version}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_twice_then_resume(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    env, journal, spec = _setup(tmp_path)
    _signal_after_new_runs(
        _start(env, "run", str(spec)), journal, signal.SIGKILL, rng.uniform(0, 0.5)
    )
    _signal_after_new_runs(_start(env, "resume", "1"), journal, signal.SIGKILL, rng.uniform(0, 0.5))
    assert len(_journal(journal)) < TRIALS, "the campaign ended before the kills; raise TRIALS"
    assert _show(env)["state"] == "stopped"  # its process is gone: shown as stopped

    _resume_to_the_end(env)
    _check_complete_and_once(env, journal, max_interrupted=4)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path: Path) -> None:
    env, journal, spec = _setup(tmp_path)
    process = _start(env, "run", str(spec))
    _signal_after_new_runs(process, journal, signal.SIGINT, 0.1)
    assert process.returncode == 130
    stopped = _show(env)
    assert stopped["state"] == "stopped"
    assert "running" not in {t["state"] for t in stopped["trials"]}  # type: ignore[attr-defined]

    _resume_to_the_end(env)
    _check_complete_and_once(env, journal, max_interrupted=2)


@pytest.mark.slow
def test_sigterm_to_the_cli_alone_stops_it_and_its_workers(tmp_path: Path) -> None:
    env, journal, spec = _setup(tmp_path)
    env["GENESIS_TEST_SLEEP"] = "1.5"
    process = _start(env, "run", str(spec))
    before = len(_journal(journal))
    deadline = time.monotonic() + 120
    while len(_journal(journal)) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    process.terminate()  # SIGTERM to the CLI process only, not its group
    assert process.wait(timeout=30) == 143
    assert time.monotonic() - started < 5, "the trials in flight were not aborted"
    ran = len(_journal(journal))
    stopped = _show(env)
    assert stopped["state"] == "stopped"
    assert "running" not in {t["state"] for t in stopped["trials"]}  # type: ignore[attr-defined]
    time.sleep(2.0)
    assert len(_journal(journal)) == ran, "a worker went on running trials"

    env["GENESIS_TEST_SLEEP"] = "0.05"
    _resume_to_the_end(env)
    _check_complete_and_once(env, journal, max_interrupted=2)


@pytest.mark.slow
def test_ctrl_c_aborts_long_station_operations(tmp_path: Path) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        CAMPAIGN.replace(
            'runner: {site: local, function: "genesis_platform.testing.functions:journaled"}',
            "runner: {station: electrolyte, options: {latency_s: 30}}",
        ).replace("objectives: {value: min}", "objectives: {conductivity: max}")
    )
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home")}
    process = _start(env, "run", str(spec))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["genesis", "campaign", "show", "1", "--json"], env=env, capture_output=True, text=True
        )
        if listed.returncode == 0 and json.loads(listed.stdout)["n_trials"] >= 2:
            break
        time.sleep(0.2)
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert time.monotonic() - started < 5, "Ctrl-C waited for the 30 s operations"
    shown = _show(env)
    assert shown["state"] == "stopped"
    assert [t["state"] for t in shown["trials"]] == ["interrupted", "interrupted"]  # type: ignore[attr-defined]
