from pathlib import Path
from typing import Any

import pytest

from genesis_platform import (
    Budget,
    CampaignSpec,
    CampaignSpecError,
    Choice,
    Int,
    Real,
    StopSpec,
    on_site,
    on_station,
)
from genesis_platform.campaigns.spec import PlannerSpec, RunnerSpec, load_spec, parse_duration

QUICKSTART = Path(__file__).parents[3] / "examples" / "quickstart.yaml"


def _spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t",
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "runner": {"station": "electrolyte"},
    }
    base.update(changes)
    return base


def test_quickstart_file_validates() -> None:
    spec = load_spec(QUICKSTART)
    assert spec.planner.kind == "gp"
    assert spec.budget.trials == 30 and spec.budget.parallel == 2
    assert spec.runner.station == "electrolyte"
    assert list(spec.build_space()) == ["salt_molality", "temperature_c", "solvent"]


def test_round_trip() -> None:
    spec = CampaignSpec.from_dict(_spec(planner={"kind": "sobol", "options": {}}))
    assert CampaignSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"space": {"x": {"type": "float", "low": 0, "high": 1}}}, "space.x.type", "real, int"),
        ({"space": {"x": {"type": "real", "low": 2, "high": 1}}}, "space.x.low/high", "below"),
        ({"space": {"x": {"type": "choice", "values": []}}}, "space.x.values", "empty"),
        ({"space": {"x": {"type": "int", "low": 1}}}, "space.x.high", "missing"),
        ({"space": {"x": {"type": "real", "low": 0, "high": 1, "step": 2}}}, "space.x.step", ""),
        ({"objectives": {}}, "objectives", ""),
        ({"objectives": {"c": "maximize"}}, "objectives.c", "max"),
        ({"budget": {"trials": 0}}, "budget.trials", ""),
        ({"budget": {"wall": "soon"}}, "budget.wall", "2h"),
        ({"runner": {"station": "a", "site": "local"}}, "runner", "either"),
        ({"colour": "red"}, "colour", "unknown key"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(CampaignSpecError) as info:
        CampaignSpec.from_dict(_spec(**changes))
    assert info.value.field == field
    assert words in str(info.value)
    assert info.value.fix


SITE = {"site": "local", "function": "genesis_platform.testing.functions:electrolyte_simulation"}


def _param(**fields: Any) -> dict[str, Any]:
    return {"space": {"x": fields}}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        # values that used to escape as a TypeError or ValueError traceback
        (_param(type=["real"], low=0, high=1), "space.x.type", "real, int or choice"),
        (_param(type="choice", values=[[1], [2]]), "space.x.values", "[1] is not a string"),
        (_param(type="choice", values=[{"a": 1}]), "space.x.values", "not a string"),
        (_param(type="choice", values=[True, False]), "space.x.values", "True"),
        (_param(type="choice", values=[float("nan")]), "space.x.values", "finite"),
        (_param(type="int", low=0, high=10**20), "space.x.high", "1e15"),
        (_param(type="int", low=-(10**16), high=0), "space.x.low", "1e15"),
        (_param(type="real", low=-1e308, high=1e308), "space.x.low/high", "too wide"),
        (
            {"runner": {**SITE, "options": {"max_workers": "x"}}},
            "runner.options.max_workers",
            "'x'",
        ),
        ({"runner": {**SITE, "options": {"max_workers": 0}}}, "runner.options.max_workers", "1"),
        ({"runner": {**SITE, "options": {"max_workers": True}}}, "runner.options.max_workers", ""),
        ({"budget": {"wall": float("inf")}}, "budget.wall", "finite"),
        ({"budget": {"wall": 10**400}}, "budget.wall", "finite"),
        ({"budget": {"wall": "4000d"}}, "budget.wall", "ten years"),
        # values that used to be accepted and then meant something else
        ({"budget": {"wall": float("nan")}}, "budget.wall", "finite"),
        ({"budget": {"wall": True}}, "budget.wall", "not a duration"),
        ({"budget": {"wall": [1]}}, "budget.wall", "not a duration"),
        ({"budget": {"wall": -5}}, "budget.wall", "positive"),
        ({"budget": {"trials": True}}, "budget.trials", "whole number"),
        ({"budget": {"trials": "30"}}, "budget.trials", "whole number"),
        ({"budget": {"core_hours": float("inf")}}, "budget.core_hours", "finite"),
        ({"stop": {"target": float("nan")}}, "stop.target", "finite"),
        ({"seed": 1.5}, "seed", "whole number"),
        (_param(type="real", low=1, high=2, log="no"), "space.x.log", "true or false"),
        (_param(type="int", low=1, high=2, log=1), "space.x.log", "true or false"),
        (_param(type="real", low=1, high=2, unit=[1]), "space.x.unit", "not text"),
        # messages that lacked a fix or showed pydantic's internals
        ({"runner": "electrolyte"}, "runner", "runner: {station: electrolyte}"),
        ({"budget": 30}, "budget", "budget: {trials: 30"),
        ({"stop": 3}, "stop", "stop: {target"),
        ({"space": "x"}, "space", "space: {x: {type: real"),
        ({"space": {}}, "space", "no parameters"),
        ({"planner": 5}, "planner", "planner: gp"),
        ({"planner": {"kind": ""}}, "planner.kind", "gp"),
        ({"objectives": {}}, "objectives", "no objectives (e.g. objectives: {conductivity: max})"),
        ({"objectives": "conductivity"}, "objectives", "conductivity: max"),
        ({"objectives": {"c": ["max"]}}, "objectives.c", "max or min"),
        ({"name": "bad name!"}, "name", "contains ' '"),
        ({"name": "-dash"}, "name", "starts with '-'"),
        ({"name": 7}, "name", "not text"),
        ({"space": {123: {"type": "real", "low": 0, "high": 1}}}, "space.123", "identifiers"),
        ({"space": {"bad name": {"type": "real", "low": 0, "high": 1}}}, "space.bad name", ""),
        (_param(low=0, high=1), "space.x.type", "add type"),
        (_param(type="real", low=0, high=1, step=2), "space.x.step", "low, high, log"),
        ({"planner": {"kind": "gp", "options": {1: 2}}}, "planner.options.1", "text"),
        # unknown keys name the full dotted path at every level
        ({"colour": "red"}, "colour", "takes name, description, project"),
        ({"budget": {"trails": 3}}, "budget.trails", "takes trials, parallel"),
        ({"stop": {"nope": 1}}, "stop.nope", "takes target, no_improvement"),
        ({"planner": {"kind": "gp", "opts": {}}}, "planner.opts", "takes kind, options"),
        ({"runner": {"station": "electrolyte", "foo": 1}}, "runner.foo", "takes station"),
        # names that would collide in the observation table
        ({"objectives": {"salt_molality": "max"}}, "space.salt_molality", "rename"),
        ({"space": {"trial": {"type": "real", "low": 0, "high": 1}}}, "space.trial", "reserved"),
        ({"objectives": {"trial": "max"}}, "objectives.trial", "reserved"),
        ({"runner": {"site": "local"}}, "runner.function", "pkg.mod:fn"),
        ({"runner": {"station": "x", "function": "a:b"}}, "runner.function", "remove it"),
        ({"project": "battery lab"}, "project", "battery-lab"),
    ],
)
def test_bad_campaign_files_name_the_field_and_the_fix(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(CampaignSpecError) as info:
        CampaignSpec.from_dict(_spec(**changes))
    assert info.value.field == field
    assert info.value.fix, "every error says how to fix it"
    assert words in str(info.value)
    assert str(info.value) == f"{field}: {info.value.problem} ({info.value.fix})"
    assert f"{field}:" not in info.value.problem  # named once, not nested
    assert "Input should" not in str(info.value) and "pattern" not in str(info.value)


def test_duration_field_is_named_once() -> None:
    with pytest.raises(CampaignSpecError) as info:
        CampaignSpec.from_dict(_spec(budget={"wall": "2 hours"}))
    assert str(info.value).startswith("budget.wall: '2 hours' is not a duration (")
    assert str(info.value).count("budget.wall") == 1


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Budget(trials="x"), "budget.trials"),
        (lambda: Budget(wall="2 hours"), "budget.wall"),
        (lambda: Budget(parallel=0), "budget.parallel"),
        (lambda: Budget(colour="red"), "budget.colour"),
        (lambda: RunnerSpec(), "runner"),
        (lambda: RunnerSpec(station=5), "runner.station"),
        (lambda: on_site("local", "pkg.mod:fn", max_workers="x"), "runner.options.max_workers"),
        (lambda: StopSpec(no_improvement=0), "stop.no_improvement"),
        (lambda: StopSpec(target="high"), "stop.target"),
        (lambda: PlannerSpec(kind=""), "planner.kind"),
        (lambda: PlannerSpec(options=[1]), "planner.options"),
        (lambda: CampaignSpec(name="x"), "space"),
    ],
)
def test_models_built_in_python_raise_campaign_spec_errors(build: Any, field: str) -> None:
    with pytest.raises(CampaignSpecError) as info:
        build()
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert info.value.fix


def test_models_built_in_python_equal_the_file_form() -> None:
    spec = CampaignSpec.from_dict(_spec(budget={"trials": 5, "wall": "10m"}))
    built = CampaignSpec(**spec.to_dict())
    assert built == spec
    assert Budget(trials=5, wall="10m") == spec.budget
    assert on_site("local", "pkg.mod:fn", max_workers=2).options == {"max_workers": 2}


def test_project_is_optional_and_round_trips() -> None:
    assert CampaignSpec.from_dict(_spec()).project is None
    spec = CampaignSpec.from_dict(_spec(project="battery-lab"))
    assert spec.project == "battery-lab"
    assert CampaignSpec.from_dict(spec.to_dict()) == spec


def test_missing_objectives_suggests_the_form() -> None:
    data = _spec()
    del data["objectives"]
    with pytest.raises(CampaignSpecError, match=r"objectives: missing.*conductivity: max"):
        CampaignSpec.from_dict(data)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignSpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CampaignSpecError, match="not valid YAML"):
        load_spec(bad)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("2h") == 7200
    assert parse_duration("1.5d") == 129600
    assert parse_duration(30) == 30
    assert parse_duration(0.5) == 0.5
    assert Budget(trials=5, wall="10m").wall_seconds == 600


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), 0, -1, "2 hours", None])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(CampaignSpecError) as info:
        parse_duration(value, field="stop.after")
    assert info.value.field == "stop.after"
    assert "90s" in info.value.fix


def test_python_objects_are_accepted_by_create(platform: Any) -> None:
    campaign = platform.campaigns.create(
        name="py",
        project="battery-lab",
        space={
            "salt_molality": Real(0.1, 3.0),
            "temperature_c": Int(10, 60),
            "solvent": Choice(["EC-DMC", "PC"]),
        },
        objectives={"conductivity": "max"},
        planner="random",
        runner=on_station("electrolyte", latency_s=0),
        budget=Budget(trials=3, parallel=1),
    )
    assert campaign.spec.space["temperature_c"] == {
        "type": "int",
        "low": 10,
        "high": 60,
        "log": False,
    }
    assert platform.campaigns.get(campaign.id).spec.project == "battery-lab"


def test_create_rejects_bad_fields_and_stores_nothing(platform: Any) -> None:
    with pytest.raises(CampaignSpecError) as info:
        platform.campaigns.create(**_spec(budget=Budget(trials=3), stop={"target": float("nan")}))
    assert info.value.field == "stop.target"
    assert platform.campaigns.list() == []
