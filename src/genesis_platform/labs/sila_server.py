"""A SiLA 2 server around any Genesis station, for SiLA 2 clients such as :class:`SilaStation`.

:class:`SilaStationServer` serves one :class:`~genesis_platform.labs.protocols.Station` with
the server of the ``sila2`` package (``pip install -e '.[labs]'``). Its feature is generated
from the station's :meth:`~genesis_platform.labs.protocols.Station.describe` by
:func:`feature_definition`:

- an observable command ``RunOperation`` with a String parameter ``OperationId`` (the
  idempotency key: commands with the same id while one is in flight share its operation)
  and one parameter per station parameter: ``real`` -> Real, ``int`` -> Integer, ``choice``
  -> String (Integer or Real for numeric choices) with a ``Set`` constraint. Bounds are
  ``MinimalInclusive`` / ``MaximalInclusive`` constraints; units are ``Unit`` constraints
  (label plus SI decomposition) for the units in :data:`SI_UNITS`, and ``[unit: ...]`` in
  the description for the others and for String parameters, which SiLA gives no units.
  Identifiers are the names in CamelCase (``salt_molality`` -> ``SaltMolality``); display
  names keep the names themselves, which is how
  :class:`~genesis_platform.labs.sila.SilaStation` finds them again. Mixed text and number
  choices travel as text; ``log: true`` is marked ``[log scale]`` in the description;
- one Real response per measurement, with its unit;
- properties ``StationState`` (idle, busy, error, offline or maintenance), ``StatusReason``,
  ``BusySlots``, ``QueueLength`` and ``Heartbeat`` (the station's, Unix time);
- an unobservable command ``Abort`` that aborts the station;
- defined execution errors ``InvalidParameters``, ``OperationFailed`` (transient: retry),
  ``StationError`` and ``Cancelled``, from the station's errors.

Progress: while an operation runs the command reports progress and estimated remaining time
every ``progress_interval_s``, from the expected duration: ``expected_duration_s`` at first
(``run_sila_server`` passes the simulated latency), then a running average of the measured
durations. The Station protocol says nothing about progress, so this is an estimate.

Cancel: sila2 0.13 has no cancellation of its own; SiLA 2 defines it as the standard feature
``CancelController`` (``CancelCommand`` by execution UUID, ``CancelAll``), which this server
implements. An operation still queued in the station is cancelled alone (its future's
``cancel``); the Station protocol can only abort *every* running operation, so a running
one is aborted on the station once every operation running there is cancelled, and until
then its command ends with ``Cancelled`` while the station finishes it unobserved. When the
server stops, commands still waiting end with ``OperationFailed`` (retry elsewhere or later).

What sila2 0.13 needs worked around, each where it happens: it binds its port with
``SO_REUSEPORT`` and discards the port gRPC picked, so port 0 means "a free port found
here" and a port that is already served is refused before binding; it opens a Zeroconf
instance for discovery in every server even with discovery off and never closes it, so
:meth:`SilaStationServer.stop` closes it; and it generates a self-signed certificate only
with discovery on, so :class:`SilaStationServer` generates its own for TLS without files.
Discovery (zeroconf broadcasting) is always off.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from uuid import UUID

from sila2.framework import DefinedExecutionError, Feature
from sila2.server import (
    FeatureImplementationBase,
    MetadataDict,
    ObservableCommandInstance,
    SilaServer,
)

from genesis_platform.errors import InvalidInput, OperationFailed, StationError
from genesis_platform.labs.protocols import (
    Cancellable,
    Measurement,
    Operation,
    Station,
    StationInfo,
)
from genesis_platform.labs.sila import (
    OPERATION_ID,
    ORIGINATOR,
    SILA_NS,
    genesis_name,
    sila_identifier,
    unit_marker,
)
from genesis_platform.labs.simulated import SimulatedStation
from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "CANCEL_CONTROLLER_FDL",
    "SI_UNITS",
    "FeatureLayout",
    "SilaStationServer",
    "feature_definition",
    "find_free_port",
    "run_sila_server",
]

log = logging.getLogger(__name__)

COMMAND = "RunOperation"
"""Identifier of the observable command that runs one operation."""

SERVER_TYPE = "GenesisStation"
"""SiLA server type of every server started here."""

VENDOR_URL = "https://pypi.org/project/genesis-platform/"

_ERRORS = {
    "InvalidParameters": "The parameters do not fit the station (the message names the field).",
    "OperationFailed": "The operation failed with a transient fault (or the server stopped "
    "meanwhile); a retry may succeed.",
    "StationError": "The station cannot run the operation (closed, in error, in maintenance).",
    "Cancelled": "The operation was cancelled (CancelController, or Abort).",
}

SI_UNITS: Mapping[str, tuple[str, str, tuple[tuple[str, int], ...]]] = {
    "%": ("0.01", "0", (("Dimensionless", 1),)),
    "equiv": ("1", "0", (("Dimensionless", 1),)),
    "s": ("1", "0", (("Second", 1),)),
    "ms": ("0.001", "0", (("Second", 1),)),
    "min": ("60", "0", (("Second", 1),)),
    "h": ("3600", "0", (("Second", 1),)),
    "Hz": ("1", "0", (("Second", -1),)),
    "rpm": ("0.016666666666666666", "0", (("Second", -1),)),
    "K": ("1", "0", (("Kelvin", 1),)),
    "°C": ("1", "273.15", (("Kelvin", 1),)),
    "kg": ("1", "0", (("Kilogram", 1),)),
    "g": ("0.001", "0", (("Kilogram", 1),)),
    "mg": ("0.000001", "0", (("Kilogram", 1),)),
    "m": ("1", "0", (("Meter", 1),)),
    "cm": ("0.01", "0", (("Meter", 1),)),
    "mm": ("0.001", "0", (("Meter", 1),)),
    "µm": ("0.000001", "0", (("Meter", 1),)),
    "nm": ("0.000000001", "0", (("Meter", 1),)),
    "L": ("0.001", "0", (("Meter", 3),)),
    "mL": ("0.000001", "0", (("Meter", 3),)),
    "µL": ("0.000000001", "0", (("Meter", 3),)),
    "mol": ("1", "0", (("Mole", 1),)),
    "mol/kg": ("1", "0", (("Mole", 1), ("Kilogram", -1))),
    "mmol/kg": ("0.001", "0", (("Mole", 1), ("Kilogram", -1))),
    "mol/L": ("1000", "0", (("Mole", 1), ("Meter", -3))),
    "M": ("1000", "0", (("Mole", 1), ("Meter", -3))),
    "mM": ("1", "0", (("Mole", 1), ("Meter", -3))),
    "Pa": ("1", "0", (("Kilogram", 1), ("Meter", -1), ("Second", -2))),
    "kPa": ("1000", "0", (("Kilogram", 1), ("Meter", -1), ("Second", -2))),
    "bar": ("100000", "0", (("Kilogram", 1), ("Meter", -1), ("Second", -2))),
    "mbar": ("100", "0", (("Kilogram", 1), ("Meter", -1), ("Second", -2))),
    "A": ("1", "0", (("Ampere", 1),)),
    "mA": ("0.001", "0", (("Ampere", 1),)),
    "V": ("1", "0", (("Kilogram", 1), ("Meter", 2), ("Second", -3), ("Ampere", -1))),
    "mV": ("0.001", "0", (("Kilogram", 1), ("Meter", 2), ("Second", -3), ("Ampere", -1))),
    "W": ("1", "0", (("Kilogram", 1), ("Meter", 2), ("Second", -3))),
    "J": ("1", "0", (("Kilogram", 1), ("Meter", 2), ("Second", -2))),
    "kJ/mol": ("1000", "0", (("Kilogram", 1), ("Meter", 2), ("Second", -2), ("Mole", -1))),
    "S/m": ("1", "0", (("Ampere", 2), ("Second", 3), ("Kilogram", -1), ("Meter", -3))),
    "mS/cm": ("0.1", "0", (("Ampere", 2), ("Second", 3), ("Kilogram", -1), ("Meter", -3))),
    "µS/cm": ("0.0001", "0", (("Ampere", 2), ("Second", 3), ("Kilogram", -1), ("Meter", -3))),
}
"""Units written as SiLA ``Unit`` constraints: label -> (factor, offset, SI components).

A value ``v`` in the unit is ``v * factor + offset`` in the product of the SI components
(``°C``: factor 1, offset 273.15, Kelvin). Other units travel in descriptions. The empty
unit is dimensionless and written as no constraint at all.
"""

CANCEL_CONTROLLER_FDL = f"""<?xml version="1.0" encoding="utf-8"?>
<Feature xmlns="{SILA_NS}" SiLA2Version="1.0" FeatureVersion="1.0" MaturityLevel="Verified"
         Originator="org.silastandard" Category="core.commands">
  <Identifier>CancelController</Identifier>
  <DisplayName>Cancel Controller</DisplayName>
  <Description>Cancels running commands, irrevocably. The server stays ready for new
    commands afterwards.</Description>
  <Command>
    <Identifier>CancelCommand</Identifier>
    <DisplayName>Cancel Command</DisplayName>
    <Description>Cancels the running observable command with this execution UUID; it finishes
      with an execution error that says it was cancelled.</Description>
    <Observable>No</Observable>
    <Parameter>
      <Identifier>CommandExecutionUUID</Identifier>
      <DisplayName>Command Execution UUID</DisplayName>
      <Description>The execution UUID the server returned when the command started.</Description>
      <DataType><DataTypeIdentifier>UUID</DataTypeIdentifier></DataType>
    </Parameter>
    <DefinedExecutionErrors>
      <Identifier>InvalidCommandExecutionUUID</Identifier>
      <Identifier>OperationNotSupported</Identifier>
    </DefinedExecutionErrors>
  </Command>
  <Command>
    <Identifier>CancelAll</Identifier>
    <DisplayName>Cancel All</DisplayName>
    <Description>Cancels every running command of this server.</Description>
    <Observable>No</Observable>
  </Command>
  <DataTypeDefinition>
    <Identifier>UUID</Identifier>
    <DisplayName>UUID</DisplayName>
    <Description>A command execution UUID in its 36-character text form.</Description>
    <DataType>
      <Constrained>
        <DataType><Basic>String</Basic></DataType>
        <Constraints>
          <Length>36</Length>
          <Pattern>[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}</Pattern>
        </Constraints>
      </Constrained>
    </DataType>
  </DataTypeDefinition>
  <DefinedExecutionError>
    <Identifier>InvalidCommandExecutionUUID</Identifier>
    <DisplayName>Invalid Command Execution UUID</DisplayName>
    <Description>No command with this execution UUID is running.</Description>
  </DefinedExecutionError>
  <DefinedExecutionError>
    <Identifier>OperationNotSupported</Identifier>
    <DisplayName>Operation Not Supported</DisplayName>
    <Description>This command cannot be cancelled.</Description>
  </DefinedExecutionError>
</Feature>
"""
"""SiLA 2's standard ``CancelController`` feature (org.silastandard/core.commands, v1)."""


# --- the feature definition -------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    """A station parameter as the command receives it."""

    name: str
    identifier: str
    choices: tuple[ParamValue, ...] = ()
    as_text: bool = False
    """Mixed choices travel as text and are mapped back to the station's values."""

    def native(self, value: Any) -> ParamValue:
        """The station's value for what the command received."""
        if self.as_text:
            return next(c for c in self.choices if str(c) == value)
        if self.choices and isinstance(value, float):  # sila2 matches Real sets within 0.1 %
            return min(self.choices, key=lambda c: abs(float(c) - value))
        return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class FeatureLayout:
    """The feature generated for a station: its definition and how its elements map back.

    Attributes:
        identifier: The feature's identifier (``ElectrolyteStation``).
        fdl: The feature definition (XML).
        params: The command's station parameters, in order (after ``OperationId``).
        measurements: ``(measurement name, response identifier)`` pairs, in order.
    """

    identifier: str
    fdl: str
    params: tuple[_Param, ...]
    measurements: tuple[tuple[str, str], ...]


def feature_definition(info: StationInfo) -> FeatureLayout:
    """The SiLA 2 feature that serves a station described by ``info`` (see the module doc).

    Raises:
        InvalidInput: Two names map to the same SiLA identifier, a name maps to
            ``OperationId``, or a schema cannot be expressed (field ``parameters.<name>``).
    """
    identifier = sila_identifier(info.name)
    identifier = identifier if identifier.endswith("Station") else identifier + "Station"
    root = ET.Element("Feature", _feature_attributes())
    _add(root, "Identifier", identifier)
    _add(root, "DisplayName", f"{info.name} station"[:255])
    _add(root, "Description", info.description or f"Genesis station {info.name}")
    params, measurements = _run_command(root, info)
    _add_properties(root)
    _add_abort(root)
    for error, description in _ERRORS.items():
        node = _add(root, "DefinedExecutionError")
        _add(node, "Identifier", error)
        _add(node, "DisplayName", _display(error))
        _add(node, "Description", description)
    ET.indent(root)
    fdl = ET.tostring(root, encoding="unicode")
    return FeatureLayout(identifier, fdl, params, measurements)


def _display(identifier: str) -> str:
    """A display name for an identifier: ``StationState`` -> ``Station State``."""
    return genesis_name(identifier).replace("_", " ").title()


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = text
    return node


def _feature_attributes() -> dict[str, str]:
    return {  # tags stay unqualified under this default namespace
        "xmlns": SILA_NS,
        "SiLA2Version": "1.0",
        "FeatureVersion": "1.0",
        "MaturityLevel": "Draft",
        "Originator": ORIGINATOR,
        "Category": "labs",
    }


def _run_command(
    root: ET.Element, info: StationInfo
) -> tuple[tuple[_Param, ...], tuple[tuple[str, str], ...]]:
    command = _add(root, "Command")
    _add(command, "Identifier", COMMAND)
    _add(command, "DisplayName", "Run Operation")
    _add(command, "Description", f"Runs one operation on station {info.name}.")
    _add(command, "Observable", "Yes")
    _element(command, "Parameter", OPERATION_ID, OPERATION_ID, _OPERATION_ID_DOC)
    _data_type(command[-1], "String", [])
    params: list[_Param] = []
    seen = {OPERATION_ID: "the operation id"}
    for name, schema in info.parameters.items():
        params.append(_parameter(command, name, schema, seen))
    taken: dict[str, str] = {}  # responses have identifiers of their own, apart from parameters
    measurements = [_response(command, n, schema, taken) for n, schema in info.measurements.items()]
    errors = _add(command, "DefinedExecutionErrors")
    for error in _ERRORS:
        _add(errors, "Identifier", error)
    return tuple(params), tuple(measurements)


def _response(
    command: ET.Element, name: str, schema: Mapping[str, Any], seen: dict[str, str]
) -> tuple[str, str]:
    """A Real response for measurement ``name``; returns (name, identifier)."""
    unit = str(schema.get("unit", ""))
    identifier = _unique(sila_identifier(name), f"measurements.{name}", name, seen)
    doc = f"Measured {name}" + (f", {unit}" if unit else "") + "."
    node = _element(command, "Response", identifier, name, _with_unit(doc, unit, "Real"))
    _data_type(node, "Real", _unit_constraints(unit))
    return name, identifier


_OPERATION_ID_DOC = (
    "The caller's id of the operation, its idempotency key: a command with the id of an "
    "operation still in flight joins it. Empty: the command execution UUID."
)


def _element(
    parent: ET.Element, tag: str, identifier: str, display: str, description: str
) -> ET.Element:
    node = _add(parent, tag)
    _add(node, "Identifier", identifier)
    _add(node, "DisplayName", display[:255])
    _add(node, "Description", description)
    return node


def _unique(identifier: str, where: str, name: str, seen: dict[str, str]) -> str:
    if len(identifier) > 255:
        raise InvalidInput(
            where, "the name is too long for a SiLA identifier", "use a shorter name"
        )
    if identifier in seen:
        raise InvalidInput(
            where,
            f"{name!r} and {seen[identifier]} both become the SiLA identifier {identifier!r}",
            "rename one of them",
        )
    seen[identifier] = repr(name)
    return identifier


def _parameter(
    command: ET.Element, name: str, schema: Mapping[str, Any], seen: dict[str, str]
) -> _Param:
    where = f"parameters.{name}"
    identifier = _unique(sila_identifier(name), where, name, seen)
    kind = schema.get("type")
    unit = str(schema.get("unit", ""))
    doc = f"Parameter {name}" + (f", {unit}" if unit else "") + "."
    if schema.get("log"):
        doc += " Searched on a log scale [log scale]."
    if kind in {"real", "int"}:
        basic = "Real" if kind == "real" else "Integer"
        for bound in ("low", "high"):
            if not isinstance(schema.get(bound), int | float):
                raise InvalidInput(
                    f"{where}.{bound}", "missing or not a number", "give both bounds"
                )
        bounds = [("MinimalInclusive", schema["low"]), ("MaximalInclusive", schema["high"])]
        constraints = [(tag, _decimal(value)) for tag, value in bounds]
        node = _element(command, "Parameter", identifier, name, _with_unit(doc, unit, basic))
        _data_type(node, basic, [*constraints, *_unit_constraints(unit)])
        return _Param(name, identifier)
    if kind == "choice":
        return _choice(command, name, identifier, list(schema["values"]), doc, unit)
    raise InvalidInput(
        f"{where}.type", f"cannot serve parameter type {kind!r}", "real, int or choice"
    )


def _choice(
    command: ET.Element, name: str, identifier: str, values: list[Any], doc: str, unit: str
) -> _Param:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ints = numbers and all(isinstance(v, int) for v in values)
    basic = "Integer" if ints else "Real" if numbers else "String"
    texts = [_decimal(v) if numbers else str(v) for v in values]
    node = _element(command, "Parameter", identifier, name, _with_unit(doc, unit, basic))
    units = _unit_constraints(unit) if numbers else []
    _data_type(node, basic, [("Set", texts), *units])
    as_text = not numbers and not all(isinstance(v, str) for v in values)
    return _Param(name, identifier, tuple(values), as_text)


def _with_unit(doc: str, unit: str, basic: str) -> str:
    """The description, with the unit marker when no Unit constraint can carry the unit."""
    if unit and (basic == "String" or unit not in SI_UNITS):
        return f"{doc} {unit_marker(unit)}"
    return doc


def _unit_constraints(unit: str) -> list[tuple[str, Any]]:
    return [("Unit", unit)] if unit and unit in SI_UNITS else []


def _data_type(parent: ET.Element, basic: str, constraints: Sequence[tuple[str, Any]]) -> None:
    data_type = _add(parent, "DataType")
    if not constraints:
        _add(data_type, "Basic", basic)
        return
    constrained = _add(data_type, "Constrained")
    _add(_add(constrained, "DataType"), "Basic", basic)
    block = _add(constrained, "Constraints")
    for tag, value in constraints:
        if tag == "Set":
            node = _add(block, "Set")
            for text in value:
                _add(node, "Value", text)
        elif tag == "Unit":
            _unit(block, value)
        else:
            _add(block, tag, value)


def _unit(block: ET.Element, label: str) -> None:
    factor, offset, components = SI_UNITS[label]
    node = _add(block, "Unit")
    _add(node, "Label", label)
    _add(node, "Factor", factor)
    _add(node, "Offset", offset)
    for si_unit, exponent in components:
        component = _add(node, "UnitComponent")
        _add(component, "SIUnit", si_unit)
        _add(component, "Exponent", str(exponent))


def _decimal(value: Any) -> str:
    """A number as an XML decimal (no exponent), exact for what ``float()`` reads back."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return format(Decimal(repr(float(value))), "f")


def _add_properties(root: ET.Element) -> None:
    states = ["idle", "busy", "error", "offline", "maintenance"]
    for identifier, basic, constraints, doc in (
        ("StationState", "String", [("Set", states)], "What the station is doing now."),
        ("StatusReason", "String", [], "Why it is in error, offline or in maintenance."),
        ("BusySlots", "Integer", [], "Operations running on the station now."),
        ("QueueLength", "Integer", [], "Operations waiting for a slot on the station."),
        (
            "Heartbeat",
            "Real",
            [("Unit", "s")],
            "When the station last heard from its instrument, Unix time (0: never).",
        ),
    ):
        node = _element(root, "Property", identifier, _display(identifier), doc)
        _add(node, "Observable", "No")
        _data_type(node, basic, constraints)


def _add_abort(root: ET.Element) -> None:
    node = _element(root, "Command", "Abort", "Abort", "Aborts every operation on the station.")
    _add(node, "Observable", "No")


# --- the implementations ------------------------------------------------------------------------


@dataclass(eq=False)
class _Execution:
    """One RunOperation command in flight and the station operation it waits for."""

    future: Future[Measurement]
    op_id: str = ""
    wake: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


class _Executions:
    """Operations started by commands, by execution UUID, until the station has finished them."""

    def __init__(self, station: Station) -> None:
        self._station = station
        self._lock = threading.Lock()
        self._running: dict[UUID, _Execution] = {}
        self.stopping = False

    def add(self, execution_uuid: UUID, future: Future[Measurement], op_id: str) -> _Execution:
        execution = _Execution(future, op_id)
        with self._lock:
            self._running[execution_uuid] = execution
        future.add_done_callback(lambda _: self._done(execution_uuid, execution))
        return execution

    def _done(self, execution_uuid: UUID, execution: _Execution) -> None:
        with self._lock:
            if self._running.get(execution_uuid) is execution:
                del self._running[execution_uuid]
        execution.wake.set()

    def cancel(self, execution_uuid: UUID) -> bool:
        """Cancel one command; False when none with that UUID is in flight.

        Its operation stops too unless another command (same OperationId) still waits for
        it: at once when it is queued in the station; when it runs, through the station's
        ``cancel(op_id)`` where it has one (others run on), else by aborting the station once
        every operation running there is cancelled.
        """
        with self._lock:
            execution = self._running.get(execution_uuid)
            if execution is None:
                return False
            execution.cancelled = True
            live = [e for e in self._running.values() if not e.future.done()]
            shared = any(e.future is execution.future and not e.cancelled for e in live)
            everything = all(e.cancelled for e in live)
        if not shared:
            execution.future.cancel()  # still queued in the station: it never runs
            if not execution.future.done() and isinstance(self._station, Cancellable):
                self._station.cancel(execution.op_id)
            elif everything and not execution.future.done():
                self._station.abort()  # without cancel: all running operations or none
        execution.wake.set()
        return True

    def cancel_all(self, abort: bool = True) -> None:
        """Cancel every command (and abort the station when ``abort``)."""
        with self._lock:
            executions = list(self._running.values())
            for execution in executions:
                execution.cancelled = True
        if abort:
            self._station.abort()
        for execution in executions:
            execution.wake.set()


class _StationFeature(FeatureImplementationBase):
    """The generated feature: RunOperation, Abort and the status properties."""

    def __init__(
        self,
        server: SilaServer,
        station: Station,
        layout: FeatureLayout,
        feature: Feature,
        executions: _Executions,
        expected_duration_s: float | None,
        progress_interval_s: float,
    ) -> None:
        super().__init__(parent_server=server)
        self._station = station
        self._layout = layout
        self._errors = feature.defined_execution_errors
        self._executions = executions
        self._expected = expected_duration_s or None
        self._interval = progress_interval_s

    def RunOperation(
        self, *args: Any, metadata: MetadataDict, instance: ObservableCommandInstance
    ) -> Any:
        """Run one operation on the station and answer its measurement (in ``args`` order)."""
        op = self._operation(args, instance.execution_uuid)
        try:
            future = self._station.run(op)
        except Exception as exc:  # the protocol returns failed futures; be safe anyway
            raise self._error(exc) from exc
        execution = self._executions.add(instance.execution_uuid, future, op.id)
        instance.begin_execution()
        start = time.monotonic()
        while not execution.wake.wait(self._interval):
            self._report(instance, time.monotonic() - start)
        if self._executions.stopping:
            message = f"the SiLA server stopped while operation '{op.id}' ran; retry it"
            raise self._defined("OperationFailed", message)
        if execution.cancelled or future.cancelled():
            raise self._defined("Cancelled", f"operation '{op.id}' was cancelled")
        error = future.exception()
        if error is not None:
            raise self._error(error) from error
        self._learn(time.monotonic() - start)
        return self._responses(op, future.result())

    def _operation(self, args: Sequence[Any], execution_uuid: UUID) -> Operation:
        op_id = str(args[0]) or str(execution_uuid)
        params = {
            p.name: p.native(value) for p, value in zip(self._layout.params, args[1:], strict=True)
        }
        return Operation(op_id, params)

    def _report(self, instance: ObservableCommandInstance, elapsed: float) -> None:
        expected = self._expected
        if expected is None:
            return
        # sila2 defines the setter apart from the getter, which mypy does not follow
        instance.progress = min(elapsed / expected, 0.99)  # type: ignore[misc]
        instance.estimated_remaining_time = timedelta(seconds=max(expected - elapsed, 0.0))

    def _learn(self, duration_s: float) -> None:
        """Follow the station's durations: a running average of the last few."""
        previous = self._expected
        self._expected = duration_s if previous is None else 0.8 * previous + 0.2 * duration_s

    def _responses(self, op: Operation, measurement: Measurement) -> Any:
        values = []
        for name, _ in self._layout.measurements:
            if name not in measurement.values:
                raise self._defined("OperationFailed", f"operation '{op.id}' measured no {name}")
            values.append(float(measurement.values[name]))
        return values[0] if len(values) == 1 else tuple(values)

    def _defined(self, error: str, message: str) -> DefinedExecutionError:
        return DefinedExecutionError(self._errors[error], message)

    def _error(self, exc: BaseException) -> Exception:
        """A station error as the defined execution error a SiLA client receives."""
        if isinstance(exc, InvalidInput):
            return self._defined("InvalidParameters", str(exc))
        if isinstance(exc, OperationFailed):
            return self._defined("OperationFailed", str(exc))
        if isinstance(exc, StationError):
            return self._defined("StationError", str(exc))
        if isinstance(exc, CancelledError):
            return self._defined("Cancelled", "the operation was cancelled on the station")
        return exc if isinstance(exc, Exception) else RuntimeError(repr(exc))

    def Abort(self, *, metadata: MetadataDict) -> None:
        """Abort every operation on the station."""
        self._executions.cancel_all()

    def get_StationState(self, *, metadata: MetadataDict) -> str:
        """The station's state."""
        return self._station.status().state.value

    def get_StatusReason(self, *, metadata: MetadataDict) -> str:
        """Why it is in error, offline or maintenance."""
        return self._station.status().reason

    def get_BusySlots(self, *, metadata: MetadataDict) -> int:
        """Operations running now."""
        return self._station.status().busy_slots

    def get_QueueLength(self, *, metadata: MetadataDict) -> int:
        """Operations waiting for a slot."""
        return self._station.status().queue_length

    def get_Heartbeat(self, *, metadata: MetadataDict) -> float:
        """When the station last heard from its instrument (Unix time)."""
        return float(self._station.status().heartbeat)

    def stop(self) -> None:
        """Release the commands still waiting, so that sila2's stop does not wait for them."""
        self._executions.stopping = True
        self._executions.cancel_all(abort=False)
        super().stop()


class _CancelController(FeatureImplementationBase):
    """SiLA 2's CancelController over the commands of the station feature."""

    def __init__(self, server: SilaServer, feature: Feature, executions: _Executions) -> None:
        super().__init__(parent_server=server)
        self._errors = feature.defined_execution_errors
        self._executions = executions

    def CancelCommand(self, CommandExecutionUUID: str, *, metadata: MetadataDict) -> None:
        """Cancel the command with this execution UUID."""
        if not self._executions.cancel(UUID(CommandExecutionUUID)):
            raise DefinedExecutionError(
                self._errors["InvalidCommandExecutionUUID"],
                f"no command with execution UUID {CommandExecutionUUID} is running",
            )

    def CancelAll(self, *, metadata: MetadataDict) -> None:
        """Cancel every command."""
        self._executions.cancel_all()


# --- the server ---------------------------------------------------------------------------------


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    """StationError when something listens on ``host:port``.

    gRPC binds with SO_REUSEPORT, so a second server on a port would start without an error
    and share the port with the first; a plain bind (with SO_REUSEADDR, which ignores
    connections in TIME_WAIT) tells.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StationError(
                f"cannot serve SiLA 2 on {host}:{port}: {exc.strerror}; choose another port "
                "(or port 0 for a free one)"
            ) from exc


class SilaStationServer:
    """A SiLA 2 server that serves one station (see the module docstring).

    The server does not own the station: :meth:`stop` leaves it open.

    Args:
        station: The station to serve.
        host: Address to listen on (loopback by default).
        port: Port to listen on; 0 picks a free one (read it from :attr:`port` after
            :meth:`start`).
        insecure: Serve without TLS (against the SiLA 2 specification; for loopback and
            tests). With TLS and no ``cert_file``/``key_file``, a self-signed certificate
            is generated: give :attr:`root_certificate` to clients.
        cert_file: PEM certificate chain for TLS.
        key_file: PEM private key for TLS.
        expected_duration_s: First estimate of an operation's duration, s, for progress
            reports (default: none until the first operation has finished).
        progress_interval_s: How often a running command reports progress, s.
        server_name: SiLA server name (default: ``Genesis <station name>``).

    Raises:
        InvalidInput: Bad TLS options, or a station schema SiLA cannot express.
    """

    def __init__(
        self,
        station: Station,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        insecure: bool = True,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        expected_duration_s: float | None = None,
        progress_interval_s: float = 0.1,
        server_name: str | None = None,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise InvalidInput(
                "cert_file/key_file", "give both or neither", "a PEM certificate and its key"
            )
        if insecure and cert_file is not None:
            raise InvalidInput(
                "insecure", "certificate files given to an insecure server", "pass insecure=False"
            )
        self._station = station
        self._info = station.describe()
        self.layout = feature_definition(self._info)
        self._host = host
        self._port = port
        self._insecure = insecure
        self._tls_files = (cert_file, key_file)
        self._expected = expected_duration_s
        self._interval = progress_interval_s
        self._name = (server_name or f"Genesis {self._info.name}")[:255]
        self._server: SilaServer | None = None
        self._executions = _Executions(station)
        self.root_certificate: bytes | None = None
        """PEM certificate clients trust when serving TLS (None when insecure)."""

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, after :meth:`start` with port 0)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether it serves now."""
        return self._server is not None and self._server.running

    @property
    def station(self) -> Station:
        """The station it serves."""
        return self._station

    def start(self) -> SilaStationServer:
        """Listen and serve; returns itself.

        Raises:
            StationError: The port is taken or the server cannot start.
        """
        if self._server is not None:
            raise StationError(f"SiLA server {self.address} was started already")
        self._port = self._port or find_free_port(self._host)
        _check_port_free(self._host, self._port)
        server = self._build()
        try:
            self._listen(server)
        except Exception as exc:
            _close_discovery(server)
            raise StationError(f"cannot start the SiLA 2 server on {self.address}: {exc}") from exc
        self._server = server
        log.info("SiLA 2 server for station %r on %s", self._info.name, self.address)
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving; commands still running end with ``OperationFailed``. Idempotent."""
        server, self._server = self._server, None
        if server is None or not server.running:
            return
        server.stop(grace_period=grace_s)
        _close_discovery(server)

    def __enter__(self) -> SilaStationServer:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SilaStationServer({self._info.name!r}, {self.address}, running={self.running})"

    def _build(self) -> SilaServer:
        server = SilaServer(
            server_name=self._name,
            server_type=SERVER_TYPE,
            server_description=self._info.description or f"Genesis station {self._info.name}",
            server_version=_version(),
            server_vendor_url=VENDOR_URL,
        )
        feature = Feature(self.layout.fdl)
        cancel = Feature(CANCEL_CONTROLLER_FDL)
        implementation = _StationFeature(
            server,
            self._station,
            self.layout,
            feature,
            self._executions,
            self._expected,
            self._interval,
        )
        server.set_feature_implementation(feature, implementation)
        server.set_feature_implementation(
            cancel, _CancelController(server, cancel, self._executions)
        )
        return server

    def _listen(self, server: SilaServer) -> None:
        if self._insecure:
            server.start_insecure(self._host, self._port, enable_discovery=False)
            return
        key, certificate = self._tls(server.server_uuid)
        server.start(
            self._host, self._port, private_key=key, cert_chain=certificate, enable_discovery=False
        )
        self.root_certificate = certificate

    def _tls(self, server_uuid: UUID) -> tuple[bytes, bytes]:
        cert_file, key_file = self._tls_files
        if cert_file is not None and key_file is not None:
            return Path(key_file).read_bytes(), Path(cert_file).read_bytes()
        from sila2.server.encryption import generate_self_signed_certificate

        return generate_self_signed_certificate(server_uuid, self._host)


def _close_discovery(server: SilaServer) -> None:
    """Close the Zeroconf instance sila2 0.13 opens in every SilaServer and never closes."""
    broadcaster = getattr(server, "_SilaServer__service_broadcaster", None)
    zeroconf = getattr(broadcaster, "zc", None)
    if zeroconf is not None:
        zeroconf.close()


def _version() -> str:
    from genesis_platform import __version__

    return str(__version__)


def run_sila_server(
    emulator: str,
    *,
    host: str = "127.0.0.1",
    port: int,
    latency_s: float = 0.5,
    seed: int = 0,
    insecure: bool = True,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    slots: int = 2,
    latency_jitter: float = 0.2,
    noise: float = 1.0,
    failure_rate: float = 0.0,
    stop: threading.Event | None = None,
    ready: Callable[[SilaStationServer], None] | None = None,
) -> None:
    """Serve a simulated station for ``emulator`` over SiLA 2 until SIGINT/SIGTERM or ``stop``.

    This is ``genesis station serve-sila``. On a signal (in the main thread) or when ``stop``
    is set, running operations are aborted, the server stops and the station closes.

    Args:
        emulator: A built-in emulator's name (``electrolyte``, ``reaction-yield``).
        host: Address to listen on.
        port: Port to listen on (0: a free one; ``ready`` learns which).
        latency_s: Mean operation time, s (also the first progress estimate).
        seed: Seed of the simulation.
        insecure: Serve without TLS. With TLS and no certificate files, a self-signed
            certificate is generated and written to a temporary PEM file for clients
            (``root_cert=``), whose path is logged.
        cert_file: PEM certificate chain for TLS.
        key_file: PEM private key for TLS.
        slots: Operations the simulated station runs at once.
        latency_jitter: Spread of the operation time (lognormal sigma).
        noise: Scale of the measurement noise (0: noise-free).
        failure_rate: Probability of a transient fault per operation.
        stop: Set it to stop the server (for callers in other threads).
        ready: Called with the running server once it listens.

    Raises:
        InvalidInput: Unknown emulator or a bad option.
        StationError: The port is taken.
    """
    station = SimulatedStation(
        emulator,
        slots=slots,
        latency_s=latency_s,
        latency_jitter=latency_jitter,
        noise=noise,
        failure_rate=failure_rate,
        seed=seed,
    )
    stop_event = stop or threading.Event()
    server = SilaStationServer(
        station,
        host=host,
        port=port,
        insecure=insecure,
        cert_file=cert_file,
        key_file=key_file,
        expected_duration_s=latency_s,
    )
    try:
        with (
            _stop_on_signals(stop_event),
            _quiet_expected_errors(),
            contextlib.ExitStack() as cleanup,
        ):
            server.start()
            cleanup.callback(server.stop)
            if server.root_certificate is not None and cert_file is None:
                cleanup.enter_context(_certificate_file(server.root_certificate))
            if ready is not None:
                ready(server)
            while not stop_event.wait(0.5):
                pass
    finally:
        station.abort()
        station.close()


@contextlib.contextmanager
def _certificate_file(certificate: bytes) -> Iterator[Path]:
    """The generated certificate in a temporary PEM file, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="genesis-sila-") as directory:
        path = Path(directory) / "root-cert.pem"
        path.write_bytes(certificate)
        log.warning("self-signed SiLA 2 certificate for clients (root_cert=): %s", path)
        yield path


class _ExpectedErrors(logging.Filter):
    """Drops sila2's tracebacks of defined execution errors: outcomes its clients receive."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, DefinedExecutionError)


@contextlib.contextmanager
def _quiet_expected_errors() -> Iterator[None]:
    """While serving from the command line, log warnings without sila2's routine tracebacks.

    sila2 logs every command that ends with an execution error (a cancelled or failed
    operation) with a traceback, twice. The filter goes on the root logger's handlers, or on
    a stderr handler added for the duration when there are none.
    """
    root = logging.getLogger()
    added = None
    if not root.handlers:
        added = logging.StreamHandler()
        added.setLevel(logging.WARNING)
        added.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(added)
    quiet = _ExpectedErrors()
    handlers = list(root.handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
        if added is not None:
            root.removeHandler(added)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT and SIGTERM while inside (main thread only; else nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
