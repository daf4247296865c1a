"""Fixtures shared by every test: an isolated home and an open embedded platform."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_platform import Platform

# The Ray clusters that tests start live on loopback for a few seconds. With Ray 2.60's token
# authentication on, a cluster from `ray start` intermittently refused the tests' clients
# here (InvalidAuthToken, the token file ~/.ray/auth_token shared by every Ray on the
# machine); it is turned off for them.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True)
def genesis_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GENESIS_HOME, so nothing touches ~/.genesis."""
    home = tmp_path / "genesis-home"
    monkeypatch.setenv("GENESIS_HOME", str(home))
    for var in ("GENESIS_CATALOG_URL", "GENESIS_OBJECTS_URL", "GENESIS_USER"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def platform(genesis_home: Path) -> Iterator[Platform]:
    """An embedded platform in the test's home."""
    with Platform.open(genesis_home) as p:
        yield p
