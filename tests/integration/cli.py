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
