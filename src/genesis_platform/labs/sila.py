"""A station behind any SiLA 2 server: :class:`SilaStation`, the ``sila2`` driver.

SiLA 2 is the lab-automation standard for instruments: a server implements *features*
(described in XML, the feature definition language or FDL), each with commands and
properties; a long-running command is *observable*, so the client receives an execution UUID
at once, follows its status, progress and estimated remaining time, and fetches the
responses when it has finished. This module drives such a command as a Genesis
:class:`~genesis_platform.labs.protocols.Station`, with the client of the ``sila2`` package
(``pip install -e '.[labs]'``):

- **Which command.** By default the first observable command of the first feature that is
  not a SiLA core feature (``org.silastandard/core...``); ``feature`` and ``command`` choose.
- **Schema from the feature definition.** Parameter kinds, bounds, choices and units are read
  from the command's FDL: Real and Integer parameters with ``MinimalInclusive`` /
  ``MaximalInclusive`` (or exclusive) constraints become ``real`` / ``int`` parameters, a
  ``Set`` constraint makes a ``choice``, a ``Unit`` constraint gives the unit's label.
  Numeric responses are the measurements. A String parameter named ``OperationId`` is not a
  station parameter: it carries :attr:`Operation.id`, so the server can be idempotent too.
  Names are the identifiers in snake case (``TargetTemperature`` -> ``target_temperature``),
  except in the features Genesis generates (originator ``org.genesis``), whose display names
  keep the names themselves (:mod:`genesis_platform.labs.sila_server` writes
  ``salt_molality`` as ``SaltMolality``, display name ``salt_molality``).
- **Validation before sending.** ``op.params`` is checked against that schema in
  :meth:`SilaStation.run`, whose future fails at once with
  :class:`~genesis_platform.errors.InvalidInput` naming the field; nothing reaches the server.
- **Slots and queue.** At most ``slots`` commands run on the server at once (one worker
  thread each, which follows its command); the rest wait in a local queue.
- **Completion.** sila2 0.13's client follows the execution info stream in a thread of its
  own and exposes ``done`` without a way to wait on it, so a worker polls it: every 0.5 ms
  for the first 20 ms (a command's round trip is about 3.5 ms on loopback), then backing off
  to every 50 ms. Every 0.5 s the worker also asks for the result, so a command whose info
  stream died with the connection is noticed.
- **Cancel.** SiLA 2 cancels a command through the standard ``CancelController`` feature
  (``CancelCommand`` with the execution UUID, ``CancelAll``). :meth:`SilaStation.cancel`
  (one operation) and :meth:`SilaStation.abort` (this station's operations) use
  ``CancelCommand`` when the server implements it, else an unobservable ``Abort`` command
  without parameters in the station's feature (which stops everything running there), else
  they can only stop waiting (the instrument goes on). :meth:`SilaStation.abort_server`
  stops every command on the server, whoever started it (``CancelAll``, else ``Abort``).
- **Errors.** Foreign errors are translated here: a validation error becomes
  ``InvalidInput``; a defined execution error ``InvalidParameters`` ``InvalidInput``,
  ``StationError`` and ``Cancelled`` ``StationError``, any other execution error
  ``OperationFailed`` (the operation ran and failed; a retry may succeed); a lost connection
  while a command runs ``OperationFailed``; an unreachable server ``StationError``. Messages
  name ``host:port``.
- **Timeouts.** Calls that should be quick (connecting, status, cancel) run in a helper
  thread and give up after ``timeout_s``, because sila2's client sets no deadlines; a
  command itself may run as long as the instrument needs.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeGuard, TypeVar, cast

from sila2.client import ClientObservableCommandInstance, SilaClient
from sila2.framework import (
    CommandExecutionNotFinished,
    DefinedExecutionError,
    FrameworkError,
    SilaConnectionError,
    UndefinedExecutionError,
    ValidationError,
)

from genesis_platform.errors import GenesisError, InvalidInput, OperationFailed, StationError
from genesis_platform.labs._futures import failed, id_clash, settle
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    StationInfo,
    StationState,
    StationStatus,
)
from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "CANCEL_CONTROLLER",
    "OPERATION_ID",
    "ORIGINATOR",
    "OperationProgress",
    "SilaStation",
    "genesis_name",
    "sila_identifier",
    "unit_marker",
]

log = logging.getLogger(__name__)

SILA_NS = "http://www.sila-standard.org"
"""XML namespace of SiLA 2 feature definitions."""

ORIGINATOR = "org.genesis"
"""Originator of the features Genesis generates (``org.genesis/labs/<Name>Station/v1``)."""

OPERATION_ID = "OperationId"
"""Identifier of the String parameter that carries :attr:`Operation.id` (when present)."""

CANCEL_CONTROLLER = "org.silastandard/core.commands/CancelController/v1"
"""Fully qualified identifier of SiLA 2's standard cancellation feature."""

SERVE_HINT = "genesis station serve-sila --emulator NAME --port P"
"""How to start the SiLA 2 server shipped with Genesis."""

_FIRST_POLL_S = 0.0005
_QUICK_S = 0.02
_MAX_POLL_S = 0.05
_PROBE_EVERY_S = 0.5
_STATES = {state.value: state for state in StationState}
_UNIT_MARKER = re.compile(r"\[unit: ([^\]]*)\]")
_LOG_MARKER = "[log scale]"

T = TypeVar("T")


def sila_identifier(name: str) -> str:
    """The SiLA 2 identifier for a Genesis name: ``salt_molality`` -> ``SaltMolality``.

    Identifiers are ``[A-Z][a-zA-Z0-9]*``: words split at anything but ASCII letters and
    digits are capitalised and joined; ``X`` goes first when the result would not start with
    a letter.
    """
    words = re.split(r"[^0-9A-Za-z]+", name)
    joined = "".join(word[:1].upper() + word[1:] for word in words if word)
    return joined if joined[:1].isalpha() else "X" + joined


def genesis_name(identifier: str, display_name: str = "") -> str:
    """The Genesis name of a SiLA element.

    Features that Genesis generates (originator :data:`ORIGINATOR`) keep each name in the
    display name, so it is used when it spells the identifier (``("SaltMolality",
    "salt_molality")`` gives ``salt_molality``). Otherwise (``display_name`` empty, as for
    every other server's features) the name is the identifier in snake case:
    ``TargetTemperature`` gives ``target_temperature``, ``HPLCFlow`` ``hplc_flow``.
    """
    if display_name.isidentifier() and sila_identifier(display_name) == identifier:
        return display_name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", identifier).lower()


def unit_marker(unit: str) -> str:
    """How a description carries a unit that no SiLA ``Unit`` constraint can express."""
    return f"[unit: {unit}]"


@dataclass(frozen=True)
class OperationProgress:
    """How far a running command is, as its SiLA server last said.

    Attributes:
        execution_uuid: The SiLA command execution UUID ("" until the server accepted it).
        status: SiLA execution status (``waiting``, ``running``, ...); "" while queued here.
        progress: Fraction done in [0, 1], if the server says.
        remaining_s: Estimated remaining time, s, if the server says.
    """

    execution_uuid: str
    status: str
    progress: float | None
    remaining_s: float | None


# --- the command's schema, read from its feature definition --------------------------------


@dataclass(frozen=True)
class _Field:
    """One parameter or response of the command, with what SilaStation checks about it."""

    name: str
    identifier: str
    kind: str  # real | int | choice | string | boolean, or an unsupported SiLA type
    unit: str = ""
    log: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    values: tuple[ParamValue, ...] = ()
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    @property
    def numeric(self) -> bool:
        """Whether its values are numbers (a measurement, for a response)."""
        return self.kind in {"real", "int"} or (
            self.kind == "choice" and all(_is_number(v) for v in self.values)
        )

    def schema(self) -> dict[str, Any]:
        """The campaign-file form (``Space.to_dict`` entries plus ``unit``)."""
        if self.kind == "choice":
            return {"type": "choice", "values": list(self.values), "unit": self.unit}
        if self.kind in {"real", "int"}:
            bounds = {k: v for k, v in (("low", self.low), ("high", self.high)) if v is not None}
            return {"type": self.kind, **bounds, "log": self.log, "unit": self.unit}
        extra = {"pattern": self.pattern, "min_length": self.min_length}
        extra["max_length"] = self.max_length
        present = {k: v for k, v in extra.items() if v is not None}
        return {"type": self.kind, **present, "unit": self.unit}

    def coerce(self, value: object, where: str) -> ParamValue:
        """The value to send, or InvalidInput (field ``where``) when it does not fit."""
        if self.kind == "choice":
            return self._choice(value, where)
        if self.kind in {"real", "int"}:
            return self._number(value, where)
        if self.kind == "string":
            return self._string(value, where)
        if self.kind == "boolean" and isinstance(value, bool):
            return value
        raise InvalidInput(where, f"{value!r} is not a {self.kind}")

    def _choice(self, value: object, where: str) -> ParamValue:
        for choice in self.values:
            if isinstance(choice, str):  # a number matches its text (mixed choices travel so)
                same = choice == (str(value) if _is_number(value) else value)
            else:
                same = _same_number(choice, value)
            if same:
                return choice
        raise InvalidInput(where, f"{value!r} is not one of {list(self.values)}")

    def _number(self, value: object, where: str) -> ParamValue:
        if not _is_number(value) or (self.kind == "int" and float(value) != int(value)):
            raise InvalidInput(where, f"{value!r} is not a finite {self.kind} number")
        number = int(value) if self.kind == "int" else float(value)
        too_low = self.low is not None and (
            number <= self.low if self.low_open else number < self.low
        )
        too_high = self.high is not None and (
            number >= self.high if self.high_open else number > self.high
        )
        if too_low or too_high:
            raise InvalidInput(where, f"{value!r} is outside {self._range()}")
        return number

    def _string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise InvalidInput(where, f"{value!r} is not a string")
        if self.min_length is not None and len(value) < self.min_length:
            raise InvalidInput(where, f"{value!r} is shorter than {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidInput(where, f"{value!r} is longer than {self.max_length} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise InvalidInput(where, f"{value!r} does not match the pattern {self.pattern!r}")
        return value

    def _range(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class _Command:
    """The observable command a SilaStation drives, and what its server offers around it."""

    feature: str
    feature_fqi: str
    command: str
    description: str
    operation_id: bool
    params: tuple[_Field, ...]
    responses: tuple[_Field, ...]
    properties: frozenset[str]
    abort_command: str | None
    cancel_controller: bool = False


def _tag(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _text(element: ET.Element, child: str) -> str:
    found = element.find(f"s:{child}", {"s": SILA_NS})
    return (found.text or "").strip() if found is not None else ""


def _children(element: ET.Element, child: str) -> list[ET.Element]:
    return element.findall(f"s:{child}", {"s": SILA_NS})


def _feature_fqi(root: ET.Element) -> str:
    major = root.get("FeatureVersion", "1.0").split(".")[0]
    category = root.get("Category", "none")
    return f"{root.get('Originator', '')}/{category}/{_text(root, 'Identifier')}/v{major}"


def _resolve(
    data_type: ET.Element, definitions: Mapping[str, ET.Element]
) -> tuple[str, list[ET.Element]]:
    """The SiLA type under a ``DataType`` element, and the constraints met on the way."""
    constraints: list[ET.Element] = []
    for _ in range(64):  # custom data types may refer to each other; no cycle runs forever
        inner = next(iter(data_type), None)
        if inner is None:
            break
        kind = _tag(inner)
        if kind == "Basic":
            return (inner.text or "").strip(), constraints
        if kind == "Constrained":
            block = inner.find("s:Constraints", {"s": SILA_NS})
            constraints.extend(list(block) if block is not None else [])
            wrapped = inner.find("s:DataType", {"s": SILA_NS})
            if wrapped is None:
                break
            data_type = wrapped
            continue
        if kind == "DataTypeIdentifier":
            target = definitions.get((inner.text or "").strip())
            if target is None:
                break
            data_type = target
            continue
        return kind, constraints
    return "Unknown", constraints


def _field(element: ET.Element, definitions: Mapping[str, ET.Element], ours: bool) -> _Field:
    """A parameter or response of a command, from its FDL element (``ours``: Genesis made it)."""
    identifier = _text(element, "Identifier")
    name = genesis_name(identifier, _text(element, "DisplayName") if ours else "")
    description = _text(element, "Description")
    data_type = element.find("s:DataType", {"s": SILA_NS})
    basic, constraints = _resolve(data_type, definitions) if data_type is not None else ("", [])
    by_kind = {_tag(c): c for c in constraints}
    marker = _UNIT_MARKER.search(description)
    unit = _text(by_kind["Unit"], "Label") if "Unit" in by_kind else ""
    common: dict[str, Any] = {
        "name": name,
        "identifier": identifier,
        "unit": unit or (marker.group(1) if marker else ""),
        "log": _LOG_MARKER in description,
    }
    if "Set" in by_kind:
        values = tuple(_parse(basic, v.text or "") for v in _children(by_kind["Set"], "Value"))
        return _Field(kind="choice", values=values, **common)
    if basic in {"Real", "Integer"}:
        return _Field(
            kind="real" if basic == "Real" else "int", **common, **_bounds(basic, by_kind)
        )
    if basic == "String":
        return _Field(kind="string", **common, **_lengths(by_kind))
    return _Field(kind=basic.lower(), **common)


def _parse(basic: str, text: str) -> ParamValue:
    if basic == "Integer":
        return int(float(text))
    if basic == "Real":
        return float(text)
    return text


def _bounds(basic: str, by_kind: Mapping[str, ET.Element]) -> dict[str, Any]:
    """low/high (and whether open) from the comparison constraints; ints made inclusive."""
    found: dict[str, Any] = {}
    for side, inclusive, exclusive in (
        ("low", "MinimalInclusive", "MinimalExclusive"),
        ("high", "MaximalInclusive", "MaximalExclusive"),
    ):
        for tag, open_ in ((inclusive, False), (exclusive, True)):
            if tag in by_kind:
                found[side] = float((by_kind[tag].text or "").strip())
                found[f"{side}_open"] = open_
    if basic == "Integer":  # integer bounds are inclusive integers, whatever the FDL wrote
        if "low" in found:
            low = found["low"]
            found["low"] = math.floor(low) + 1 if found.pop("low_open") else math.ceil(low)
        if "high" in found:
            high = found["high"]
            found["high"] = math.ceil(high) - 1 if found.pop("high_open") else math.floor(high)
    return found


def _lengths(by_kind: Mapping[str, ET.Element]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "Length" in by_kind:
        length = int((by_kind["Length"].text or "0").strip())
        found["min_length"] = found["max_length"] = length
    for tag, key in (("MinimalLength", "min_length"), ("MaximalLength", "max_length")):
        if tag in by_kind:
            found[key] = int((by_kind[tag].text or "0").strip())
    if "Pattern" in by_kind:
        found["pattern"] = (by_kind["Pattern"].text or "").strip()
    return found


def _read_command(fdl: str, command: str | None) -> _Command | None:
    """The observable command ``command`` (default: the first one) of a feature definition."""
    root = ET.fromstring(fdl)
    definitions: dict[str, ET.Element] = {}
    for definition in _children(root, "DataTypeDefinition"):
        data_type = definition.find("s:DataType", {"s": SILA_NS})
        if data_type is not None:
            definitions[_text(definition, "Identifier")] = data_type
    commands = _children(root, "Command")
    observable = [c for c in commands if _text(c, "Observable") == "Yes"]
    chosen = [c for c in observable if command is None or _text(c, "Identifier") == command]
    if not chosen:
        return None
    element = chosen[0]
    ours = root.get("Originator") == ORIGINATOR
    params = [_field(p, definitions, ours) for p in _children(element, "Parameter")]
    operation_id = any(p.identifier == OPERATION_ID and p.kind == "string" for p in params)
    abort = [
        _text(c, "Identifier")
        for c in commands
        if _text(c, "Observable") == "No"
        and _text(c, "Identifier") == "Abort"
        and not _children(c, "Parameter")
    ]
    return _Command(
        feature=_text(root, "Identifier"),
        feature_fqi=_feature_fqi(root),
        command=_text(element, "Identifier"),
        description=_text(root, "Description") or _text(element, "Description"),
        operation_id=operation_id,
        params=tuple(p for p in params if not (operation_id and p.identifier == OPERATION_ID)),
        responses=tuple(_field(r, definitions, ours) for r in _children(element, "Response")),
        properties=frozenset(_text(p, "Identifier") for p in _children(root, "Property")),
        abort_command=abort[0] if abort else None,
    )


def _is_core(fqi: str) -> bool:
    originator, _, rest = fqi.partition("/")
    return originator == "org.silastandard" and rest.startswith("core")


# --- the station ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """One accepted operation, from the local queue to its SiLA responses."""

    op: Operation
    arguments: dict[str, ParamValue]
    future: Future[Measurement] = field(default_factory=Future)
    stop: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    settled: bool = False
    """True once someone (the worker, abort or cancel) has claimed the right to set it."""
    queued: Future[None] | None = None
    instance: ClientObservableCommandInstance[Any] | None = None


class SilaStation:
    """A station whose operations are an observable command of a SiLA 2 server.

    Args:
        name: The station's name in Genesis.
        host: Host name or IP address of the SiLA 2 server.
        port: Its port.
        feature: Identifier (``ElectrolyteStation``) or fully qualified identifier of the
            feature to use (default: the first feature that is not a SiLA core feature and
            has an observable command).
        command: Identifier of the observable command (default: the feature's first).
        insecure: Talk without TLS (the shipped server's default; against the SiLA 2
            specification, for loopback and tests).
        root_cert: For TLS: the server's root certificate, as a PEM file path or PEM text
            (default: the system's trust store).
        slots: Commands run on the server at once; more operations wait in a local queue.
        timeout_s: How long a call that should be quick (connecting, status, cancel) may
            take, s.

    Raises:
        InvalidInput: A bad option, or no such feature or command (fields ``feature``,
            ``command``, ``slots``, ``timeout_s``, ``root_cert``).
        StationError: The server cannot be reached or has no usable command; the message
            names ``host:port`` and how to start the shipped server.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        feature: str | None = None,
        command: str | None = None,
        insecure: bool = True,
        root_cert: str | None = None,
        slots: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidInput("slots", f"must be an integer >= 1, got {slots!r}")
        if not _is_number(timeout_s) or timeout_s <= 0:
            raise InvalidInput("timeout_s", f"must be a number > 0, got {timeout_s!r}")
        self._name = name
        self._address = f"{host}:{port}"
        self._timeout_s = float(timeout_s)
        self._slots = slots
        self._calls = ThreadPoolExecutor(2, thread_name_prefix=f"sila-calls-{name}")
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._closed = False
        self._heartbeat = 0.0
        certificate = _read_certificate(root_cert) if root_cert is not None else None
        try:
            self._client = self._bounded(
                "connect", lambda: _connect(host, port, insecure, certificate)
            )
        except BaseException:
            self._calls.shutdown(wait=False)
            raise
        try:
            self._spec = self._bounded(
                "read the feature definitions", lambda: self._find(feature, command)
            )
        except BaseException:
            self._client.close()
            self._calls.shutdown(wait=False)
            raise
        sila_feature = getattr(self._client, self._spec.feature)
        self._command: Callable[..., ClientObservableCommandInstance[Any]] = getattr(
            sila_feature, self._spec.command
        )
        self._info = self._describe()
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix=f"sila-{name}")

    @property
    def name(self) -> str:
        """The station's name."""
        return self._name

    @property
    def address(self) -> str:
        """``host:port`` of the SiLA 2 server."""
        return self._address

    def describe(self) -> StationInfo:
        """Capabilities, parameter and measurement schemas (from the feature definition)."""
        return self._info

    def status(self) -> StationStatus:
        """State, busy slots, queue length and heartbeat; ``offline`` when unreachable.

        The state is the server's ``StationState`` property when its feature has one (the
        shipped server's does); otherwise busy while this driver has operations in flight.
        The heartbeat is when a call to the server last succeeded. Never raises.
        """
        with self._lock:
            busy = sum(job.running for job in self._jobs.values())
            queued = len(self._jobs) - busy
            closed = self._closed
        if closed:
            return StationStatus(
                StationState.OFFLINE, busy, queued, "station closed", self._heartbeat
            )
        try:
            state, reason = self._bounded("read its status", self._probe)
        except Exception as exc:  # StationError naming the server, or a shut-down pool
            reason = str(exc) if isinstance(exc, StationError) else f"{self._address}: {exc}"
            return StationStatus(StationState.OFFLINE, busy, queued, reason, self._heartbeat)
        if state in {StationState.ERROR, StationState.OFFLINE, StationState.MAINTENANCE}:
            return StationStatus(state, busy, queued, reason, self._heartbeat)
        working = busy or queued or state is StationState.BUSY
        state = StationState.BUSY if working else StationState.IDLE
        return StationStatus(state, busy, queued, "", self._heartbeat)

    def run(self, op: Operation) -> Future[Measurement]:
        """Queue ``op`` and return its future at once.

        Idempotent by operation id: while an operation with the same id and parameters is
        queued or running, its future is returned and nothing new runs.

        The future fails at once, before anything is sent, with
        :class:`~genesis_platform.errors.InvalidInput` when the parameters do not fit the
        command's schema (or the id is in flight with other parameters), and with
        :class:`~genesis_platform.errors.StationError` once the station is closed. It fails
        later with :class:`~genesis_platform.errors.OperationFailed` when the command fails
        or the connection is lost while it runs, and with
        :class:`~genesis_platform.errors.StationError` on :meth:`abort`, :meth:`cancel`,
        :meth:`abort_server` or when the server cannot run it.
        """
        try:
            arguments = self._arguments(op)
        except InvalidInput as exc:
            return failed(exc)
        with self._lock:
            if self._closed:
                return failed(StationError(f"station '{self._name}' is closed; open it again"))
            existing = self._jobs.get(op.id)
            if existing is not None:
                return existing.future if existing.arguments == arguments else failed(id_clash(op))
            job = _Job(op, arguments)
            self._jobs[op.id] = job
            job.queued = self._pool.submit(self._execute, job)
        job.future.add_done_callback(lambda _: self._forget(job))
        return job.future

    def progress(self, operation_id: str) -> OperationProgress | None:
        """How far operation ``operation_id`` is; None when it is not queued or running."""
        with self._lock:
            job = self._jobs.get(operation_id)
        if job is None:
            return None
        instance = job.instance
        if instance is None:
            return OperationProgress("", "", None, None)
        remaining = instance.estimated_remaining_time
        status = instance.status
        return OperationProgress(
            str(instance.execution_uuid),
            status.name if status is not None else "",
            instance.progress,
            remaining.total_seconds() if remaining is not None else None,
        )

    def abort(self) -> None:
        """Stop running operations and drop the queue; their futures fail with StationError.

        Running commands are cancelled on the server (``CancelController.CancelCommand``, or
        the feature's ``Abort`` command when there is no CancelController) before this
        returns.
        """
        self._cancel_remote(self._drop_all())

    def cancel(self, op_id: str) -> bool:
        """Stop operation ``op_id``, queued or running; its future fails with StationError.

        The future fails at once and the other operations go on. A queued operation is
        dropped before anything is sent; a running one's command execution is cancelled on
        the server with ``CancelController.CancelCommand`` before this returns. A server
        without CancelController is sent what :meth:`abort` sends it: the feature's
        ``Abort`` command, which stops *every* operation running there (this station's
        other running operations then end as the server reports them), or, when it has no
        ``Abort`` either, nothing (the command goes on there; this station stops waiting).

        Returns:
            False when no such operation is queued or running here.
        """
        with self._lock:
            job = self._jobs.get(op_id)
            if job is None or job.settled:
                return False
            del self._jobs[op_id]
            job.settled = True
            job.stop.set()
            if job.queued is not None:
                job.queued.cancel()
            instance = job.instance
        message = f"aborted: operation '{op_id}' cancelled on SiLA server {self._address}"
        settle(job.future, error=StationError(message))
        if instance is not None:  # else the worker cancels it once the server has accepted it
            self._cancel_remote([instance])
        return True

    def abort_server(self) -> bool:
        """Tell the server to stop every command running there, whoever started it.

        For an operator's ``genesis station abort`` from another process: this station may
        have no operations of its own, and :meth:`abort` only cancels its own executions.
        This station's own operations are aborted as by :meth:`abort` (their futures fail
        with StationError); the server is told with ``CancelController.CancelAll`` when it
        implements it, else with the feature's ``Abort`` command.

        Returns:
            True once the server has been told; False when it offers neither (only this
            station's own operations stopped).

        Raises:
            StationError: The station is closed, or the server did not answer within
                ``timeout_s`` or refused (the message names ``host:port``).
        """
        if self._closed:
            raise StationError(f"station '{self._name}' is closed; open it again")
        started = self._drop_all()
        call: Callable[[], object] | None = None
        if self._spec.cancel_controller:
            call = getattr(cast(Any, self._client).CancelController, "CancelAll", None)
        if call is None and self._spec.abort_command is not None:
            call = getattr(getattr(self._client, self._spec.feature), self._spec.abort_command)
        if call is None:
            self._cancel_remote(started)  # nothing to send: it warns that they go on there
            return False
        try:
            self._bounded("stop every command", call)
        finally:
            for instance in started:
                instance.cancel_execution_info_subscription()
        return True

    def close(self) -> None:
        """Stop accepting operations, wait for queued and running ones, and disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)
        self._client.close()
        self._calls.shutdown(wait=False)

    def __enter__(self) -> SilaStation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        self.close()

    def __repr__(self) -> str:
        spec = self._spec
        return f"SilaStation({self._name!r}, {self._address}, {spec.feature}.{spec.command})"

    # --- connecting and describing

    def _bounded(self, what: str, call: Callable[[], T]) -> T:
        """Run a call that should be quick, giving up after ``timeout_s``.

        Raises:
            StationError: No answer in time, or the call failed (naming the server); a
                Genesis error from ``call`` itself passes unchanged.
        """
        future = self._calls.submit(call)
        try:
            result = future.result(timeout=self._timeout_s)
        except FutureTimeout:
            raise StationError(
                f"SiLA server {self._address} did not answer within {self._timeout_s:g} s "
                f"(trying to {what})"
            ) from None
        except GenesisError:
            raise
        except Exception as exc:
            raise StationError(f"SiLA server {self._address}: cannot {what}: {exc}") from exc
        self._heartbeat = time.time()
        return result

    def _find(self, feature: str | None, command: str | None) -> _Command:
        """The command to drive, from the server's feature definitions."""
        service = self._client.SiLAService
        fqis = [str(f) for f in service.ImplementedFeatures.get()]
        if feature is not None:
            wanted = [f for f in fqis if f == feature or f.split("/")[2:3] == [feature]]
            if not wanted:
                raise InvalidInput(
                    "feature",
                    f"SiLA server {self._address} has no feature {feature!r}",
                    f"its features are {fqis}",
                )
            candidates = wanted
        else:
            candidates = [f for f in fqis if not _is_core(f)]
        for fqi in candidates:
            fdl = service.GetFeatureDefinition(FeatureIdentifier=fqi).FeatureDefinition
            found = _read_command(fdl, command)
            if found is not None:
                self._check_params(found)
                return replace(found, cancel_controller=CANCEL_CONTROLLER in fqis)
        if feature is not None and command is not None:
            raise InvalidInput(
                "command",
                f"feature {feature!r} on {self._address} has no observable command {command!r}",
            )
        what = f"an observable command {command!r}" if command else "an observable command"
        raise StationError(
            f"SiLA server {self._address} has no feature with {what} (features: {fqis}); "
            f"point feature=/command= at one, or start the shipped server: {SERVE_HINT}"
        )

    def _check_params(self, spec: _Command) -> None:
        usable = {"real", "int", "choice", "string", "boolean"}
        for param in spec.params:
            if param.kind not in usable:
                raise StationError(
                    f"command {spec.feature}.{spec.command} on {self._address} takes parameter "
                    f"{param.identifier} of SiLA type {param.kind}; SilaStation sends Real, "
                    "Integer, String and Boolean parameters only"
                )

    def _describe(self) -> StationInfo:
        spec = self._spec
        return StationInfo(
            name=self._name,
            driver="sila2",
            description=spec.description,
            capabilities=("measure",),
            parameters={p.name: p.schema() for p in spec.params},
            measurements={r.name: {"unit": r.unit} for r in spec.responses if r.numeric},
            slots=self._slots,
            protocol="SiLA 2",
        )

    def _probe(self) -> tuple[StationState | None, str]:
        """The server's station state and reason, or (None, "") when it has no such property."""
        feature = getattr(self._client, self._spec.feature)
        if "StationState" not in self._spec.properties:
            self._client.SiLAService.ServerUUID.get()
            return None, ""
        state = _STATES.get(str(feature.StationState.get()))
        reason = ""
        troubled = state in {StationState.ERROR, StationState.OFFLINE, StationState.MAINTENANCE}
        if troubled and "StatusReason" in self._spec.properties:
            reason = str(feature.StatusReason.get())
        return state, reason

    # --- running

    def _arguments(self, op: Operation) -> dict[str, ParamValue]:
        """The command's arguments by SiLA identifier, or InvalidInput naming the field."""
        params = {p.name: p for p in self._spec.params}
        for key in op.params:
            if key not in params:
                raise InvalidInput(
                    f"op.params.{key}",
                    f"not a parameter of station '{self._name}'",
                    f"its parameters are {sorted(params)}",
                )
        arguments: dict[str, ParamValue] = {}
        if self._spec.operation_id:
            arguments[OPERATION_ID] = op.id
        for name, param in params.items():
            where = f"op.params.{name}"
            if name not in op.params:
                raise InvalidInput(where, "missing", f"give a value: {param.schema()}")
            arguments[param.identifier] = param.coerce(op.params[name], where)
        return arguments

    def _drop_all(self) -> list[ClientObservableCommandInstance[Any]]:
        """Fail every queued and running operation here; the commands the server accepted."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if not job.settled]
            self._jobs.clear()
            started = []
            for job in jobs:
                job.settled = True
                job.stop.set()
                if job.queued is not None:
                    job.queued.cancel()
                if job.instance is not None:
                    started.append(job.instance)
        for job in jobs:
            message = f"aborted: operation '{job.op.id}' stopped on SiLA server {self._address}"
            settle(job.future, error=StationError(message))
        return started

    def _forget(self, job: _Job) -> None:
        with self._lock:
            if self._jobs.get(job.op.id) is job:
                del self._jobs[job.op.id]

    def _execute(self, job: _Job) -> None:
        """Worker body: run one job's command and settle its future (never raises)."""
        with self._lock:
            if job.settled:
                return
            if not job.future.set_running_or_notify_cancel():
                job.settled = True
                return
            job.running = True
        try:
            measurement = self._perform(job)
        except (StationError, InvalidInput) as exc:
            self._finish(job, error=exc)
        except Exception as exc:  # a driver bug must not leave the future pending
            self._finish(job, error=StationError(f"SiLA station '{self._name}' failed: {exc!r}"))
        else:
            self._finish(job, result=measurement)

    def _perform(self, job: _Job) -> Measurement | None:
        """Start the command, follow it, and read its responses; None when aborted."""
        start = time.monotonic()
        try:
            instance = self._command(**job.arguments)
        except Exception as exc:
            raise self._start_error(job.op, exc) from exc
        self._heartbeat = time.time()
        with self._lock:
            job.instance = instance
            aborted = job.stop.is_set()
        if aborted:  # abort() ran while the command was being started: it is ours to cancel
            self._cancel_remote([instance])
            return None
        responses = self._follow(job, instance)
        if responses is None:
            return None
        return self._measurement(job.op, instance, responses, time.monotonic() - start)

    def _follow(
        self, job: _Job, instance: ClientObservableCommandInstance[Any]
    ) -> dict[str, Any] | None:
        """Wait until the command has finished and return its responses; None when aborted."""
        start = time.monotonic()
        next_probe = start + _PROBE_EVERY_S
        delay = _FIRST_POLL_S
        while not instance.done:
            if job.stop.wait(delay):
                instance.cancel_execution_info_subscription()
                return None
            if time.monotonic() - start > _QUICK_S:  # a long command: poll less often
                delay = min(delay * 2, _MAX_POLL_S)
            if time.monotonic() >= next_probe:  # the info stream may have died with the connection
                next_probe = time.monotonic() + _PROBE_EVERY_S
                try:
                    return self._responses(job.op, instance)
                except _NotFinished:
                    continue
        return self._responses(job.op, instance)

    def _responses(
        self, op: Operation, instance: ClientObservableCommandInstance[Any]
    ) -> dict[str, Any]:
        try:
            responses = instance.get_responses()
        except CommandExecutionNotFinished:
            raise _NotFinished from None
        except Exception as exc:
            raise self._run_error(op, exc) from exc
        self._heartbeat = time.time()
        return dict(responses._asdict())

    def _measurement(
        self,
        op: Operation,
        instance: ClientObservableCommandInstance[Any],
        responses: Mapping[str, Any],
        duration_s: float,
    ) -> Measurement:
        values: dict[str, float] = {}
        other: dict[str, Any] = {}
        for response in self._spec.responses:
            value = responses.get(response.identifier)
            if response.numeric and _is_number(value):
                values[response.name] = float(value)
            else:
                other[response.name] = value
        metadata: dict[str, Any] = {
            "sila_server": self._address,
            "feature": self._spec.feature_fqi,
            "command": self._spec.command,
        }
        if other:
            metadata["responses"] = other
        return Measurement(op.id, values, str(instance.execution_uuid), duration_s, metadata)

    def _finish(
        self, job: _Job, result: Measurement | None = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            job.running = False
            claimed = not job.settled
            job.settled = True
        if claimed:
            settle(job.future, result=result, error=error)

    def _cancel_remote(self, instances: Sequence[ClientObservableCommandInstance[Any]]) -> None:
        """Tell the server to cancel these command executions (best effort, bounded)."""
        if not instances:
            return
        feature = getattr(self._client, self._spec.feature)
        try:
            if self._spec.cancel_controller:
                cancel = cast(Any, self._client).CancelController.CancelCommand
                for instance in instances:
                    self._bounded("cancel a command", _canceller(cancel, instance))
            elif self._spec.abort_command is not None:
                self._bounded("abort", getattr(feature, self._spec.abort_command))
            else:
                log.warning(
                    "SiLA server %s offers neither CancelController nor Abort: %d command(s) "
                    "go on there",
                    self._address,
                    len(instances),
                )
        except Exception as exc:
            log.warning("could not cancel commands on SiLA server %s: %s", self._address, exc)
        for instance in instances:
            instance.cancel_execution_info_subscription()

    # --- errors

    def _start_error(self, op: Operation, exc: Exception) -> StationError | InvalidInput:
        """Translate an error from starting a command."""
        if isinstance(exc, SilaConnectionError):
            return StationError(
                f"SiLA server {self._address} is unreachable ({exc}); operation '{op.id}' was not "
                f"started. Start the server (the shipped one: {SERVE_HINT}) or check host and port"
            )
        return self._run_error(op, exc)

    def _run_error(self, op: Operation, exc: Exception) -> StationError | InvalidInput:
        """Translate an error from a running command (see the module docstring)."""
        where = f"operation '{op.id}' on SiLA server {self._address}"
        if isinstance(exc, ValidationError):
            return InvalidInput(
                self._field_of(exc), f"refused by SiLA server {self._address}: {exc.message}"
            )
        if isinstance(exc, DefinedExecutionError):
            return self._defined_error(exc, where)
        if isinstance(exc, UndefinedExecutionError):
            return OperationFailed(f"{where} failed: {exc.message}; retry it")
        if isinstance(exc, SilaConnectionError):
            return OperationFailed(f"lost the connection to {where} ({exc}); retry it")
        if isinstance(exc, FrameworkError):
            return StationError(
                f"{where}: SiLA framework error {type(exc).__name__}: {exc.message}"
            )
        return StationError(f"{where} failed: {exc!r}")

    def _defined_error(self, exc: DefinedExecutionError, where: str) -> StationError | InvalidInput:
        if exc.identifier == "InvalidParameters":
            return InvalidInput(
                "op.params", f"refused by SiLA server {self._address}: {exc.message}"
            )
        if exc.identifier == "Cancelled":
            return StationError(f"aborted: {where} was cancelled ({exc.message})")
        if exc.identifier == "StationError":
            return StationError(f"{where}: {exc.message}")
        return OperationFailed(f"{where} failed: {exc.identifier}: {exc.message}; retry it")

    def _field_of(self, exc: ValidationError) -> str:
        fqi = exc.parameter_fully_qualified_identifier
        identifier = str(fqi).rpartition("/")[2] if fqi is not None else ""
        names = {p.identifier: p.name for p in self._spec.params}
        return f"op.params.{names[identifier]}" if identifier in names else "op.params"


class _NotFinished(Exception):
    """The command has not finished yet (internal)."""


def _connect(host: str, port: int, insecure: bool, certificate: bytes | None) -> SilaClient:
    """A sila2 client, or StationError naming the address and how to start a server."""
    try:
        with warnings.catch_warnings():
            # sila2 warns when a certificate lacks SiLA's server-UUID extension; many do.
            warnings.filterwarnings("ignore", message="Server certificate is missing")
            if certificate is not None:
                return SilaClient(host, port, root_certs=certificate)
            return SilaClient(host, port, insecure=insecure)
    except Exception as exc:
        mode = "insecure" if insecure and certificate is None else "TLS"
        raise StationError(
            f"cannot connect to a SiLA 2 server at {host}:{port} ({mode}): {exc}. Start it "
            f"first; the shipped server for an emulator is `{SERVE_HINT}`"
        ) from exc


def _read_certificate(root_cert: str) -> bytes:
    if root_cert.lstrip().startswith("-----BEGIN"):
        return root_cert.encode()
    try:
        return Path(root_cert).read_bytes()
    except OSError as exc:
        raise InvalidInput(
            "root_cert", f"cannot read {root_cert!r}: {exc.strerror}", "give a PEM file"
        ) from exc


def _canceller(
    cancel: Callable[..., Any], instance: ClientObservableCommandInstance[Any]
) -> Callable[[], None]:
    """A call that cancels one execution; one that has finished meanwhile needs nothing."""

    def call() -> None:
        try:
            cancel(CommandExecutionUUID=str(instance.execution_uuid))
        except DefinedExecutionError as exc:
            if exc.identifier != "InvalidCommandExecutionUUID":
                raise

    return call


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same_number(choice: ParamValue, value: object) -> bool:
    return _is_number(choice) and _is_number(value) and float(choice) == float(value)
