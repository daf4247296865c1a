"""Safety limits and interlocks of a station, checked before an operation is sent.

A station's operator declares, when registering it (``genesis station add ... --limit
T=20:60 --interlock "T <= 60 if solvent == DMC"``):

- **limits**: a numeric range (``T=20:60``, either side may be open: ``T=:60``) or a set of
  allowed values (``solvent=EC,PC``) per parameter;
- **interlocks**: conditions that must hold, written like campaign constraints
  (``"x_salt * T <= 120"``, parsed by :mod:`genesis_platform.planning.constraints`, never
  ``eval``), optionally only when categorical parameters have given values
  (``"T <= 60 if solvent == DMC"``, ``"T <= 40 if solvent in (DMC, EC)"``): forbidden
  combinations;
- **timeout_s**: how long one operation may run before Genesis aborts it.

:meth:`SafetyPolicy.check` refuses an operation that breaks any of them with
:class:`~genesis_platform.errors.SafetyViolation`, naming the parameter and the rule; the
station's driver never sees it, whatever the planner proposed. The policy is Genesis's own
check, in front of every driver; a driver's own schema checks come after it.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genesis_platform.errors import InvalidInput, SafetyViolation
from genesis_platform.planning.constraints import ParameterConstraint, parse_parameter_constraint
from genesis_platform.planning.protocols import ParamValue

__all__ = ["Interlock", "Limit", "SafetyPolicy", "describe_config"]


@dataclass(frozen=True)
class Limit:
    """The values one parameter may take: a closed range, or a set of allowed values.

    Attributes:
        low: Smallest allowed value (None: no lower limit).
        high: Largest allowed value (None: no upper limit).
        allowed: For a categorical parameter, the allowed values (empty: any).
    """

    low: float | None = None
    high: float | None = None
    allowed: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, where: str) -> Limit:
        """``"20:60"``, ``":60"``, ``"20:"`` or ``"EC,PC"``.

        Raises:
            InvalidInput: on ``where``, for a range whose ends are not numbers or are
                reversed, or an empty text.
        """
        text = text.strip()
        if ":" not in text:
            allowed = tuple(v.strip() for v in text.split(",") if v.strip())
            if not allowed:
                raise InvalidInput(where, "is empty", "write LOW:HIGH or VALUE,VALUE,...")
            return cls(allowed=allowed)
        low_text, _, high_text = text.partition(":")
        low, high = _bound(low_text, where), _bound(high_text, where)
        if low is None and high is None:
            raise InvalidInput(where, f"{text!r} limits nothing", "write e.g. 20:60 or :60")
        if low is not None and high is not None and low > high:
            raise InvalidInput(where, f"{text!r}: the low end is above the high end", "swap them")
        return cls(low, high)

    def violation(self, value: ParamValue) -> str | None:
        """Why ``value`` breaks this limit, or None when it does not."""
        if self.allowed:
            return None if str(value) in self.allowed else f"is not one of {list(self.allowed)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if self.low is not None and value < self.low:
            return f"is below its limit {self.low:g}"
        if self.high is not None and value > self.high:
            return f"is above its limit {self.high:g}"
        return None

    def to_text(self) -> str:
        """The form :meth:`parse` reads."""
        if self.allowed:
            return ",".join(self.allowed)
        low = "" if self.low is None else _number(self.low)
        high = "" if self.high is None else _number(self.high)
        return f"{low}:{high}"


@dataclass(frozen=True)
class Interlock:
    """A condition every operation must meet, maybe only for some categorical values.

    Attributes:
        text: As written, e.g. ``"T <= 60 if solvent == DMC"``.
        require: The condition on numeric parameters.
        when: Categorical parameter -> values for which the condition applies (empty:
            always).
    """

    text: str
    require: ParameterConstraint = field(compare=False)
    when: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: object, numeric: Sequence[str], where: str) -> Interlock:
        """Parse ``"CONDITION"`` or ``"CONDITION if NAME == VALUE [and NAME in (A, B)]"``.

        Args:
            text: The interlock.
            numeric: The station's numeric parameters (the condition may use only them).
            where: The field to name in errors.

        Raises:
            InvalidInput: on ``where`` for bad syntax or unknown names.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(where, f"must be a text, got {text!r}", _FIX)
        condition, _, guard = text.partition(" if ")
        require = parse_parameter_constraint(condition, dict.fromkeys(numeric, False), where)
        when = _parse_guard(guard, where) if guard.strip() else {}
        return cls(text.strip(), require, when)

    def violated_by(self, point: Mapping[str, ParamValue]) -> bool:
        """Whether ``point`` breaks this interlock (it applies, and its condition fails)."""
        for name, values in self.when.items():
            if str(point.get(name)) not in values:
                return False
        numbers: dict[str, Any] = {}
        for name in self.require.names:
            value = point.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return True  # the condition cannot be judged: refuse
            numbers[name] = np.array([float(value)])
        return not bool(self.require.holds(numbers)[0])


@dataclass(frozen=True)
class SafetyPolicy:
    """What a station refuses: limits per parameter, interlocks, and an operation timeout.

    Attributes:
        limits: Parameter name -> its :class:`Limit`.
        interlocks: Conditions every operation must meet.
        timeout_s: Longest an operation may run before it is aborted (None: no limit).
    """

    limits: Mapping[str, Limit] = field(default_factory=dict)
    interlocks: tuple[Interlock, ...] = ()
    timeout_s: float | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], parameters: Mapping[str, Mapping[str, Any]]
    ) -> SafetyPolicy:
        """Read ``{"limits": {name: "LOW:HIGH" | "A,B"}, "interlocks": [...], "timeout_s"}``.

        A range limit needs a numeric (``real``/``int``) parameter, a set of allowed values
        a categorical one (for a ``choice``, among its ``values``); an interlock's guard
        must name ``choice`` parameters and some of their ``values``. With no schema (the
        station could not be described) every limit and interlock is refused.

        Args:
            config: The stored form (:meth:`to_config`).
            parameters: The station's parameter schema (names limits and interlocks may use).

        Raises:
            InvalidInput: naming ``safety.limits.<name>``, ``safety.interlocks[i]`` or
                ``safety.timeout_s``.
        """
        unknown = sorted(set(config) - {"limits", "interlocks", "timeout_s"})
        if unknown:
            raise InvalidInput(
                f"safety.{unknown[0]}", "unknown", "use limits, interlocks, timeout_s"
            )
        limits: dict[str, Limit] = {}
        for name, text in dict(config.get("limits") or {}).items():
            where = f"safety.limits.{name}"
            if name not in parameters:
                raise InvalidInput(where, "no such parameter", f"use one of {sorted(parameters)}")
            limits[name] = _fitting(Limit.parse(str(text), where), parameters[name], where)
        numeric = [n for n, p in parameters.items() if p.get("type") in _NUMERIC]
        interlocks = tuple(
            Interlock.parse(text, numeric, f"safety.interlocks[{i}]")
            for i, text in enumerate(config.get("interlocks") or ())
        )
        for i, interlock in enumerate(interlocks):
            _check_guard(interlock, parameters, f"safety.interlocks[{i}]")
        timeout = config.get("timeout_s")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= _LONGEST_TIMEOUT_S
        ):
            raise InvalidInput(
                "safety.timeout_s",
                f"must be a number of seconds > 0 and <= {_LONGEST_TIMEOUT_S:g}, got {timeout!r}",
                "leave it out for no timeout",
            )
        return cls(limits, interlocks, None if timeout is None else float(timeout))

    def to_config(self) -> dict[str, Any]:
        """The stored form, which :meth:`from_config` reads back."""
        config: dict[str, Any] = {}
        if self.limits:
            config["limits"] = {name: limit.to_text() for name, limit in self.limits.items()}
        if self.interlocks:
            config["interlocks"] = [interlock.text for interlock in self.interlocks]
        if self.timeout_s is not None:
            config["timeout_s"] = self.timeout_s
        return config

    def describe(self) -> list[str]:
        """Each declared safety feature in a line, for people (the inventory)."""
        return describe_config(self.to_config())

    def check(self, station: str, params: Mapping[str, ParamValue]) -> None:
        """Refuse ``params`` if they break a limit or an interlock.

        A limited parameter missing from ``params`` is refused: its limit cannot be judged
        (as for an interlock).

        Raises:
            SafetyViolation: naming ``op.params.<name>`` (a limit) or ``op.params`` (an
                interlock), the value and the rule.
        """
        for name, limit in self.limits.items():
            if name not in params:
                raise SafetyViolation(
                    f"op.params.{name}",
                    f"{name} is missing, and station '{station}' limits it to {limit.to_text()}",
                    "the operation was not sent; give every limited parameter a value",
                )
            problem = limit.violation(params[name])
            if problem is not None:
                raise SafetyViolation(
                    f"op.params.{name}",
                    f"{name}={params[name]!r} {problem} on station '{station}'",
                    "the operation was not sent; propose values within the station's limits",
                )
        for interlock in self.interlocks:
            if interlock.violated_by(params):
                raise SafetyViolation(
                    "op.params",
                    f"interlock '{interlock.text}' of station '{station}' forbids {dict(params)}",
                    "the operation was not sent; avoid this combination",
                )


def describe_config(config: Mapping[str, Any]) -> list[str]:
    """A stored policy's safety features, one per line: limits, interlocks, timeout.

    Reads :meth:`SafetyPolicy.to_config`'s form as stored, without the station's parameters.
    """
    lines = [f"limit {name} {text}" for name, text in dict(config.get("limits") or {}).items()]
    lines += [f"interlock {text}" for text in config.get("interlocks") or ()]
    if config.get("timeout_s") is not None:
        lines.append(f"timeout {config['timeout_s']:g} s")
    return lines


_FIX = 'write e.g. "T <= 60" or "T <= 60 if solvent == DMC"'
_NUMERIC = ("real", "int")
_LONGEST_TIMEOUT_S = 365 * 86400.0
"""A year: longer timeouts mean none (and overflow the timer)."""


def _number(value: float) -> str:
    """``value`` written exactly (``repr``), without a ``.0`` for whole numbers."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _fitting(limit: Limit, schema: Mapping[str, Any], where: str) -> Limit:
    """``limit``, if its kind fits the parameter's ``schema``; else InvalidInput on ``where``."""
    kind = schema.get("type")
    if not limit.allowed:
        if kind not in _NUMERIC:
            problem = f"a range LOW:HIGH limits a number; this parameter is of type {kind!r}"
            raise InvalidInput(where, problem, "list the allowed values: VALUE,VALUE,...")
        return limit
    if kind in _NUMERIC:
        problem = f"allowed values limit a choice; this parameter is of type {kind!r}"
        raise InvalidInput(where, problem, "write a range LOW:HIGH, e.g. 20:60 or :60")
    if kind == "choice":
        unknown = [value for value in limit.allowed if value not in _choices(schema)]
        if unknown:
            raise InvalidInput(
                where, f"{unknown[0]!r} is not one of its values", f"use {_choices(schema)}"
            )
    return limit


def _check_guard(
    interlock: Interlock, parameters: Mapping[str, Mapping[str, Any]], where: str
) -> None:
    """InvalidInput on ``where`` unless the guard names choices and some of their values."""
    for name, values in interlock.when.items():
        if name not in parameters:
            raise InvalidInput(where, f"no parameter {name!r}", "check the name")
        kind = parameters[name].get("type")
        if kind != "choice":
            fix = "guard on a choice parameter; put conditions on numbers before ' if '"
            raise InvalidInput(where, f"{name!r} is of type {kind!r}, not a choice", fix)
        unknown = [value for value in values if value not in _choices(parameters[name])]
        if unknown:
            raise InvalidInput(
                where,
                f"{unknown[0]!r} is not a value of {name!r}",
                f"use {_choices(parameters[name])}",
            )


def _choices(schema: Mapping[str, Any]) -> list[str]:
    """A choice parameter's values as texts (how limits and guards compare them)."""
    return [str(value) for value in schema.get("values") or ()]


def _bound(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(where, f"{text!r} is not a number", "write LOW:HIGH") from None
    if not math.isfinite(value):
        raise InvalidInput(where, f"{text!r} is not finite", "write LOW:HIGH")
    return value


def _parse_guard(text: str, where: str) -> dict[str, tuple[str, ...]]:
    """``"solvent == DMC and base in (K3PO4, CsF)"`` -> ``{"solvent": ("DMC",), ...}``."""
    guard: dict[str, tuple[str, ...]] = {}
    for clause in text.split(" and "):
        name, op, values = _guard_clause(clause.strip(), where)
        guard[name] = values if op == "in" else (values[0],)
    return guard


def _guard_clause(clause: str, where: str) -> tuple[str, str, tuple[str, ...]]:
    for op in (" == ", " in "):
        if op in clause:
            name, _, rest = clause.partition(op)
            name = name.strip()
            if not name.isidentifier():
                break
            return name, op.strip(), _values(rest.strip(), where)
    raise InvalidInput(where, f"cannot read the condition {clause!r}", _FIX)


def _values(text: str, where: str) -> tuple[str, ...]:
    """``DMC``, ``'DMC'`` or ``(EC, DMC)`` as a tuple of texts (``ast`` for quoted ones)."""
    inner = text[1:-1] if text.startswith(("(", "[")) and text.endswith((")", "]")) else text
    values = []
    for part in inner.split(","):
        part = part.strip()
        if part and part[0] in "'\"":
            try:
                literal = ast.literal_eval(part)
            except (ValueError, SyntaxError):
                raise InvalidInput(where, f"bad quoted value {part}", _FIX) from None
            part = str(literal)
        if part:
            values.append(part)
    if not values:
        raise InvalidInput(where, f"no value in {text!r}", _FIX)
    return tuple(values)
