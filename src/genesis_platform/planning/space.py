"""Search spaces: real, integer and categorical parameters, with validation.

A :class:`Space` is an ordered mapping from parameter names to parameter definitions.
Definitions validate themselves when built and raise :class:`~genesis_platform.errors.InvalidInput`
naming the offending field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.protocols import Params, ParamValue

if TYPE_CHECKING:
    from genesis_platform.planning.constraints import ParameterConstraint

__all__ = ["Choice", "Int", "Parameter", "Real", "Space", "parameter_from_dict"]

# Planners encode an Int as a float: every whole number up to 2**53 (about 9e15) stays exact.
_MAX_INT_BOUND = 10**15


@dataclass(frozen=True)
class Real:
    """A continuous parameter on ``[low, high]``, optionally searched on a log scale."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)
        if not math.isfinite(self.high - self.low):
            raise InvalidInput(
                "low/high",
                f"the range {self.low}..{self.high} is too wide to search",
                "keep low and high within about ±1e300",
            )

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a number within the bounds."""
        return _is_number(value) and self.low <= float(value) <= self.high

    def to_dict(self) -> dict[str, Any]:
        """The campaign-file form of this parameter."""
        return {"type": "real", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int:
    """An integer parameter on ``[low, high]`` (both included), optionally on a log scale.

    Both bounds lie within ±1e15, so every value of the range is exact as a float (which is
    how planners encode it).
    """

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise InvalidInput("low/high", "integer bounds must be whole numbers", "e.g. low: 10")
        for name, bound in (("low", self.low), ("high", self.high)):
            if abs(bound) > _MAX_INT_BOUND:
                raise InvalidInput(
                    name,
                    f"{bound} is beyond ±1e15",
                    "narrow the range, or use a real parameter with log: true",
                )
        _check_bounds(self.low, self.high, self.log)

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a whole number within the bounds."""
        return (
            _is_number(value) and float(value) == int(value) and self.low <= int(value) <= self.high
        )

    def to_dict(self) -> dict[str, Any]:
        """The campaign-file form of this parameter."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice:
    """A categorical parameter: one of a list of distinct labels (strings or finite numbers)."""

    values: tuple[ParamValue, ...]

    def __init__(self, values: Any) -> None:
        if isinstance(values, str) or not hasattr(values, "__iter__"):
            raise InvalidInput("values", "must be a list", "e.g. values: [EC-DMC, PC]")
        items = tuple(values)
        if not items:
            raise InvalidInput("values", "the choice list is empty", "list at least one value")
        for item in items:
            if not (isinstance(item, str) or _is_number(item)):
                raise InvalidInput(
                    "values",
                    f"{item!r} is not a string or a finite number",
                    "list labels or numbers, e.g. values: [EC-DMC, PC] or values: [1, 2, 4]",
                )
        if len(set(items)) != len(items):
            raise InvalidInput("values", f"duplicate values in {list(items)}", "list each once")
        object.__setattr__(self, "values", items)

    def contains(self, value: object) -> bool:
        """Whether ``value`` is one of the choices."""
        return value in self.values

    def to_dict(self) -> dict[str, Any]:
        """The campaign-file form of this parameter."""
        return {"type": "choice", "values": list(self.values)}


Parameter = Real | Int | Choice
"""Any parameter definition."""


class Space(Mapping[str, Parameter]):
    """An ordered, immutable mapping of parameter names to definitions, with constraints.

    Args:
        params: Parameter definitions by name, in the order the planner encodes them.
        constraints: Parameter constraints as expressions (``"x_salt * T <= 120"``,
            ``"a + b + c == 1"``; see :mod:`~genesis_platform.planning.constraints`). Every
            proposal of a built-in planner satisfies them; observations need not.
    """

    def __init__(self, params: Mapping[str, Parameter], constraints: Sequence[str] = ()) -> None:
        if not params:
            raise InvalidInput("space", "the search space has no parameters", "add at least one")
        for name, spec in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise InvalidInput(
                    f"space.{name}", "parameter names must be identifiers", "e.g. salt_molality"
                )
            if not isinstance(spec, Real | Int | Choice):
                raise InvalidInput(
                    f"space.{name}", f"not a parameter: {spec!r}", "use Real/Int/Choice"
                )
        self._params = dict(params)
        self.constraints = self._parse_constraints(constraints)

    def _parse_constraints(self, texts: Sequence[str]) -> tuple[ParameterConstraint, ...]:
        from genesis_platform.planning.constraints import parse_parameter_constraint

        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InvalidInput("constraints", "must be a list of expressions", 'e.g. ["a <= b"]')
        numeric = {
            name: isinstance(spec, Real) and not spec.log
            for name, spec in self._params.items()
            if not isinstance(spec, Choice)
        }
        return tuple(
            parse_parameter_constraint(text, numeric, where=f"constraints[{i}]")
            for i, text in enumerate(texts)
        )

    def is_feasible(self, point: Params) -> bool:
        """Whether a valid point satisfies every parameter constraint."""
        if not self.constraints:
            return True
        values = {name: np.array([float(point[name])]) for name in self.numeric_names()}
        return all(bool(c.holds(values)[0]) for c in self.constraints)

    def numeric_names(self) -> list[str]:
        """Names of the real and integer parameters, in order."""
        return [name for name, spec in self._params.items() if not isinstance(spec, Choice)]

    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        if self.constraints:
            texts = [c.text for c in self.constraints]
            return f"Space({self._params!r}, constraints={texts!r})"
        return f"Space({self._params!r})"

    def validate(self, params: Params, where: str = "params") -> dict[str, ParamValue]:
        """Check a point: every parameter present, in range, and nothing extra.

        Returns:
            The point as a plain dict with ``Int`` values as ``int``.

        Raises:
            InvalidInput: naming the first bad parameter.
        """
        extra = set(params) - set(self._params)
        if extra:
            raise InvalidInput(f"{where}.{sorted(extra)[0]}", "not a parameter of the space")
        point: dict[str, ParamValue] = {}
        for name, spec in self._params.items():
            if name not in params:
                raise InvalidInput(f"{where}.{name}", "missing", "give a value for every parameter")
            value = params[name]
            if not spec.contains(value):
                raise InvalidInput(f"{where}.{name}", f"{value!r} is outside {spec.to_dict()}")
            point[name] = int(value) if isinstance(spec, Int) else value
        return point

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The campaign-file form of the space."""
        return {name: spec.to_dict() for name, spec in self._params.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> Space:
        """Rebuild a space from :meth:`to_dict` output (the campaign-file form).

        Raises:
            InvalidInput: naming the first parameter that does not describe a parameter.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput("space", "must be a mapping of names to parameters")
        return cls(
            {name: parameter_from_dict(spec, f"space.{name}") for name, spec in data.items()}
        )


def parameter_from_dict(data: Mapping[str, Any], where: str = "parameter") -> Parameter:
    """Build one parameter from its :meth:`to_dict` form, e.g. ``{"type": "real", ...}``.

    Raises:
        InvalidInput: with ``where`` in the field name.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput(where, "must be a mapping", "e.g. {type: real, low: 0, high: 1}")
    kind = data.get("type")
    try:
        if kind == "real":
            return Real(data["low"], data["high"], data.get("log", False))
        if kind == "int":
            return Int(data["low"], data["high"], data.get("log", False))
        if kind == "choice":
            return Choice(data["values"])
    except KeyError as exc:
        raise InvalidInput(f"{where}.{exc.args[0]}", "missing") from exc
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.{exc.field}", exc.problem, exc.fix) from exc
    raise InvalidInput(f"{where}.type", f"unknown parameter type {kind!r}", "real, int or choice")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not isinstance(log, bool):
        raise InvalidInput("log", f"must be true or false, got {log!r}", "e.g. log: true")
    if not (_is_number(low) and _is_number(high)):
        raise InvalidInput("low/high", "bounds must be finite numbers", "e.g. low: 0.1, high: 3.0")
    if low >= high:
        raise InvalidInput(
            "low/high", f"low ({low}) must be below high ({high})", "swap them or widen the range"
        )
    if log and low <= 0:
        raise InvalidInput("low", f"a log-scaled parameter needs low > 0, got {low}", "raise low")
