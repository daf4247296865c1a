"""Principals: who is acting."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """Someone acting on the platform.

    Attributes:
        name: User name (``ada``) or service name.
        org: Organization the principal belongs to (``local`` for the embedded platform).
        project: Project the principal acts in, if any.
        purpose: The use the principal declares (``research``, ``commercial``,
            ``government``); agreements grant access for the uses they permit.
        scopes: The actions an API token limits the principal to (None: no limit).
    """

    name: str
    org: str = "local"
    project: str | None = None
    purpose: str = "research"
    scopes: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.org}"
