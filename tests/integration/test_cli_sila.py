"""The shipped SiLA 2 server, as an operator runs it: `genesis station serve-sila` in its own
process, registered with `genesis station add --driver sila2`, then a campaign on it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.labs.backend_sila import require_sila

CAMPAIGN = """
name: on-sila
project: battery-lab
space:
  salt_molality: {type: real, low: 0.1, high: 3.0}
  temperature_c: {type: int, low: 10, high: 60}
  solvent: {type: choice, values: [EC-DMC, PC]}
objectives: {conductivity: max}
planner: random
runner: {station: sila-cell}
budget: {trials: 6, parallel: 2}
seed: 5
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def genesis(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GENESIS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "genesis_platform.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for_port(port: int, server: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited: {server.communicate()}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the SiLA 2 server did not listen on port {port}")


def test_a_campaign_runs_on_the_shipped_sila_server(tmp_path: Path) -> None:
    require_sila()
    home, port = tmp_path / "home", free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "genesis_platform.cli", "station", "serve-sila",
         "--emulator", "electrolyte", "--port", str(port), "--latency", "0"],
        env={**os.environ, "GENESIS_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        added = genesis(
            home, "station", "add", "sila-cell", "--driver", "sila2",
            "--option", f"port={port}", "--limit", "temperature_c=:45",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        status = json.loads(genesis(home, "station", "status", "sila-cell", "--json").stdout)
        assert status["state"] == "idle" and status["heartbeat"] > 0
        (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
        ran = genesis(home, "campaign", "run", str(tmp_path / "campaign.yaml"), "--json")
        assert ran.returncode == 0, ran.stderr
        result = json.loads(ran.stdout)
        ops = json.loads(genesis(home, "station", "operations", "sila-cell", "--json").stdout)
        completed = [o for o in ops if o["state"] == "completed"]
        refused = [o for o in ops if o["state"] == "refused"]
        assert len(completed) + len(refused) == 6
        assert completed and refused
        assert result["n_observed"] == len(completed) >= 1
        assert all(o["params"]["temperature_c"] > 45 for o in refused)
        assert all(o["external_id"] for o in completed)  # the SiLA command execution UUID
        inventory = json.loads(genesis(home, "station", "inventory", "--json").stdout)
        [row] = [r for r in inventory if r["name"] == "sila-cell"]
        assert (row["protocol"], row["reachable"]) == ("SiLA 2", "yes")
        assert row["operations"] == len(completed) and row["refused"] == len(refused)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=20)
        finally:
            server.kill()
            _, err = server.communicate()
    assert code == 0, err
