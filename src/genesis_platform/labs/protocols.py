"""The station protocol: an instrument or robotic cell that runs operations.

Small capability protocols that a driver combines, in the spirit of bluesky's ``Readable``
and ``Movable``: a station describes itself (:class:`Describable`: capabilities, parameter
and measurement schemas with units and limits), reports its status with a heartbeat
(:class:`Monitorable`: state, busy slots, queue length), runs operations asynchronously, one
future per operation (:class:`Operable`), and stops what it is doing (:class:`Abortable`).
:class:`Station` is all four plus ``close``. Optional capabilities: :class:`Cancellable`
(stop one operation), :class:`Refillable` (consumables) and :class:`Maintainable` (a
maintenance state).

Safety limits, scheduling between campaigns and usage records are Genesis's, not the
driver's (:mod:`genesis_platform.labs.safety`, :mod:`genesis_platform.labs.scheduler`): a
driver only talks to its instrument.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "Abortable",
    "Cancellable",
    "Describable",
    "Maintainable",
    "Measurement",
    "Monitorable",
    "Operable",
    "Operation",
    "Refillable",
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
    MAINTENANCE = "maintenance"


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
        protocol: How Genesis talks to it (``simulated``, ``SiLA 2``, ``Bluesky``), for the
            inventory.
        consumables: Consumables by name, each ``{"unit", "capacity", "per_operation"}``.
    """

    name: str
    driver: str
    description: str
    capabilities: tuple[str, ...]
    parameters: Mapping[str, Mapping[str, Any]]
    measurements: Mapping[str, Mapping[str, Any]]
    slots: int
    protocol: str = "simulated"
    consumables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StationStatus:
    """A station's state now.

    Attributes:
        state: idle, busy, error, offline or maintenance.
        busy_slots: Operations running now.
        queue_length: Operations waiting for a slot.
        reason: Why it is in ``error``, ``offline`` or ``maintenance``.
        heartbeat: When the driver last heard from the instrument (Unix time; 0: never).
        consumables: What is left of each consumable, in its unit.
    """

    state: StationState
    busy_slots: int = 0
    queue_length: int = 0
    reason: str = ""
    heartbeat: float = 0.0
    consumables: Mapping[str, float] = field(default_factory=dict)


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
class Describable(Protocol):
    """Says what it is and what it accepts."""

    def describe(self) -> StationInfo:
        """Capabilities, parameter and measurement schemas, slots."""
        ...


@runtime_checkable
class Monitorable(Protocol):
    """Reports its state."""

    def status(self) -> StationStatus:
        """State, busy slots, queue length and heartbeat now.

        Never raises: a station that cannot be reached is ``offline``, with the reason.
        """
        ...


@runtime_checkable
class Operable(Protocol):
    """Runs operations."""

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` and return its future at once.

        Idempotent by operation id: while an operation with the same id is queued or
        running, its future is returned and nothing new runs. The future fails with
        :class:`~genesis_platform.errors.OperationFailed` when the operation fails (a
        transient fault: a retry may succeed), with
        :class:`~genesis_platform.errors.StationError` when the station cannot run it
        (closed, in error, aborted), and with
        :class:`~genesis_platform.errors.InvalidInput` when its parameters do not fit.
        """
        ...


@runtime_checkable
class Abortable(Protocol):
    """Stops what it is doing."""

    def abort(self) -> None:
        """Stop running operations and drop the queue; their futures fail with StationError.

        Returns once the instrument has been told.
        """
        ...


@runtime_checkable
class Station(Describable, Monitorable, Operable, Abortable, Protocol):
    """An instrument or robotic cell: describe, status, run, abort, close."""

    def close(self) -> None:
        """Release the connection or worker threads; the station is not used afterwards."""
        ...


@runtime_checkable
class Cancellable(Protocol):
    """Stops one operation, leaving the others running."""

    def cancel(self, op_id: str) -> bool:
        """Stop operation ``op_id``, queued or running; its future fails with StationError.

        Returns:
            False when no such operation is queued or running here.
        """
        ...


@runtime_checkable
class Refillable(Protocol):
    """Has consumables that an operator refills (``genesis station refill``)."""

    def refill(self, consumable: str | None = None) -> None:
        """Fill ``consumable`` (all of them when None) to capacity.

        A station in ``error`` because one ran empty becomes ready again.

        Raises:
            InvalidInput: no consumable of that name (field ``consumable``).
        """
        ...


@runtime_checkable
class Maintainable(Protocol):
    """Can be taken out of service for maintenance."""

    def set_maintenance(self, on: bool, reason: str = "") -> None:
        """Enter (``on``) or leave maintenance.

        In maintenance ``run`` fails with StationError and ``status`` says ``maintenance``
        with the reason.
        """
        ...
