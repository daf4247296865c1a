"""The built-in stations: one simulated station per emulator, opened by name.

``open_station("electrolyte", latency_s=0)`` is what a campaign's
``runner: {station: electrolyte, options: {latency_s: 0}}`` resolves to.
"""

from __future__ import annotations

from typing import Any

from genesis_platform.errors import InvalidInput
from genesis_platform.labs.emulators import EMULATORS, get_emulator
from genesis_platform.labs.protocols import Station, StationInfo
from genesis_platform.labs.simulated import SimulatedStation, station_info

__all__ = ["SIMULATED_OPTIONS", "builtin_stations", "open_station"]

DEFAULT_SLOTS = 2
"""Slots of a built-in station opened without a ``slots`` option."""

SIMULATED_OPTIONS = (
    "slots",
    "latency_s",
    "latency_jitter",
    "noise",
    "failure_rate",
    "permanent_fault_rate",
    "reservoir_ml",
    "use_ml",
    "drift_per_hour",
    "seed",
)
"""Options a built-in station accepts (keyword arguments of :class:`SimulatedStation`)."""


def builtin_stations() -> list[StationInfo]:
    """One description per built-in (simulated) station, sorted by name."""
    return [station_info(EMULATORS[name], slots=DEFAULT_SLOTS) for name in sorted(EMULATORS)]


def open_station(name: str, **options: Any) -> Station:
    """Open the built-in station ``name`` as a :class:`SimulatedStation`.

    Args:
        name: A built-in station's name (see :func:`builtin_stations`).
        **options: Any of :data:`SIMULATED_OPTIONS` (keyword arguments of
            :class:`SimulatedStation`).

    Raises:
        InvalidInput: Unknown station (field ``runner.station``), unknown option or a bad
            option value (field ``runner.options.<option>``).
    """
    emulator = get_emulator(name)
    for key in options:
        if key not in SIMULATED_OPTIONS:
            raise InvalidInput(
                f"runner.options.{key}",
                f"not an option of simulated station '{name}'",
                f"use one of: {', '.join(SIMULATED_OPTIONS)}",
            )
    options.setdefault("slots", DEFAULT_SLOTS)
    try:
        return SimulatedStation(emulator, name=name, **options)
    except InvalidInput as exc:
        raise InvalidInput(f"runner.options.{exc.field}", exc.problem, exc.fix) from exc
