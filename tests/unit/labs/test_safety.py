"""Safety limits, interlocks and policies, over the electrolyte emulator's parameters."""

from __future__ import annotations

import math
from typing import Any

import pytest

from genesis_platform.errors import InvalidInput, SafetyViolation
from genesis_platform.labs.emulators import get_emulator
from genesis_platform.labs.safety import Interlock, Limit, SafetyPolicy

# salt_molality (real 0.1-3), temperature_c (int 10-60), solvent (EC-DMC, EC-EMC, PC)
PARAMETERS = get_emulator("electrolyte").parameters
NUMERIC = ["salt_molality", "temperature_c"]
WHERE = "safety.limits.temperature_c"


def point(**values: Any) -> dict[str, Any]:
    return {"salt_molality": 1.0, "temperature_c": 30, "solvent": "PC", **values}


def test_the_electrolyte_schema_is_what_these_tests_assume() -> None:
    kinds = {name: schema["type"] for name, schema in PARAMETERS.items()}
    assert kinds == {"salt_molality": "real", "temperature_c": "int", "solvent": "choice"}
    assert PARAMETERS["solvent"]["values"] == ["EC-DMC", "EC-EMC", "PC"]


# -- Limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("20:60", 20.0, 60.0),
        (" 20 : 60 ", 20.0, 60.0),
        (":60", None, 60.0),
        ("20:", 20.0, None),
        ("-5.5:1e2", -5.5, 100.0),
        ("40:40", 40.0, 40.0),
    ],
)
def test_limit_parses_a_range_with_open_ends(
    text: str, low: float | None, high: float | None
) -> None:
    limit = Limit.parse(text, WHERE)
    assert (limit.low, limit.high, limit.allowed) == (low, high, ())
    assert Limit.parse(limit.to_text(), WHERE) == limit


def test_limit_parses_a_set_of_allowed_values() -> None:
    limit = Limit.parse(" EC-DMC, PC ,", "safety.limits.solvent")
    assert limit == Limit(allowed=("EC-DMC", "PC"))
    assert limit.to_text() == "EC-DMC,PC"
    assert Limit.parse(limit.to_text(), "safety.limits.solvent") == limit


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        ("60:20", "the low end is above the high end"),
        ("abc:60", "'abc' is not a number"),
        ("20:x", "'x' is not a number"),
        (":", "limits nothing"),
        ("inf:", "'inf' is not finite"),
        ("20:nan", "'nan' is not finite"),
    ],
)
def test_limit_refuses_bad_text_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Limit.parse(text, WHERE)
    assert info.value.field == WHERE
    assert str(info.value).startswith(f"{WHERE}: ")
    assert words in info.value.problem
    assert info.value.fix


def test_range_limit_violations_are_inclusive_and_refuse_non_numbers() -> None:
    limit = Limit.parse("20:60", WHERE)
    assert limit.violation(20) is None
    assert limit.violation(60.0) is None
    assert limit.violation(35) is None
    assert limit.violation(19.999) == "is below its limit 20"
    assert limit.violation(61) == "is above its limit 60"
    assert "must be a number" in (limit.violation("hot") or "")
    assert "must be a number" in (limit.violation(True) or "")
    assert "must be finite" in (limit.violation(math.nan) or "")
    assert "must be finite" in (limit.violation(math.inf) or "")


def test_open_ended_limits_bound_one_side_only() -> None:
    assert Limit.parse(":60", WHERE).violation(-1e9) is None
    assert Limit.parse(":60", WHERE).violation(60.5) is not None
    assert Limit.parse("20:", WHERE).violation(1e9) is None
    assert Limit.parse("20:", WHERE).violation(19) is not None


def test_allowed_values_limit_compares_as_text() -> None:
    limit = Limit(allowed=("EC-DMC", "PC", "3"))
    assert limit.violation("PC") is None
    assert limit.violation(3) is None
    assert limit.violation("EC-EMC") == "is not one of ['EC-DMC', 'PC', '3']"


# -- Interlock ----------------------------------------------------------------------------


def test_interlock_without_a_guard_always_applies() -> None:
    interlock = Interlock.parse(" salt_molality * temperature_c <= 60 ", NUMERIC, "w")
    assert interlock.text == "salt_molality * temperature_c <= 60"
    assert dict(interlock.when) == {}
    assert not interlock.violated_by(point(salt_molality=2.0, temperature_c=30))
    assert interlock.violated_by(point(salt_molality=2.0, temperature_c=31))
    assert interlock.violated_by(point(salt_molality=2.5, temperature_c=30, solvent="EC-DMC"))


def test_interlock_with_an_equality_guard_applies_only_to_that_value() -> None:
    interlock = Interlock.parse("temperature_c <= 40 if solvent == EC-DMC", NUMERIC, "w")
    assert dict(interlock.when) == {"solvent": ("EC-DMC",)}
    assert interlock.violated_by(point(temperature_c=50, solvent="EC-DMC"))
    assert not interlock.violated_by(point(temperature_c=40, solvent="EC-DMC"))
    assert not interlock.violated_by(point(temperature_c=50, solvent="PC"))
    assert not interlock.violated_by(point(temperature_c=50, solvent="EC-EMC"))


def test_interlock_with_an_in_guard_applies_to_each_listed_value() -> None:
    interlock = Interlock.parse("temperature_c <= 40 if solvent in (EC-DMC, PC)", NUMERIC, "w")
    assert dict(interlock.when) == {"solvent": ("EC-DMC", "PC")}
    assert interlock.violated_by(point(temperature_c=45, solvent="EC-DMC"))
    assert interlock.violated_by(point(temperature_c=45, solvent="PC"))
    assert not interlock.violated_by(point(temperature_c=45, solvent="EC-EMC"))
    assert not interlock.violated_by(point(temperature_c=40, solvent="PC"))


@pytest.mark.parametrize(
    "text",
    [
        "temperature_c <= 40 if solvent == 'EC-DMC'",
        'temperature_c <= 40 if solvent == "EC-DMC"',
        "temperature_c <= 40 if solvent in ['EC-DMC', \"PC\"]",
    ],
)
def test_interlock_guards_read_quoted_values(text: str) -> None:
    interlock = Interlock.parse(text, NUMERIC, "w")
    assert interlock.when["solvent"][0] == "EC-DMC"
    assert interlock.violated_by(point(temperature_c=45, solvent="EC-DMC"))


def test_interlock_guard_clauses_joined_by_and_must_all_match() -> None:
    interlock = Interlock.parse(
        "temperature_c <= 40 if solvent == PC and base in (CsF, K3PO4)", NUMERIC, "w"
    )
    assert dict(interlock.when) == {"solvent": ("PC",), "base": ("CsF", "K3PO4")}
    assert interlock.violated_by(point(temperature_c=45, base="CsF"))
    assert not interlock.violated_by(point(temperature_c=45, base="KOtBu"))
    assert not interlock.violated_by(point(temperature_c=45, solvent="EC-DMC", base="CsF"))


def test_interlock_refuses_a_point_it_cannot_judge() -> None:
    interlock = Interlock.parse("temperature_c <= 40", NUMERIC, "w")
    assert interlock.violated_by({"solvent": "PC"})
    assert interlock.violated_by(point(temperature_c="cold"))
    assert interlock.violated_by(point(temperature_c=True))


def test_interlocks_are_equal_by_their_text() -> None:
    a = Interlock.parse("temperature_c <= 40 if solvent == PC", NUMERIC, "w")
    b = Interlock.parse("temperature_c <= 40 if solvent == PC", NUMERIC, "elsewhere")
    c = Interlock.parse("temperature_c <= 41 if solvent == PC", NUMERIC, "w")
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope <= 3", "'nope'"),
        ("solvent <= 3", "'solvent'"),  # categorical: not usable in the condition
        ("temperature_c <= 40 if solvent = PC", "cannot read the condition"),
        ("temperature_c <= 40 if solvent == ", "cannot read the condition"),
        ("temperature_c <= 40 if 2x == PC", "cannot read the condition"),
        ('temperature_c <= 40 if solvent == "PC', "bad quoted value"),
        ("temperature_c <= 40 if solvent == ''", "no value"),
        ('__import__("os").system("true")', "must compare two sides"),
        ("", "must be a text"),
        ("   ", "must be a text"),
        (None, "must be a text"),
        (40, "must be a text"),
    ],
)
def test_interlock_refuses_bad_text_and_unknown_names(text: object, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Interlock.parse(text, NUMERIC, "safety.interlocks[3]")
    assert info.value.field == "safety.interlocks[3]"
    assert words in str(info.value)


def test_interlock_guard_tolerates_a_trailing_comma() -> None:
    interlock = Interlock.parse("temperature_c <= 40 if solvent in (EC-DMC, PC,)", NUMERIC, "w")
    assert dict(interlock.when) == {"solvent": ("EC-DMC", "PC")}


def test_interlock_guard_with_an_empty_list_says_there_is_no_value() -> None:
    with pytest.raises(InvalidInput) as info:
        Interlock.parse("temperature_c <= 40 if solvent in ()", NUMERIC, "w")
    assert info.value.problem == "no value in '()'"


# -- SafetyPolicy -------------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "limits": {"temperature_c": "20:60", "solvent": "EC-DMC,PC"},
    "interlocks": [
        "temperature_c <= 40 if solvent == EC-DMC",
        "salt_molality * temperature_c <= 90",
    ],
    "timeout_s": 5,
}


def test_from_config_reads_limits_interlocks_and_timeout() -> None:
    policy = SafetyPolicy.from_config(CONFIG, PARAMETERS)
    assert dict(policy.limits) == {
        "temperature_c": Limit(20.0, 60.0),
        "solvent": Limit(allowed=("EC-DMC", "PC")),
    }
    assert [i.text for i in policy.interlocks] == CONFIG["interlocks"]
    assert dict(policy.interlocks[0].when) == {"solvent": ("EC-DMC",)}
    assert policy.timeout_s == 5.0 and isinstance(policy.timeout_s, float)


def test_an_empty_config_is_a_policy_that_refuses_nothing() -> None:
    policy = SafetyPolicy.from_config({}, PARAMETERS)
    assert policy == SafetyPolicy()
    assert policy.to_config() == {}
    assert policy.describe() == []
    policy.check("cell", point(temperature_c=60, solvent="EC-DMC"))


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"limit": {"temperature_c": "20:60"}}, "safety.limit"),
        ({"limits": {}, "timeout": 5}, "safety.timeout"),
        ({"limits": {"nope": "1:2"}}, "safety.limits.nope"),
        ({"limits": {"temperature_c": "60:20"}}, "safety.limits.temperature_c"),
        ({"limits": {"salt_molality": "low:2"}}, "safety.limits.salt_molality"),
        ({"limits": {"solvent": " "}}, "safety.limits.solvent"),
        ({"interlocks": ["temperature_c <= 40", "nope <= 1"]}, "safety.interlocks[1]"),
        ({"interlocks": ["temperature_c <= 40 if base == CsF"]}, "safety.interlocks[0]"),
        ({"interlocks": ["temperature_c <= 40", 7]}, "safety.interlocks[1]"),
        ({"timeout_s": 0}, "safety.timeout_s"),
        ({"timeout_s": -1.0}, "safety.timeout_s"),
        ({"timeout_s": math.nan}, "safety.timeout_s"),
        ({"timeout_s": True}, "safety.timeout_s"),
        ({"timeout_s": "5"}, "safety.timeout_s"),
    ],
)
def test_from_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config(config, PARAMETERS)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (
            {"limits": {"solvent": "20:60"}},
            "safety.limits.solvent",
            "a range LOW:HIGH limits a number",
        ),
        (
            {"limits": {"solvent": ":60"}},
            "safety.limits.solvent",
            "this parameter is of type 'choice'",
        ),
        (
            {"limits": {"temperature_c": "20,60"}},
            "safety.limits.temperature_c",
            "allowed values limit a choice; this parameter is of type 'int'",
        ),
        ({"limits": {"temperature_c": "40"}}, "safety.limits.temperature_c", "of type 'int'"),
        ({"limits": {"salt_molality": "1.5"}}, "safety.limits.salt_molality", "of type 'real'"),
        (
            {"limits": {"solvent": "EC-DMC,DMC"}},
            "safety.limits.solvent",
            "'DMC' is not one of its values",
        ),
        ({"limits": {"solvent": "pc"}}, "safety.limits.solvent", "'pc' is not one of its values"),
        (
            {"interlocks": ["temperature_c <= 40 if salt_molality == 1"]},
            "safety.interlocks[0]",
            "'salt_molality' is of type 'real', not a choice",
        ),
        (
            {"interlocks": ["temperature_c <= 40", "salt_molality <= 2 if temperature_c in (30)"]},
            "safety.interlocks[1]",
            "'temperature_c' is of type 'int', not a choice",
        ),
        (
            {"interlocks": ["temperature_c <= 40 if solvent == DMC"]},
            "safety.interlocks[0]",
            "'DMC' is not a value of 'solvent'",
        ),
        (
            {"interlocks": ["temperature_c <= 40 if solvent in (PC, water)"]},
            "safety.interlocks[0]",
            "'water' is not a value of 'solvent'",
        ),
    ],
)
def test_from_config_refuses_rules_that_do_not_fit_the_parameter_schema(
    config: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config(config, PARAMETERS)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in info.value.problem
    assert info.value.fix


def test_from_config_fixes_name_what_would_fit() -> None:
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"limits": {"solvent": "EC-DMC,DMC"}}, PARAMETERS)
    assert info.value.fix == "use ['EC-DMC', 'EC-EMC', 'PC']"
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"limits": {"temperature_c": "40"}}, PARAMETERS)
    assert "LOW:HIGH" in info.value.fix
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"interlocks": ["temperature_c <= 9 if solvent == X"]}, PARAMETERS)
    assert info.value.fix == "use ['EC-DMC', 'EC-EMC', 'PC']"


def test_from_config_compares_a_numeric_choice_as_text_like_check_does() -> None:
    parameters: dict[str, dict[str, Any]] = {
        "T": {"type": "real", "low": 0, "high": 9},
        "rpm": {"type": "choice", "values": [100, 200]},
    }
    policy = SafetyPolicy.from_config(
        {"limits": {"rpm": "100"}, "interlocks": ["T <= 5 if rpm == 200"]}, parameters
    )
    policy.check("cell", {"T": 9, "rpm": 100})
    with pytest.raises(SafetyViolation):
        policy.check("cell", {"T": 1, "rpm": 200})
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"limits": {"rpm": "100.0"}}, parameters)
    assert info.value.field == "safety.limits.rpm"


def test_from_config_without_a_schema_accepts_only_an_empty_policy() -> None:
    # a station that could not be described: nothing to check rules against
    assert SafetyPolicy.from_config({"timeout_s": 5}, {}) == SafetyPolicy(timeout_s=5.0)
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"limits": {"solvent": "PC"}}, {})
    assert (info.value.field, info.value.problem) == ("safety.limits.solvent", "no such parameter")
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"interlocks": ["temperature_c <= 40"]}, {})
    assert info.value.field == "safety.interlocks[0]"


def test_from_config_names_the_parameters_a_limit_may_use() -> None:
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"limits": {"T": "20:60"}}, PARAMETERS)
    assert info.value.problem == "no such parameter"
    assert "temperature_c" in info.value.fix


def test_from_config_refuses_an_infinite_timeout() -> None:
    with pytest.raises(InvalidInput) as info:
        SafetyPolicy.from_config({"timeout_s": math.inf}, PARAMETERS)
    assert info.value.field == "safety.timeout_s"


def test_to_config_round_trips() -> None:
    policy = SafetyPolicy.from_config(CONFIG, PARAMETERS)
    stored = policy.to_config()
    assert stored == {**CONFIG, "timeout_s": 5.0}
    assert SafetyPolicy.from_config(stored, PARAMETERS) == policy
    assert SafetyPolicy.from_config(stored, PARAMETERS).to_config() == stored


def test_to_config_writes_limits_in_their_shortest_form() -> None:
    config = {"limits": {"temperature_c": " 20.0 : ", "salt_molality": ":2.50"}}
    stored = SafetyPolicy.from_config(config, PARAMETERS).to_config()
    assert stored == {"limits": {"temperature_c": "20:", "salt_molality": ":2.5"}}


def test_to_config_keeps_a_limit_exactly() -> None:
    policy = SafetyPolicy.from_config({"limits": {"salt_molality": "0.1:1.2345678"}}, PARAMETERS)
    stored = SafetyPolicy.from_config(policy.to_config(), PARAMETERS)
    assert stored.limits["salt_molality"].high == 1.2345678
    with pytest.raises(SafetyViolation):
        stored.check("cell", point(salt_molality=1.234569))


def test_describe_gives_one_line_per_feature_in_order() -> None:
    policy = SafetyPolicy.from_config({**CONFIG, "timeout_s": 2.5}, PARAMETERS)
    assert policy.describe() == [
        "limit temperature_c 20:60",
        "limit solvent EC-DMC,PC",
        "interlock temperature_c <= 40 if solvent == EC-DMC",
        "interlock salt_molality * temperature_c <= 90",
        "timeout 2.5 s",
    ]


def test_check_lets_a_safe_operation_through() -> None:
    policy = SafetyPolicy.from_config(CONFIG, PARAMETERS)
    policy.check("cell", point(temperature_c=40, solvent="EC-DMC", salt_molality=2.25))
    policy.check("cell", point(temperature_c=60, solvent="PC", salt_molality=1.5))


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        (point(temperature_c=15), "op.params.temperature_c", "is below its limit 20"),
        (point(temperature_c=61), "op.params.temperature_c", "is above its limit 60"),
        (point(solvent="EC-EMC"), "op.params.solvent", "is not one of ['EC-DMC', 'PC']"),
        (
            point(temperature_c=45, solvent="EC-DMC"),
            "op.params",
            "interlock 'temperature_c <= 40 if solvent == EC-DMC'",
        ),
        (
            point(temperature_c=50, salt_molality=2.0),
            "op.params",
            "interlock 'salt_molality * temperature_c <= 90'",
        ),
    ],
)
def test_check_refuses_with_a_safety_violation_naming_the_field(
    params: dict[str, Any], field: str, words: str
) -> None:
    policy = SafetyPolicy.from_config(CONFIG, PARAMETERS)
    with pytest.raises(SafetyViolation) as info:
        policy.check("cell-1", params)
    error = info.value
    assert isinstance(error, InvalidInput)
    assert error.field == field
    assert words in str(error)
    assert "station 'cell-1'" in str(error)
    assert "not sent" in error.fix


def test_check_reports_a_broken_limit_before_a_broken_interlock() -> None:
    policy = SafetyPolicy.from_config(CONFIG, PARAMETERS)
    with pytest.raises(SafetyViolation) as info:
        policy.check("cell", point(temperature_c=65, solvent="EC-DMC"))
    assert info.value.field == "op.params.temperature_c"


@pytest.mark.parametrize(
    ("limits", "params", "field"),
    [
        ({"temperature_c": "20:60"}, {"solvent": "PC"}, "op.params.temperature_c"),
        ({"temperature_c": "20:"}, {"salt_molality": 1.0}, "op.params.temperature_c"),
        ({"solvent": "PC"}, {"temperature_c": 30}, "op.params.solvent"),
        ({"salt_molality": ":2", "solvent": "PC"}, {"salt_molality": 1.0}, "op.params.solvent"),
    ],
)
def test_check_refuses_an_operation_without_a_limited_parameter(
    limits: dict[str, str], params: dict[str, Any], field: str
) -> None:
    policy = SafetyPolicy.from_config({"limits": limits}, PARAMETERS)
    with pytest.raises(SafetyViolation) as info:
        policy.check("cell-1", params)
    name = field.rsplit(".", 1)[1]
    assert info.value.field == field
    assert f"{name} is missing" in info.value.problem
    assert f"station 'cell-1' limits it to {limits[name]}" in info.value.problem
    assert "not sent" in info.value.fix


def test_check_lets_through_an_operation_without_an_unlimited_parameter() -> None:
    policy = SafetyPolicy.from_config({"limits": {"temperature_c": "20:60"}}, PARAMETERS)
    policy.check("cell", {"temperature_c": 30})


def test_interlocks_refuse_an_operation_without_their_parameters() -> None:
    policy = SafetyPolicy.from_config({"interlocks": CONFIG["interlocks"]}, PARAMETERS)
    with pytest.raises(SafetyViolation) as info:
        policy.check("cell", {"solvent": "PC"})
    assert info.value.field == "op.params"
