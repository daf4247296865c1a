"""What the docs show is what the commands do."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import typer

from genesis_platform.cli import app

ROOT = Path(__file__).parents[2]


def test_campaign_error_example_matches(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "campaigns.md").read_text()
    block = re.search(r"```console\n\$ genesis campaign run bad.yaml\n(error: .*)\n```", text)
    assert block, "docs/campaigns.md lost its error example"
    bad = tmp_path / "bad.yaml"
    quickstart = (ROOT / "examples" / "quickstart.yaml").read_text()
    bad.write_text(quickstart.replace("low: 10, high: 60", "low: 60, high: 10"))
    done = subprocess.run(
        ["genesis", "campaign", "run", str(bad)],
        env={**os.environ, "GENESIS_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == block.group(1)


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
    assert block
    assert block.group(1).split("\n")[:2] == [
        "pip install . && genesis campaign run examples/quickstart.yaml",
        "./scripts/test",
    ]


def _commands(group: typer.Typer, prefix: str = "genesis") -> list[str]:
    found = [f"{prefix} {c.name}" for c in group.registered_commands]
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        found += _commands(sub.typer_instance, f"{prefix} {sub.name}")
    return found


def test_cli_doc_lists_every_command() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    commands = _commands(app)
    assert len(commands) >= 12
    missing = [command for command in commands if f"`{command}" not in doc]
    assert missing == []


def _block(doc: str, heading: str, language: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    block = re.search(rf"## {heading}\n.*?```{language}\n(.*?)```", text, re.S)
    assert block, f"docs/{doc} lost its {heading} example"
    return block.group(1)


def test_compute_doc_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    for line in _block("compute.md", "Try it", "bash").splitlines():
        done = subprocess.run(line.split(), env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line}: {done.stderr}"


def test_compute_doc_python_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_block("compute.md", "Tasks from Python", "python"))
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        ["python3", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "{'value': 21.62" in done.stdout and "\n0\n" in done.stdout
    assert "UsageRow(project='battery-lab'" in done.stdout


def test_labs_doc_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    for line in _block("labs.md", "Try it", "bash").splitlines():
        done = subprocess.run(
            shlex.split(line), env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"


def test_labs_doc_python_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_block("labs.md", "Stations from Python", "python"))
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        ["python3", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['conductivity']"
    assert lines[1] == "SafetyViolation"
    assert lines[2].startswith("{('battery-lab', 'cell'): 0.0")


def test_governance_doc_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "GENESIS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    outputs = []
    for line in _block("governance.md", "Try it", "bash").splitlines():
        done = subprocess.run(
            shlex.split(line), env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"
        outputs.append(done.stdout)
    assert "deny: bob@acme read dataset:spectra" in outputs[4]
    assert "waiting for the signature of acme" in outputs[7]
    assert "audit log intact" in outputs[8]
