"""Fixtures shared by every test: an isolated home and an open embedded platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_platform import Platform


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
