"""Constraints written as expressions: on parameters (proposals) and on outcomes (measurements).

A *parameter constraint* compares two arithmetic expressions of numeric parameters::

    "x_salt * T <= 120"          # any arithmetic: + - * / **, abs, min, max, sqrt, log, exp
    "a + b + c == 1"             # mixtures: equalities must be linear in real parameters

Every proposal of every built-in planner satisfies every parameter constraint. An *outcome
constraint* bounds a measured value: ``"purity >= 0.95"``.

Expressions are parsed with :mod:`ast` and checked against a small whitelist (numbers,
parameter names, arithmetic operators and the functions above); nothing is ever passed to
``eval``. ``<`` and ``>`` mean ``<=`` and ``>=``: proposals are continuous, so the
difference cannot be observed.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.encoding import FloatArray

__all__ = [
    "OutcomeConstraint",
    "ParameterConstraint",
    "parse_outcome_constraint",
    "parse_parameter_constraint",
]

Operator = Literal["<=", ">=", "=="]

EQUALITY_TOLERANCE = 1e-6
"""An equality holds when ``|lhs - rhs| <= EQUALITY_TOLERANCE * (1 + |rhs terms|)``."""

INEQUALITY_TOLERANCE = 1e-9
"""An inequality ``lhs <= rhs`` holds when ``lhs - rhs <= INEQUALITY_TOLERANCE * (1 + |...|)``."""

_MAX_LENGTH = 2000
_MAX_DEPTH = 400
"""Limits that keep parsing and the recursive compilation of a text bounded."""

_FIX = 'write e.g. "x_salt * T <= 120" or "a + b + c == 1"'
_FUNCTIONS: dict[str, Callable[..., FloatArray]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "min": np.minimum,
    "max": np.maximum,
}
_BINARY: dict[type[ast.operator], Callable[[FloatArray, FloatArray], FloatArray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}
_COMPARE: dict[type[ast.cmpop], Operator] = {
    ast.LtE: "<=",
    ast.Lt: "<=",
    ast.GtE: ">=",
    ast.Gt: ">=",
    ast.Eq: "==",
}

Values = Mapping[str, FloatArray]
"""Parameter values by name, each an array of the same shape (one entry per point)."""

_Expr = Callable[[Values], FloatArray]
_Affine = dict[str | None, float]
"""A linear form: coefficient per parameter name, and the constant under key None."""


@dataclass(frozen=True)
class ParameterConstraint:
    """One parsed parameter constraint, normalized to ``g(x) <= 0`` or ``g(x) == 0``.

    Attributes:
        text: The expression as written.
        op: ``"<="`` or ``"=="`` (``a >= b`` is stored as ``b - a <= 0``).
        names: Parameters it involves.
        linear: For a linear constraint, ``(coefficients, bound)`` meaning
            ``sum(coefficients[p] * p) <op> bound``; None when it is not linear.
    """

    text: str
    op: Literal["<=", "=="]
    names: frozenset[str]
    linear: tuple[dict[str, float], float] | None
    _g: _Expr = field(repr=False, compare=False)
    _scale: _Expr = field(repr=False, compare=False)

    def residual(self, values: Values) -> FloatArray:
        """``g(x)``: at most 0 (``<=``) or 0 (``==``) where the constraint holds."""
        with np.errstate(all="ignore"):
            out = np.asarray(self._g(values), dtype=np.float64)
        return np.where(np.isfinite(out), out, np.inf)

    def violation(self, values: Values) -> FloatArray:
        """How far each point is from satisfying the constraint (0 where it holds)."""
        g = self.residual(values)
        return np.abs(g) if self.op == "==" else np.maximum(g, 0.0)

    def holds(self, values: Values) -> FloatArray:
        """Boolean mask of the points that satisfy the constraint, within tolerance."""
        g = self.residual(values)
        with np.errstate(all="ignore"):
            scale = 1.0 + np.abs(np.asarray(self._scale(values), dtype=np.float64))
        finite = np.isfinite(g) & np.isfinite(scale)
        if self.op == "==":
            return np.asarray(finite & (np.abs(g) <= EQUALITY_TOLERANCE * scale))
        return np.asarray(finite & (g <= INEQUALITY_TOLERANCE * scale))

    def __str__(self) -> str:
        return self.text


def parse_parameter_constraint(
    text: object, numeric: Mapping[str, bool], where: str = "constraints"
) -> ParameterConstraint:
    """Parse one parameter constraint.

    Args:
        text: The expression, e.g. ``"x_salt * T <= 120"``.
        numeric: The space's parameters: name to True for a linear-scale ``Real`` (the
            only kind an equality may involve), False for other numeric parameters.
            Names that are not keys (choices, unknown names) are refused.
        where: The field to name in errors.

    Raises:
        InvalidInput: on ``where`` for bad syntax, an unknown or categorical name, a
            disallowed construct, or a nonlinear equality.
    """
    lhs, op, rhs = _split_comparison(text, where)
    names = _names(lhs) | _names(rhs)
    for name in sorted(names):
        if name not in numeric:
            raise InvalidInput(
                where,
                f"{text!r} uses {name!r}, which is not a numeric parameter of the space",
                "use the names of real or int parameters",
            )
    left, right = _compile(lhs, text, where), _compile(rhs, text, where)
    affine = _affine_difference(lhs, rhs)
    if op == "==":
        if affine is None:
            raise InvalidInput(
                where, f"{text!r} is a nonlinear equality", "equalities must be linear"
            )
        for name in sorted(names):
            if not numeric[name]:
                raise InvalidInput(
                    where,
                    f"{text!r}: {name!r} is an integer or log-scaled parameter",
                    "equalities may involve only real parameters on a linear scale",
                )
    if op == ">=":
        left, right = right, left
        affine = None if affine is None else {k: -v for k, v in affine.items()}
    if not names:
        raise InvalidInput(where, f"{text!r} involves no parameter", _FIX)

    def g(values: Values) -> FloatArray:
        return left(values) - right(values)

    def scale(values: Values) -> FloatArray:
        return np.abs(left(values)) + np.abs(right(values))

    return ParameterConstraint(
        text=str(text),
        op="==" if op == "==" else "<=",
        names=frozenset(names),
        linear=_linear_form(affine),
        _g=g,
        _scale=scale,
    )


@dataclass(frozen=True)
class OutcomeConstraint:
    """A bound on a measured value: ``metric >= bound`` or ``metric <= bound``.

    Attributes:
        text: The expression as written.
        metric: Name of the measured value.
        op: ``">="`` or ``"<="``.
        bound: The bound.
    """

    text: str
    metric: str
    op: Literal["<=", ">="]
    bound: float

    def satisfied(self, value: float) -> bool:
        """Whether a measured value satisfies the constraint."""
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return self.text


def parse_outcome_constraint(text: object, where: str = "outcome_constraints") -> OutcomeConstraint:
    """Parse ``"metric >= number"`` or ``"metric <= number"`` (either side may be the name).

    Raises:
        InvalidInput: on ``where`` for anything else.
    """
    fix = 'write e.g. "purity >= 0.95"'
    lhs, op, rhs = _split_comparison(text, where)
    if op == "==":
        raise InvalidInput(where, f"{text!r} is an equality", f"bound the value instead: {fix}")
    if isinstance(rhs, ast.Name) and not isinstance(lhs, ast.Name):
        lhs, rhs = rhs, lhs
        op = "<=" if op == ">=" else ">="
    if not isinstance(lhs, ast.Name):
        raise InvalidInput(where, f"{text!r} does not compare a measured value", fix)
    bound = _constant(rhs)
    if bound is None or not math.isfinite(bound):
        raise InvalidInput(where, f"{text!r}: the bound must be a finite number", fix)
    return OutcomeConstraint(str(text), lhs.id, "<=" if op == "<=" else ">=", bound)


# -- parsing -----------------------------------------------------------------------------------


def _split_comparison(text: object, where: str) -> tuple[ast.expr, Operator, ast.expr]:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(where, f"{text!r} is not an expression", _FIX)
    if len(text) > _MAX_LENGTH:
        raise InvalidInput(where, f"is longer than {_MAX_LENGTH} characters", "simplify it")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise InvalidInput(where, f"{text!r} is not a valid expression: {exc.msg}", _FIX) from None
    except RecursionError:
        raise InvalidInput(where, "is nested too deeply", "simplify it") from None
    if _depth(tree) > _MAX_DEPTH:
        raise InvalidInput(where, f"is nested more than {_MAX_DEPTH} levels deep", "simplify it")
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        raise InvalidInput(where, f"{text!r} must compare two sides with <=, >= or ==", _FIX)
    op = _COMPARE.get(type(tree.ops[0]))
    if op is None:
        raise InvalidInput(where, f"{text!r}: only <=, >= and == are allowed", _FIX)
    return tree.left, op, tree.comparators[0]


def _depth(node: ast.AST) -> int:
    """Nesting depth of an expression tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


def _names(node: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - set(_FUNCTIONS)


def _compile(node: ast.expr, text: object, where: str) -> _Expr:
    """Turn a whitelisted expression into a function of arrays of parameter values."""
    if isinstance(node, ast.Constant) and _is_number(node.value):
        value = float(node.value)
        return lambda values: np.float64(value)  # type: ignore[return-value]
    if isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise InvalidInput(where, f"{text!r}: {node.id} must be called", _FIX)
        name = node.id
        return lambda values: values[name]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _compile(node.operand, text, where)
        if isinstance(node.op, ast.USub):
            return lambda values: -inner(values)
        return inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        fn = _BINARY[type(node.op)]
        a, b = _compile(node.left, text, where), _compile(node.right, text, where)
        return lambda values: fn(a(values), b(values))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _compile_call(node, text, where)
    shown = ast.unparse(node)
    raise InvalidInput(where, f"{text!r}: {shown!r} is not allowed in a constraint", _FIX)


def _compile_call(node: ast.Call, text: object, where: str) -> _Expr:
    assert isinstance(node.func, ast.Name)
    name = node.func.id
    fn = _FUNCTIONS.get(name)
    arity = 2 if name in ("min", "max") else 1
    if fn is None or node.keywords or len(node.args) != arity:
        allowed = "abs(x), sqrt(x), log(x), exp(x), min(a, b), max(a, b)"
        raise InvalidInput(where, f"{text!r}: {ast.unparse(node)!r} is not allowed", allowed)
    args = [_compile(a, text, where) for a in node.args]
    if arity == 1:
        return lambda values: fn(args[0](values))
    return lambda values: fn(args[0](values), args[1](values))


def _constant(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and _is_number(node.value):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _constant(node.operand)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _affine(node: ast.expr) -> _Affine | None:
    """The expression as a linear form, or None when it is not linear."""
    constant = _constant(node)
    if constant is not None:
        return {None: constant}
    if isinstance(node, ast.Name):
        return {node.id: 1.0}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _affine(node.operand)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return None if inner is None else {k: sign * v for k, v in inner.items()}
    if not isinstance(node, ast.BinOp):
        return None
    a, b = _affine(node.left), _affine(node.right)
    if a is None or b is None:
        return None
    if isinstance(node.op, ast.Add | ast.Sub):
        sign = 1.0 if isinstance(node.op, ast.Add) else -1.0
        out = dict(a)
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + sign * v
        return out
    if isinstance(node.op, ast.Mult):
        if set(a) == {None}:
            return {k: a[None] * v for k, v in b.items()}
        if set(b) == {None}:
            return {k: b[None] * v for k, v in a.items()}
    if isinstance(node.op, ast.Div) and set(b) == {None} and b[None] != 0.0:
        return {k: v / b[None] for k, v in a.items()}
    return None


def _affine_difference(lhs: ast.expr, rhs: ast.expr) -> _Affine | None:
    a, b = _affine(lhs), _affine(rhs)
    if a is None or b is None:
        return None
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) - v
    return out


def _linear_form(affine: _Affine | None) -> tuple[dict[str, float], float] | None:
    """``{lhs - rhs}`` as ``(coefficients, bound)`` of ``sum(c * p) <op> bound``."""
    if affine is None:
        return None
    coefficients = {k: v for k, v in affine.items() if k is not None and v != 0.0}
    return coefficients, -affine.get(None, 0.0)
