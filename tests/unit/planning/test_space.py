from __future__ import annotations

import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.space import Choice, Int, Real, Space, parameter_from_dict


def test_validate_returns_plain_dict_with_ints(mixed_space: Space) -> None:
    point = {"temperature": 30, "concentration": 1.0, "steps": 2.0, "solvent": "PC"}
    checked = mixed_space.validate(point)
    assert checked == {"temperature": 30, "concentration": 1.0, "steps": 2, "solvent": "PC"}
    assert type(checked["steps"]) is int


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"concentration": 1.0, "steps": 2, "solvent": "PC"}, "params.temperature"),
        (
            {"temperature": 90.0, "concentration": 1.0, "steps": 2, "solvent": "PC"},
            "params.temperature",
        ),
        (
            {"temperature": 30.0, "concentration": 0.0, "steps": 2, "solvent": "PC"},
            "params.concentration",
        ),
        (
            {"temperature": 30.0, "concentration": 1.0, "steps": 2.5, "solvent": "PC"},
            "params.steps",
        ),
        (
            {"temperature": 30.0, "concentration": 1.0, "steps": 2, "solvent": "water"},
            "params.solvent",
        ),
        (
            {"temperature": 30.0, "concentration": 1.0, "steps": 2, "solvent": "PC", "x": 1},
            "params.x",
        ),
        (
            {"temperature": "hot", "concentration": 1.0, "steps": 2, "solvent": "PC"},
            "params.temperature",
        ),
        (
            {"temperature": True, "concentration": 1.0, "steps": 2, "solvent": "PC"},
            "params.temperature",
        ),
    ],
)
def test_validate_names_the_field(mixed_space: Space, point: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        mixed_space.validate(point)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


def test_validate_uses_the_given_prefix(mixed_space: Space) -> None:
    with pytest.raises(InvalidInput) as info:
        mixed_space.validate({}, where="pending[3]")
    assert info.value.field == "pending[3].temperature"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Real(1.0, 1.0), "low/high"),
        (lambda: Real(0.0, float("inf")), "low/high"),
        (lambda: Real(0.0, 1.0, log=True), "low"),
        (lambda: Int(1, 2.5), "low/high"),
        (lambda: Choice([]), "values"),
        (lambda: Choice(["a", "a"]), "values"),
        (lambda: Choice("ab"), "values"),
        (lambda: Choice([[1], [2]]), "values"),
        (lambda: Choice([{"a": 1}]), "values"),
        (lambda: Choice(["a", True]), "values"),
        (lambda: Choice([1.0, float("nan")]), "values"),
        (lambda: Choice([None]), "values"),
        (lambda: Real(0.0, 1.0, log="no"), "log"),
        (lambda: Int(1, 10, log=1), "log"),
        (lambda: Real(-1e308, 1e308), "low/high"),
        (lambda: Int(0, 10**20), "high"),
        (lambda: Int(-(10**16), 0), "low"),
        (lambda: Space({}), "space"),
        (lambda: Space({"not a name": Real(0.0, 1.0)}), "space.not a name"),
        (lambda: Space({"x": (0.0, 1.0)}), "space.x"),
    ],
)
def test_bad_definitions_name_the_field(build: object, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert info.value.fix


def test_edge_definitions_are_accepted() -> None:
    assert Int(-(10**15), 10**15).contains(10**15)
    assert Choice(["a", 1, 2.5]).contains(2.5)
    assert Real(1e-300, 1e300, log=True).log is True


def test_to_dict_round_trip(mixed_space: Space) -> None:
    rebuilt = Space.from_dict(mixed_space.to_dict())
    assert rebuilt.to_dict() == mixed_space.to_dict()
    assert list(rebuilt) == list(mixed_space)


def test_from_dict_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        Space.from_dict({"x": {"type": "complex"}})
    assert info.value.field == "space.x.type"
    with pytest.raises(InvalidInput) as info:
        Space.from_dict({"x": {"type": "real", "low": 0.0}})
    assert info.value.field == "space.x.high"
    with pytest.raises(InvalidInput) as info:
        parameter_from_dict({"type": "real", "low": 2.0, "high": 1.0}, "space.y")
    assert info.value.field == "space.y.low/high"
    with pytest.raises(InvalidInput) as info:  # a truthy string is not a log scale
        parameter_from_dict({"type": "real", "low": 1.0, "high": 2.0, "log": "no"}, "space.y")
    assert info.value.field == "space.y.log"
    with pytest.raises(InvalidInput) as info:
        parameter_from_dict({"type": ["real"]}, "space.y")
    assert info.value.field == "space.y.type"
