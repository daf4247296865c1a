"""Every example in examples/ runs and does what its comments say."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genesis_platform.campaigns.spec import load_spec

EXAMPLES = Path(__file__).parents[2] / "examples"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GENESIS_HOME": str(tmp_path / "home")}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_campaign_files_validate(name: str) -> None:
    assert load_spec(EXAMPLES / name).budget.trials >= 1


def test_simulation_example_runs_on_the_local_site(tmp_path: Path) -> None:
    done = subprocess.run(
        ["genesis", "campaign", "run", str(EXAMPLES / "simulation.yaml"), "--json"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["state"] == "completed"
    assert info["n_observed"] == info["n_trials"] > 0
    assert info["best"] > 10.0
    assert info["model"].startswith("electrolyte-simulation-1-surrogate@")


def test_python_api_example(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "best yield" in done.stdout
    assert "surrogate in model yield-python-1-surrogate@" in done.stdout
    assert "the surrogate predicts" in done.stdout
