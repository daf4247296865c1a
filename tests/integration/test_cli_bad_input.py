"""`genesis campaign run` on bad campaign files: exit code 2, the field and its fix, no trace.

Each case is one edit of a valid file. The error names the dotted field once, ends with a
fix in parentheses, prints no traceback, and leaves the catalog without a campaign.
"""

from pathlib import Path

import pytest

from tests.integration.cli import electrolyte_campaign, run

STATION = electrolyte_campaign("cli-bad", trials=2, parallel=1)
SITE = STATION.replace(
    "runner: {station: electrolyte, options: {latency_s: 0}}",
    "runner: {site: local, function: 'genesis_platform.testing.functions:electrolyte_simulation',"
    " options: {max_workers: 1}}",
)
CASES = [
    ("type: real", "type: [real]", "space.salt_molality.type"),
    ("values: [EC-DMC, EC-EMC, PC]", "values: [[1], [2]]", "space.solvent.values"),
    ("values: [EC-DMC, EC-EMC, PC]", "values: [{a: 1}]", "space.solvent.values"),
    ("planner: sobol", "planner: 'collections:OrderedDict'", "planner"),
    ("planner: sobol", "planner: 'os:system'", "planner"),
    ("budget: {trials: 2, parallel: 1}", "budget: {wall: .inf}", "budget.wall"),
    ("budget: {trials: 2, parallel: 1}", "budget: {wall: .nan}", "budget.wall"),
    ("budget: {trials: 2, parallel: 1}", "budget: {wall: true}", "budget.wall"),
    ("budget: {trials: 2, parallel: 1}", "budget: {wall: 2 hours}", "budget.wall"),
    ("budget: {trials: 2, parallel: 1}", "budget: 30", "budget"),
    ("budget: {trials: 2, parallel: 1}", "budget: {trails: 2}", "budget.trails"),
    ("low: 10, high: 60", "low: 10, high: 100000000000000000000", "space.temperature_c.high"),
    ("low: 0.1, high: 3.0}", "low: 0.1, high: 3.0, log: 'no'}", "space.salt_molality.log"),
    ("low: 0.1, high: 3.0}", "low: 0.1, high: 3.0, unit: [1]}", "space.salt_molality.unit"),
    ("runner: {station: electrolyte, options: {latency_s: 0}}", "runner: electrolyte", "runner"),
    ("name: cli-bad", "name: 'bad name!'", "name"),
    ("objectives: {conductivity: max}", "objectives: {}", "objectives"),
    ("objectives: {conductivity: max}", "objectives: {trial: max}", "objectives.trial"),
    ("solvent: {type", "123: {type", "space.123"),
    ("solvent: {type", "trial: {type", "space.trial"),
]


@pytest.mark.parametrize(("old", "new", "field"), CASES)
def test_bad_station_campaign_exits_2_naming_field_and_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in STATION
    _check_refused(capsys, tmp_path, STATION.replace(old, new), field)


@pytest.mark.parametrize(
    ("new", "field"),
    [
        ("max_workers: x", "runner.options.max_workers"),
        ("max_workers: 0", "runner.options.max_workers"),
        ("max_workers: 1.5", "runner.options.max_workers"),
    ],
)
def test_bad_site_campaign_exits_2_naming_field_and_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, new: str, field: str
) -> None:
    _check_refused(capsys, tmp_path, SITE.replace("max_workers: 1", new), field)


def test_project_is_accepted_and_recorded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(STATION.replace("name: cli-bad", "name: cli-bad\nproject: battery-lab"))
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    assert code == 0, err
    code, out, _ = run(capsys, "campaign", "list", "--json")
    assert code == 0 and '"cli-bad"' in out


def _check_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, field: str
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(text)
    code, _, err = run(capsys, "campaign", "run", str(spec))
    message = " ".join(err.split())
    assert code == 2, message
    assert "Traceback" not in err
    assert f"error: {field}: " in message
    assert f"{field}: {field}:" not in message  # named once, not nested
    assert message.endswith(")"), "the message ends with its fix"
    code, out, _ = run(capsys, "campaign", "list", "--json")
    assert code == 0 and out.strip() == "[]"
