"""The station protocol: an instrument or robotic cell that runs operations.

A station describes itself (capabilities, parameter and measurement schemas), reports its
status, runs operations asynchronously (one future per operation) and can abort.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "Measurement",
    "Operation",
    "Station",
    "StationInfo",
    "StationState",
    "StationStatus",
]


class StationState(StrEnum):
    """What a station is doing."""

    IDLE = "idle"
    BUSY = "busy"
    ERROR = "error"
    OFFLINE = "offline"


@dataclass(frozen=True)
class StationInfo:
    """What a station is and what it accepts.

    Attributes:
        name: The station's registered name.
        driver: The driver kind (``simulated``, ``sila2``, ``bluesky``).
        description: What the instrument does, for people.
        capabilities: Short tags (``measure``, ``dispense``, ...).
        parameters: Parameter schema by name, in the campaign-file form of
            :meth:`genesis_platform.planning.space.Space.to_dict`, plus ``unit``.
        measurements: Measured quantities by name, each ``{"unit": ...}``.
        slots: How many operations it runs at once.
    """

    name: str
    driver: str
    description: str
    capabilities: tuple[str, ...]
    parameters: Mapping[str, Mapping[str, Any]]
    measurements: Mapping[str, Mapping[str, Any]]
    slots: int


@dataclass(frozen=True)
class StationStatus:
    """A station's state now.

    Attributes:
        state: idle, busy, error or offline.
        busy_slots: Operations running now.
        queue_length: Operations waiting for a slot.
        reason: Why it is in ``error`` or ``offline``.
    """

    state: StationState
    busy_slots: int = 0
    queue_length: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Operation:
    """One operation to run: parameter values and a caller-chosen id (for idempotency).

    Attributes:
        id: Unique id chosen by the caller (the campaign uses its trial id).
        params: Parameter values; units are those of :attr:`StationInfo.parameters`.
    """

    id: str
    params: Mapping[str, ParamValue]


@dataclass(frozen=True)
class Measurement:
    """What an operation measured.

    Attributes:
        operation_id: The :attr:`Operation.id` it answers.
        values: Measured values by name, in the units of :attr:`StationInfo.measurements`.
        external_id: The station's own id for the operation.
        duration_s: Instrument-seconds the operation used.
        metadata: Anything else the instrument reports (calibration, raw file names, ...).
    """

    operation_id: str
    values: Mapping[str, float]
    external_id: str = ""
    duration_s: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Station(Protocol):
    """An instrument or robotic cell.

    :meth:`run` returns at once; its future fails with
    :class:`~genesis_platform.errors.OperationFailed` when the operation fails and with
    :class:`~genesis_platform.errors.StationError` when the station cannot run it.
    """

    def describe(self) -> StationInfo:
        """Capabilities, parameter and measurement schemas, slots."""
        ...

    def status(self) -> StationStatus:
        """State, busy slots and queue length now."""
        ...

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` and return its future at once."""
        ...

    def abort(self) -> None:
        """Stop running operations (their futures fail) and drop the queue."""
        ...

    def close(self) -> None:
        """Release the connection or worker threads; the station is not used afterwards."""
        ...
