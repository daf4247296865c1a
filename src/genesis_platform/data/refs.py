"""References to versioned assets: ``name`` or ``name@version``."""

from __future__ import annotations

from genesis_platform.errors import InvalidInput

__all__ = ["format_ref", "parse_ref", "split_ref"]


def parse_ref(text: str, field: str = "ref") -> tuple[str, int | None]:
    """Split ``"name@3"`` into ``("name", 3)``; ``"name"`` gives ``("name", None)`` (latest).

    Raises:
        InvalidInput: the version is not a positive whole number.
    """
    name, sep, version = text.rpartition("@")
    if not sep:
        return text, None
    if not version.isdigit() or int(version) < 1 or not name:
        raise InvalidInput(field, f"{text!r} is not NAME or NAME@VERSION", "e.g. my-data@2")
    return name, int(version)


def format_ref(name: str, version: int) -> str:
    """``name@version``."""
    return f"{name}@{version}"


def split_ref(name: str, version: int | None) -> tuple[str, int | None]:
    """Accept ``("name@2", None)`` as well as ``("name", 2)``; return ``(name, version)``."""
    if version is None and "@" in name:
        return parse_ref(name, "name")
    return name, version
