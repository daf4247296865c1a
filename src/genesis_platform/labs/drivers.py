"""Station drivers: each a ``{driver, options}`` config that opens a :class:`Station`.

=============== ===================================================================== ==========
driver          options                                                               extra
=============== ===================================================================== ==========
``simulated``   ``emulator`` (default: the station's name, e.g. ``electrolyte``),
                ``slots`` (2), ``latency_s`` (0.5), ``latency_jitter`` (0.2),
                ``noise`` (1), ``failure_rate`` (0), ``permanent_fault_rate`` (0),
                ``reservoir_ml`` (none), ``use_ml`` (1), ``drift_per_hour`` (0),
                ``seed`` (0); see :class:`~genesis_platform.labs.simulated.SimulatedStation`
``sila2``       ``host`` (127.0.0.1), ``port`` (required), ``feature`` and ``command``  ``labs``
                (default: the server's first observable command), ``insecure`` (true),
                ``root_cert`` (a PEM file, for TLS), ``slots`` (1), ``timeout_s``
``bluesky``     ``emulator`` (ophyd simulated devices around an emulator) or           ``labs``
                ``devices`` (``package.module:factory``), ``latency_s``, ``noise``,
                ``seed``
=============== ===================================================================== ==========

Options are validated with pydantic when a station is added (from Python values or the
CLI's ``key=value`` strings) and stored as validated JSON. Packages add drivers through the
``genesis_platform.stations`` entry-point group: ``NAME = "package.module:factory"`` names
a callable ``factory(station_name, options) -> Station``; its options are passed unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genesis_platform._options import import_extra, validate_options
from genesis_platform.errors import InvalidInput
from genesis_platform.labs.emulators import EMULATORS
from genesis_platform.labs.protocols import Station

__all__ = [
    "DRIVERS",
    "ENTRY_POINT_GROUP",
    "StationConfig",
    "open_driver",
    "plugin_drivers",
]

ENTRY_POINT_GROUP = "genesis_platform.stations"
"""Where packages add station drivers: ``NAME = "package.module:factory"``."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatedOptions(_Options):
    """Options of a ``simulated`` station."""

    emulator: str | None = None
    slots: int = Field(2, ge=1, le=64)
    latency_s: float = Field(0.5, ge=0.0, allow_inf_nan=False)
    latency_jitter: float = Field(0.2, ge=0.0, allow_inf_nan=False)
    noise: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    permanent_fault_rate: float = Field(0.0, ge=0.0, le=1.0)
    reservoir_ml: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    use_ml: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    drift_per_hour: float = Field(0.0, ge=-1.0, le=1e6, allow_inf_nan=False)
    seed: int = Field(0, ge=0)


class SilaOptions(_Options):
    """Options of a ``sila2`` station."""

    host: str = Field("127.0.0.1", pattern=r"^[^\s:/]+$")
    port: int = Field(..., ge=1, le=65535)
    feature: str | None = None
    command: str | None = None
    insecure: bool = True
    root_cert: str | None = None
    slots: int = Field(1, ge=1, le=64)
    timeout_s: float | None = Field(None, gt=0.0, allow_inf_nan=False)


class BlueskyOptions(_Options):
    """Options of a ``bluesky`` station."""

    emulator: str | None = None
    devices: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    latency_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    noise: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    seed: int = Field(0, ge=0)


class _PluginOptions(_Options):
    model_config = ConfigDict(extra="allow", frozen=True)


DRIVERS: dict[str, type[_Options]] = {
    "simulated": SimulatedOptions,
    "sila2": SilaOptions,
    "bluesky": BlueskyOptions,
}
"""The built-in drivers and their options."""

_FIXES = {
    "emulator": f"use one of {sorted(EMULATORS)}",
    "devices": "write package.module:factory",
    "port": "the SiLA 2 server's port, e.g. port=50052",
    "host": "a host name or IP address, without a port",
}


def plugin_drivers() -> dict[str, EntryPoint]:
    """Drivers added through ``genesis_platform.stations`` (built-ins cannot be replaced)."""
    return {e.name: e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name not in DRIVERS}


@dataclass(frozen=True)
class StationConfig:
    """A station's name, driver and validated options (only those given are kept)."""

    name: str
    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls, name: str, driver: str, options: Mapping[str, Any] | None = None
    ) -> StationConfig:
        """Validate ``name``, ``driver`` and ``options``.

        Raises:
            InvalidInput: naming ``name``, ``driver`` or ``options.<key>``, and the fix.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                "name",
                f"{name!r} is not a station name",
                "use lower-case letters, digits, - and _, starting with a letter",
            )
        settings = _settings(name, driver, options or {})
        return cls(name, driver, settings.model_dump(mode="json", exclude_unset=True))

    def settings(self) -> Any:
        """The options with every default filled in (a pydantic model of the driver)."""
        return _settings(self.name, self.driver, self.options)


def _settings(name: str, driver: str, options: Mapping[str, Any]) -> _Options:
    model = DRIVERS.get(driver)
    if model is None:
        if driver not in plugin_drivers():
            known = [*DRIVERS, *sorted(plugin_drivers())]
            raise InvalidInput(
                "driver", f"unknown station driver {driver!r}", f"use one of {known}"
            )
        model = _PluginOptions
    settings = validate_options(model, options, f"a {driver} station", _FIXES)
    emulator = getattr(settings, "emulator", None)
    if driver == "simulated":
        emulator = emulator or name
    if emulator is not None and emulator not in EMULATORS:
        raise InvalidInput(
            "options.emulator",
            f"no emulator {emulator!r}" + ("" if settings.model_fields_set else " (the name)"),
            _FIXES["emulator"],
        )
    if isinstance(settings, BlueskyOptions) and (settings.emulator is None) == (
        settings.devices is None
    ):
        problem = "a bluesky station needs emulator=NAME or devices=package.module:factory"
        raise InvalidInput("options", problem, "give exactly one of them")
    return settings


def open_driver(config: StationConfig) -> Station:
    """Open (connect) the driver of ``config``.

    Raises:
        InvalidInput: the driver's extra is not installed (field ``driver``).
        StationError: the instrument cannot be reached.
    """
    settings = config.settings()
    options = settings.model_dump(exclude_none=True)
    if config.driver == "simulated":
        from genesis_platform.labs.simulated import SimulatedStation

        emulator = options.pop("emulator", config.name)
        return SimulatedStation(emulator, name=config.name, **options)
    if config.driver == "sila2":
        module = import_extra("genesis_platform.labs.sila", "labs", "driver")
        return module.SilaStation(config.name, **options)  # type: ignore[no-any-return]
    if config.driver == "bluesky":
        module = import_extra("genesis_platform.labs.bluesky", "labs", "driver")
        return module.open_bluesky_station(config.name, **options)  # type: ignore[no-any-return]
    factory = plugin_drivers()[config.driver].load()
    station = factory(config.name, dict(settings.model_extra or {}))
    if not isinstance(station, Station):
        raise InvalidInput(
            "driver",
            f"the {config.driver!r} plugin made a {type(station).__name__}, not a Station",
            "its factory must return an object with describe, status, run, abort, close",
        )
    return station
