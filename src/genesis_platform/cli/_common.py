"""What every command shares: opening the platform, printing JSON and tables, exit codes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from genesis_platform.errors import (
    AccessDenied,
    ConfigError,
    CorruptBlob,
    GenesisError,
    InvalidInput,
    NotFound,
)
from genesis_platform.platform import Platform

__all__ = ["console", "err_console", "exit_code", "open_platform", "print_json", "print_table"]

console = Console()
err_console = Console(stderr=True)

_EXIT_CODES: tuple[tuple[type[GenesisError], int], ...] = (
    (InvalidInput, 2),
    (NotFound, 2),
    (ConfigError, 2),
    (CorruptBlob, 2),
    (AccessDenied, 3),
)


def exit_code(error: GenesisError) -> int:
    """The CLI exit code of an error family: 2 bad input, 3 denied, 1 anything else."""
    for family, code in _EXIT_CODES:
        if isinstance(error, family):
            return code
    return 1


@contextmanager
def open_platform() -> Iterator[Platform]:
    """The embedded platform of ``$GENESIS_HOME`` (or ``~/.genesis``), closed afterwards.

    With ``GENESIS_TOKEN`` set, commands act as the member that API token stands for.
    """
    with Platform.open(token=os.environ.get("GENESIS_TOKEN") or None) as platform:
        yield platform


def print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout (no colour, no wrapping)."""
    print(json.dumps(value, indent=2, default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on stdout."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(table)
