"""Parsing and semantics of parameter and outcome constraints."""

from __future__ import annotations

import builtins
import math
from pathlib import Path

import numpy as np
import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.constraints import (
    EQUALITY_TOLERANCE,
    parse_outcome_constraint,
    parse_parameter_constraint,
)
from genesis_platform.planning.space import Choice, Int, Real, Space

# Linear-scale reals (True) may appear in equalities; ints and log-scaled reals (False) not.
NUMERIC = {"a": True, "b": True, "c": True, "k": False}


@pytest.fixture
def space() -> Space:
    """Reals a, b, c on [0, 1], an int, a log-scaled real and a choice."""
    return Space(
        {
            "a": Real(0.0, 1.0),
            "b": Real(0.0, 1.0),
            "c": Real(0.0, 1.0),
            "k": Int(1, 5),
            "conc": Real(0.01, 10.0, log=True),
            "solvent": Choice(["EC", "DMC"]),
        }
    )


def _values(**columns: object) -> dict[str, np.ndarray]:
    return {name: np.atleast_1d(np.asarray(v, dtype=np.float64)) for name, v in columns.items()}


# -- linear forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "coefficients", "bound"),
    [
        ("2 * a + 3 * b <= 6", "<=", {"a": 2.0, "b": 3.0}, 6.0),
        # ">=" is stored as "<=" of the negated form
        ("a + b >= 0.5", "<=", {"a": -1.0, "b": -1.0}, -0.5),
        ("a > 0.25", "<=", {"a": -1.0}, -0.25),
        ("b < 0.75", "<=", {"b": 1.0}, 0.75),
        # constants on both sides collect into the bound
        ("a + 1 <= 2 * b - 3", "<=", {"a": 1.0, "b": -2.0}, -4.0),
        ("5 + a >= 1 + b", "<=", {"a": -1.0, "b": 1.0}, 4.0),
        # division by a constant, constants multiplied out
        ("a / 4 + b / 0.5 <= 1", "<=", {"a": 0.25, "b": 2.0}, 1.0),
        ("2 * 3 * a <= 12", "<=", {"a": 6.0}, 12.0),
        ("(a + b) / 2 * 4 <= 3", "<=", {"a": 2.0, "b": 2.0}, 3.0),
        # unary minus, nested
        ("-a - -b <= -1", "<=", {"a": -1.0, "b": 1.0}, -1.0),
        ("-(a + 2 * b) >= -3", "<=", {"a": 1.0, "b": 2.0}, 3.0),
        ("+a <= +0.5", "<=", {"a": 1.0}, 0.5),
        # terms that cancel disappear from the coefficients
        ("a + b - b <= 1", "<=", {"a": 1.0}, 1.0),
        ("a + b + c == 1", "==", {"a": 1.0, "b": 1.0, "c": 1.0}, 1.0),
        ("3 * (a - b) == 2 * c", "==", {"a": 3.0, "b": -3.0, "c": -2.0}, 0.0),
        ("1 == c", "==", {"c": -1.0}, -1.0),
        # an int may take part in a linear inequality
        ("k + 2 * a <= 4", "<=", {"k": 1.0, "a": 2.0}, 4.0),
    ],
)
def test_linear_forms(text: str, op: str, coefficients: dict[str, float], bound: float) -> None:
    constraint = parse_parameter_constraint(text, NUMERIC)
    assert constraint.op == op
    assert constraint.linear is not None
    got, got_bound = constraint.linear
    assert got == pytest.approx(coefficients)
    assert set(got) == set(coefficients)
    assert got_bound == pytest.approx(bound)
    assert constraint.text == text
    assert str(constraint) == text


@pytest.mark.parametrize(
    "text",
    [
        "2 * a + 3 * b <= 6",
        "5 + a >= 1 + b",
        "-(a + 2 * b) >= -3",
        "(a + b) / 2 * 4 <= 3",
        "3 * (a - b) == 2 * c",
        "k + 2 * a > 4",
    ],
)
def test_linear_form_agrees_with_the_residual(text: str) -> None:
    """``sum(c * p) - bound`` is the residual ``g`` everywhere, not only at one point."""
    constraint = parse_parameter_constraint(text, NUMERIC)
    assert constraint.linear is not None
    coefficients, bound = constraint.linear
    rng = np.random.default_rng(0)
    values = {name: rng.uniform(-3.0, 3.0, 200) for name in NUMERIC}
    form = sum(coef * values[name] for name, coef in coefficients.items()) - bound
    assert np.allclose(constraint.residual(values), form, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "evaluate"),
    [
        ("a * b <= 0.1", lambda v: v["a"] * v["b"] - 0.1),
        ("k * a >= 1", lambda v: 1 - v["k"] * v["a"]),
        ("a ** 2 + b ** 2 <= 1", lambda v: v["a"] ** 2 + v["b"] ** 2 - 1),
        ("a / b <= 2", lambda v: v["a"] / v["b"] - 2),
        (
            "sqrt(a) + abs(b - 0.5) + max(a, c) - min(b, c) <= exp(log(k))",
            lambda v: (
                np.sqrt(v["a"])
                + np.abs(v["b"] - 0.5)
                + np.maximum(v["a"], v["c"])
                - np.minimum(v["b"], v["c"])
                - v["k"]
            ),
        ),
    ],
)
def test_nonlinear_inequalities_are_accepted(text: str, evaluate: object) -> None:
    constraint = parse_parameter_constraint(text, NUMERIC)
    assert constraint.linear is None
    assert constraint.op == "<="
    assert constraint.names <= set(NUMERIC)
    rng = np.random.default_rng(1)
    values = {name: rng.uniform(0.1, 2.0, 100) for name in NUMERIC}
    expected = evaluate(values)  # type: ignore[operator]
    assert np.allclose(constraint.residual(values), expected)
    assert np.array_equal(constraint.holds(values), expected <= 0)


def test_names_are_the_parameters_involved() -> None:
    constraint = parse_parameter_constraint("sqrt(a) * k <= max(b, 1)", NUMERIC)
    assert constraint.names == frozenset({"a", "k", "b"})


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("z + a <= 1", ["'z'", "not a numeric parameter"]),
        ("solvent <= 1", ["'solvent'", "not a numeric parameter"]),
        ("a * b == 0.1", ["nonlinear equality", "linear"]),
        ("sqrt(a) == 0.5", ["nonlinear equality"]),
        ("k + a == 3", ["'k'", "integer or log-scaled"]),
        ("conc + a == 1", ["'conc'", "integer or log-scaled"]),
        ("a.real <= 1", ["'a.real'", "not allowed"]),
        ("a.__class__ <= 1", ["a.__class__", "not allowed"]),
        ("__import__('os').system('x') <= 1", ["__import__"]),
        ("open('f') <= 1", ["open"]),
        ("(lambda: 1)() <= a", ["lambda", "not allowed"]),
        ("a[0] <= 1", ["a[0]", "not allowed"]),
        ("[a][0] <= 1", ["not allowed"]),
        ("0 <= a <= 1", ["compare two sides"]),
        ("a != 1", ["only <=, >= and =="]),
        ("a in b", ["only <=, >= and =="]),
        ("1 <= 2", ["no parameter"]),
        ("2 * 3 == 6", ["no parameter"]),
        ("a + b", ["compare two sides"]),
        ("a <= ", ["not a valid expression"]),
        ("a <= 1; b <= 1", ["not a valid expression"]),
        ("", ["not an expression"]),
        ("a <= 'one'", ["not allowed"]),
        ("a <= True", ["True", "not allowed"]),
        ("a <= 1j", ["not allowed"]),
        ("abs <= a", ["abs must be called"]),
        ("min(a) <= 1", ["min(a)", "not allowed"]),
        ("sqrt(a, b) <= 1", ["not allowed"]),
        ("sqrt(x=a) <= 1", ["not allowed"]),
        ("(a if b else c) <= 1", ["not allowed"]),
        ("a <= (b := 1)", ["not allowed"]),
    ],
)
def test_refusals_name_the_constraint_field(space: Space, text: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        Space(dict(space), constraints=["a + b <= 2", text])
    assert info.value.field == "constraints[1]"
    message = str(info.value)
    assert message.startswith("constraints[1]: ")
    for word in words:
        assert word in message
    assert info.value.fix  # every refusal says what to write instead


@pytest.mark.parametrize("text", [3, None, ["a <= 1"], b"a <= 1", 1.5])
def test_non_strings_are_refused(space: Space, text: object) -> None:
    with pytest.raises(InvalidInput) as info:
        Space(dict(space), constraints=[text])  # type: ignore[list-item]
    assert info.value.field == "constraints[0]"
    assert "not an expression" in str(info.value)


def test_constraints_must_be_a_list(space: Space) -> None:
    with pytest.raises(InvalidInput) as info:
        Space(dict(space), constraints="a <= 1")  # type: ignore[arg-type]
    assert info.value.field == "constraints"


def test_the_where_argument_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_parameter_constraint("q <= 1", NUMERIC, where="campaign.space.constraints[4]")
    assert info.value.field == "campaign.space.constraints[4]"


def test_nothing_is_evaluated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Texts that would have side effects under ``eval`` have none, and eval is never used."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec must not be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    sentinel = tmp_path / "pwned"
    attacks = [
        f"open({str(sentinel)!r}, 'w').write('x') <= a",
        f"__import__('pathlib').Path({str(sentinel)!r}).touch() <= a",
        f"a <= [open({str(sentinel)!r}, 'w') for _ in 'x'][0]",
        f"(lambda: open({str(sentinel)!r}, 'w'))() <= a",
    ]
    # Even with names that pass the name check, the calls are refused.
    numeric = {**NUMERIC, "open": True, "__import__": True, "_": True}
    for text in attacks:
        with pytest.raises(InvalidInput):
            parse_parameter_constraint(text, numeric)
        with pytest.raises(InvalidInput):
            parse_parameter_constraint(text, NUMERIC)
        with pytest.raises(InvalidInput):
            parse_outcome_constraint(text)
    assert not sentinel.exists()
    # A valid constraint parses and evaluates without eval or exec too.
    constraint = parse_parameter_constraint("a * b + sqrt(c) <= 1", NUMERIC)
    assert constraint.holds(_values(a=[0.5, 1.0], b=[0.5, 1.0], c=[0.0, 1.0])).tolist() == [
        True,
        False,
    ]


def test_a_long_mixture_parses() -> None:
    names = {f"x{i}": True for i in range(300)}
    wide = parse_parameter_constraint(" + ".join(names) + " == 1", names)
    assert wide.linear is not None and len(wide.linear[0]) == 300


@pytest.mark.parametrize(
    "text",
    ["-" * 2000 + "a <= 1", " + ".join(["a"] * 1500) + " <= 1"],
    ids=["unary-chain", "1500-term-sum"],
)
def test_deeply_nested_text_gives_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_parameter_constraint(text, {"a": True})


# -- holds, violation, tolerance -------------------------------------------------------------


def test_equality_tolerance_is_relative() -> None:
    mixture = parse_parameter_constraint("a + b + c == 1", NUMERIC)
    # |g| <= 1e-6 * (1 + |a + b + c| + |1|), i.e. about 3e-6 here
    tol = EQUALITY_TOLERANCE * 3.0
    offsets = np.array([0.0, 0.5 * tol, -0.9 * tol, 1.2 * tol, -1.5 * tol, 1e-3])
    values = _values(a=0.2 + offsets, b=np.full(6, 0.3), c=np.full(6, 0.5))
    assert mixture.holds(values).tolist() == [True, True, True, False, False, False]
    assert np.allclose(mixture.violation(values), np.abs(offsets), atol=1e-15)
    assert np.allclose(mixture.residual(values), offsets, atol=1e-15)
    # The same absolute miss is fine at a scale a thousand times larger.
    big = parse_parameter_constraint("a + b == 1000", NUMERIC)
    miss = 5e-4
    at_scale = _values(a=[600.0, 600.0], b=[400.0 + miss, 400.0 + 10 * miss])
    assert big.holds(at_scale).tolist() == [True, False]
    small = parse_parameter_constraint("a + b == 1", NUMERIC)
    assert not small.holds(_values(a=[0.6], b=[0.4 + miss]))[0]


@pytest.mark.parametrize("text", ["a <= 0.5", "0.5 >= a", "-a >= -0.5", "2 * a - 1 <= 0"])
def test_inequality_boundary(text: str) -> None:
    constraint = parse_parameter_constraint(text, NUMERIC)
    a = np.array([0.1, 0.5, 0.5 + 1e-12, 0.5 + 1e-6, 0.7])
    holds = constraint.holds(_values(a=a))
    assert holds.tolist() == [True, True, True, False, False]
    violation = constraint.violation(_values(a=a))
    assert violation[0] == 0.0 and violation[1] == 0.0
    assert violation[3] > 0 and violation[4] > violation[3]
    # The violation is in the units of the written form: 2a - 1 doubles it.
    factor = 2.0 if text.startswith("2") else 1.0
    assert violation[4] == pytest.approx(factor * 0.2)


def test_non_finite_expressions_do_not_hold() -> None:
    constraint = parse_parameter_constraint("sqrt(a) + b <= 1", NUMERIC)
    values = _values(a=[-1.0, 0.25], b=[0.0, 0.0])  # sqrt(-1) is nan
    assert constraint.holds(values).tolist() == [False, True]
    assert math.isinf(constraint.violation(values)[0])


def test_an_infinite_side_does_not_hold(space: Space) -> None:
    ratio = parse_parameter_constraint("a / b <= 1", NUMERIC)
    values = _values(a=[0.5, 0.5], b=[0.0, 1.0])  # 0.5 / 0 = inf > 1
    assert math.isinf(ratio.violation(values)[0])
    assert ratio.holds(values).tolist() == [False, True]
    constrained = Space(dict(space), constraints=["a / b <= 1"])
    point = {"a": 0.5, "b": 0.0, "c": 0.0, "k": 1, "conc": 1.0, "solvent": "EC"}
    assert not constrained.is_feasible(point)


def test_space_is_feasible_checks_every_constraint(space: Space) -> None:
    constrained = Space(dict(space), constraints=["a + b + c == 1", "k * a <= 1.5", "conc >= 0.1"])
    base = {"a": 0.3, "b": 0.3, "c": 0.4, "k": 5, "conc": 1.0, "solvent": "EC"}
    assert constrained.is_feasible(base)
    assert not constrained.is_feasible({**base, "c": 0.41})
    assert not constrained.is_feasible({**base, "a": 0.4, "c": 0.3, "k": 4})  # 1.6 > 1.5
    assert not constrained.is_feasible({**base, "conc": 0.05})
    assert constrained.is_feasible({**base, "c": 0.4 + 1e-7})  # within tolerance
    assert Space(dict(space)).is_feasible({**base, "c": 0.9})  # no constraints
    assert "constraints=['a + b + c == 1'" in repr(constrained)


# -- outcome constraints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("purity >= 0.95", "purity", ">=", 0.95),
        ("purity > 0.95", "purity", ">=", 0.95),
        ("0.95 <= purity", "purity", ">=", 0.95),
        ("0.95 < purity", "purity", ">=", 0.95),
        ("impurity <= 0.1", "impurity", "<=", 0.1),
        ("impurity < 0.1", "impurity", "<=", 0.1),
        ("0.1 >= impurity", "impurity", "<=", 0.1),
        ("cost <= -2", "cost", "<=", -2.0),
        ("-2 >= cost", "cost", "<=", -2.0),
        ("  yield_2 >= 3  ", "yield_2", ">=", 3.0),
    ],
)
def test_outcome_constraints(text: str, metric: str, op: str, bound: float) -> None:
    constraint = parse_outcome_constraint(text)
    assert (constraint.metric, constraint.op, constraint.bound) == (metric, op, bound)
    assert str(constraint) == text
    assert constraint.satisfied(bound)  # the bound itself is allowed: < means <=
    inside = bound + 1.0 if op == ">=" else bound - 1.0
    outside = bound - 1e-9 if op == ">=" else bound + 1e-9
    assert constraint.satisfied(inside)
    assert not constraint.satisfied(outside)
    assert not constraint.satisfied(math.nan)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("purity == 0.95", ["equality"]),
        ("purity >= yield_", ["finite number"]),
        ("purity >= 1e999", ["finite number"]),
        ("purity >= -1e999", ["finite number"]),
        ("purity >= nan", ["finite number"]),
        ("purity >= inf", ["finite number"]),
        ("purity + 1 >= 2", ["does not compare a measured value"]),
        ("2 * purity >= 1", ["does not compare a measured value"]),
        ("purity >= 2 * 0.4", ["finite number"]),
        ("0.1 <= purity <= 0.9", ["compare two sides"]),
        ("purity >= True", ["finite number"]),
        ("purity >=", ["not a valid expression"]),
        ("purity.x >= 1", ["does not compare"]),
        ("", ["not an expression"]),
    ],
)
def test_outcome_refusals(text: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_outcome_constraint(text, where="outcome_constraints[3]")
    assert info.value.field == "outcome_constraints[3]"
    for word in words:
        assert word in str(info.value)
    assert "purity >= 0.95" in info.value.fix or "e.g." in info.value.fix


def test_outcome_constraint_default_field_and_non_string() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_outcome_constraint(0.95)
    assert info.value.field == "outcome_constraints"
