"""The README's main command, exactly as a new user types it, in a fresh virtual env."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README_MAIN = "pip install . && genesis campaign run examples/quickstart.yaml"


def _readme_main_command() -> str:
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert README_MAIN in lines, "the README's quick start must show the main command"
    return README_MAIN


@pytest.mark.slow
def test_readme_main_command_runs_the_quickstart(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GENESIS_HOME": str(tmp_path / "home"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "COLUMNS": "120",
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", "-c", _readme_main_command()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout
    for words in ("completed", "best conductivity", "best parameters", "30 observed", "wall time"):
        assert words in summary, summary
    assert "observations: dataset electrolyte-quickstart-1-observations@" in summary
    assert "surrogate: model electrolyte-quickstart-1-surrogate@" in summary

    def genesis_json(*args: str) -> object:
        out = subprocess.run(
            ["genesis", *args, "--json"], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    [campaign] = genesis_json("campaign", "list")  # type: ignore[misc]
    assert campaign["state"] == "completed"
    assert campaign["n_trials"] == 30 and campaign["n_observed"] == 30
    datasets = genesis_json("data", "list")
    models = genesis_json("model", "list")
    assert [d["name"] for d in datasets] == ["electrolyte-quickstart-1-observations"]  # type: ignore[union-attr]
    assert [m["name"] for m in models] == ["electrolyte-quickstart-1-surrogate"]  # type: ignore[union-attr]
    assert models[0]["versions"] >= 3  # type: ignore[index]
    assert campaign["best"] > 10.0  # mS/cm: the loop found a good electrolyte

    # the README's "After the campaign" commands work as shown
    readme = (ROOT / "README.md").read_text()
    for command in (
        "genesis campaign show 1",
        "genesis lineage model electrolyte-quickstart-1-surrogate",
    ):
        assert command in readme
        shown = subprocess.run(command.split(), env=env, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
    lineage = subprocess.run(
        ["genesis", "lineage", "model", "electrolyte-quickstart-1-surrogate"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dataset electrolyte-quickstart-1-observations@" in lineage
    assert lineage.count("wasGeneratedBy: trial") == 30  # back to every trial
