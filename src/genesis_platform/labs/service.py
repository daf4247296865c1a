"""The station service (``p.stations``): the stations campaigns can use."""

from __future__ import annotations

from genesis_platform.errors import NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.labs.protocols import StationInfo
from genesis_platform.labs.registry import builtin_stations

__all__ = ["StationService"]


class StationService:
    """Stations of one platform. Today: the built-in simulated stations."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def list(self) -> list[StationInfo]:
        """Every station, by name."""
        self._ctx.authorize("read", Resource("station", "*"))
        return sorted(builtin_stations(), key=lambda info: info.name)

    def get(self, name: str) -> StationInfo:
        """One station's description."""
        self._ctx.authorize("read", Resource("station", name))
        for info in builtin_stations():
            if info.name == name:
                return info
        raise NotFound("station", name, "`genesis station list` shows the stations")
