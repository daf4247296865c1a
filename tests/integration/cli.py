"""Run the genesis command in-process and capture what it prints."""

import json
from typing import Any

import pytest

from genesis_platform.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``genesis ARGV``."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """The parsed JSON that ``genesis ARGV --json`` prints; fails on a non-zero exit."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def electrolyte_campaign(name: str, *, trials: int = 6, parallel: int = 2) -> str:
    """A small, fast campaign file: sobol on the built-in electrolyte station, no latency."""
    return f"""
name: {name}
space:
  salt_molality: {{type: real, low: 0.1, high: 3.0}}
  temperature_c: {{type: int, low: 10, high: 60}}
  solvent: {{type: choice, values: [EC-DMC, EC-EMC, PC]}}
objectives: {{conductivity: max}}
planner: sobol
runner: {{station: electrolyte, options: {{latency_s: 0}}}}
budget: {{trials: {trials}, parallel: {parallel}}}
"""
