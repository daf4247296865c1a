from pathlib import Path
from typing import Any

import pytest

from genesis_platform import Budget, CampaignSpec, CampaignSpecError, Choice, Int, Real, on_station
from genesis_platform.campaigns.spec import load_spec, parse_duration

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
    assert parse_duration(30) == 30
    assert Budget(trials=5, wall="10m").wall_seconds == 600


def test_python_objects_are_accepted_by_create(platform: Any) -> None:
    campaign = platform.campaigns.create(
        name="py",
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
