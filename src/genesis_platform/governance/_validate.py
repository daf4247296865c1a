"""Checks of governance input shared by its services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genesis_platform.errors import InvalidInput

__all__ = ["one_of"]


def one_of(field: str, value: Any, allowed: Sequence[str], fix: str = "") -> None:
    """InvalidInput on ``field`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise InvalidInput(field, f"{value!r} is not one of {', '.join(allowed)}", fix)
