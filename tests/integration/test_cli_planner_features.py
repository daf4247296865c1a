"""`genesis campaign` and the planner keys: constraints, outcome constraints, several
objectives, fidelities and warm starts.

Bad input exits 2 with the dotted field and its fix, no traceback, and leaves the catalog
without a campaign. ``campaign show`` prints the Pareto front of a multi-objective campaign
and the warm start of a warm-started one.
"""

import json
from pathlib import Path

import pytest

from tests.integration.cli import run, run_json

FUNCTIONS = "genesis_platform.testing.functions"
SCREEN = Path(__file__).parents[2] / "examples" / "data" / "electrolyte_screen.csv"

SITE = f"""
name: cli-planner
space:
  a: {{type: real, low: 0, high: 1}}
  b: {{type: real, low: 0, high: 1}}
  k: {{type: int, low: 1, high: 5}}
  c: {{type: choice, values: [x, y]}}
objectives: {{value: min}}
planner: random
runner: {{site: local, function: "{FUNCTIONS}:quadratic"}}
budget: {{trials: 2, parallel: 1}}
"""
FIDELITIES = f"""
name: cli-fidelities
space:
  salt_molality: {{type: real, low: 0.1, high: 3.0}}
  temperature_c: {{type: int, low: 10, high: 60}}
  solvent: {{type: choice, values: [EC-DMC, EC-EMC, PC]}}
objectives: {{conductivity: max}}
fidelities:
  simulation:
    cost: 1
    runner: {{site: local, function: "{FUNCTIONS}:electrolyte_simulation"}}
  robot:
    cost: 10
    runner: {{station: electrolyte, options: {{latency_s: 0}}}}
target_fidelity: robot
planner: random
budget: {{trials: 2, parallel: 1, cost: 50}}
"""
STATION = """
name: cli-warm
space:
  salt_molality: {type: real, low: 0.1, high: 3.0}
  temperature_c: {type: int, low: 10, high: 60}
  solvent: {type: choice, values: [EC-DMC, EC-EMC, PC]}
objectives: {conductivity: max}
planner: random
runner: {station: electrolyte, options: {latency_s: 0}}
budget: {trials: 3, parallel: 1}
"""
ADD = "budget: {trials: 2, parallel: 1}\n"
"""The last line of SITE: cases append keys after it."""


def _refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, field: str) -> str:
    """Run ``text`` as a campaign file; check it is refused on ``field``; return the message."""
    spec = tmp_path / "c.yaml"
    spec.write_text(text)
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    message = " ".join(err.split())
    assert code == 2, message
    assert "Traceback" not in err
    assert f"error: {field}: " in message, message
    assert message.endswith(")"), f"the message ends with its fix: {message}"
    assert run_json(capsys, "campaign", "list") == []
    return message


def _edit(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new)


# -- constraints and outcome constraints ---------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "field", "words"),
    [
        ('constraints: ["a + z <= 1"]', "constraints[0]", "'z', which is not a numeric"),
        ('constraints: ["a <= 1", "a * b == 0.2"]', "constraints[1]", "nonlinear equality"),
        ('constraints: ["c <= 1"]', "constraints[0]", "'c', which is not a numeric"),
        ('constraints: ["k + a == 2"]', "constraints[0]", "'k' is an integer"),
        ('constraints: ["a.real <= 1"]', "constraints[0]", "is not allowed"),
        ('constraints: ["a <"]', "constraints[0]", "not a valid expression"),
        ('constraints: ["a + b"]', "constraints[0]", "must compare two sides"),
        ("constraints: a <= b", "constraints", "list"),
        ('outcome_constraints: ["a >= 0.5"]', "outcome_constraints[0]", "is a parameter"),
        ('outcome_constraints: ["value == 0.5"]', "outcome_constraints[0]", "an equality"),
        ('outcome_constraints: ["value >= x"]', "outcome_constraints[0]", "finite number"),
        ("reference_point: {value: 1}", "reference_point", "two or more objectives"),
    ],
)
def test_bad_constraint_keys_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: str, field: str, words: str
) -> None:
    message = _refused(capsys, tmp_path, SITE + keys + "\n", field)
    assert words in message


def test_reference_point_must_name_every_objective(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = _edit(SITE, "{value: min}", "{value: min, spread: max}") + "reference_point: {value: 1}"
    message = _refused(capsys, tmp_path, text, "reference_point")
    assert "['spread', 'value']" in message


def test_a_constraint_that_calls_python_is_refused_and_never_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    cases = [
        (f"__import__('os').system('touch {marker}') <= a", "'__import__'"),
        (f"a <= open('{marker}', 'w').write('x')", "'open'"),
        (f"(lambda: __import__('os').system('touch {marker}'))() <= a", "'__import__'"),
        ("a <= a.__class__.__mro__[1]", "is not allowed"),
    ]
    for expression, words in cases:
        text = SITE + f"constraints: [{json.dumps(expression)}]\n"
        message = _refused(capsys, tmp_path, text, "constraints[0]")
        assert words in message, message
    assert not marker.exists(), "a constraint expression was executed"


def test_constraints_no_point_can_meet_fail_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(SITE + 'constraints: ["a + b >= 3"]\n')
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    message = " ".join(err.split())
    assert "Traceback" not in err
    assert "a + b >= 3" in message and "can all hold at once" in message, message
    assert code == 2, message  # refused when the campaign is created: nothing is stored
    assert run_json(capsys, "campaign", "list") == []


# -- fidelities ----------------------------------------------------------------------------

_SIM_RUNNER = f'runner: {{site: local, function: "{FUNCTIONS}:electrolyte_simulation"}}'


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("planner: random", "planner: random\nrunner: {station: electrolyte}", "runner"),
        (f"  simulation:\n    cost: 1\n    {_SIM_RUNNER}\n", "", "fidelities"),
        ("target_fidelity: robot", "target_fidelity: lab", "target_fidelity"),
        ("solvent: {type", "fidelity: {type", "space.fidelity"),
        ("{conductivity: max}", "{conductivity: max, cost: min}", "fidelities"),
        ("station: electrolyte,", "station: spectrometer,", "fidelities.robot.runner.station"),
        ("latency_s: 0", "latency_s: 0, bogus: 1", "fidelities.robot.runner.options.bogus"),
        (
            f"{FUNCTIONS}:electrolyte",
            "nowhere.at_all:electrolyte",
            "fidelities.simulation.runner.function",
        ),
        ("cost: 50", "cost: 0", "budget.cost"),
        ("cost: 50", "cost: true", "budget.cost"),
        ("  robot:", '  "no good":', "fidelities"),
    ],
)
def test_bad_fidelities_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, field: str
) -> None:
    _refused(capsys, tmp_path, _edit(FIDELITIES, old, new), field)


@pytest.mark.parametrize("cost", ["0", "-1", "x", "true", ".inf", "null"])
def test_a_bad_fidelity_cost_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, cost: str
) -> None:
    text = _edit(FIDELITIES, "    cost: 1\n", f"    cost: {cost}\n")
    message = _refused(capsys, tmp_path, text, "fidelities.simulation.cost")
    assert "cost: 1" in message  # the fix shows a good cost


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("    cost: 1\n", "    cost: 0\n", "fidelities.simulation.cost"),
        ("    cost: 1\n", "    cost: true\n", "fidelities.simulation.cost"),
        (_SIM_RUNNER, "runner: {site: local}", "fidelities.simulation.runner.function"),
        (
            'electrolyte_simulation"}',
            'electrolyte_simulation", options: {max_workers: 0}}',
            "fidelities.simulation.runner.options.max_workers",
        ),
        ("    cost: 10\n", "    cost: 10\n    price: 3\n", "fidelities.robot.price"),
    ],
)
def test_errors_inside_a_fidelity_name_its_level(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, field: str
) -> None:
    _refused(capsys, tmp_path, _edit(FIDELITIES, old, new), field)


def test_budget_cost_and_target_fidelity_need_fidelities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = _refused(
        capsys, tmp_path, _edit(SITE, ADD, "budget: {trials: 2, cost: 10}\n"), "budget.cost"
    )
    assert "fidelities" in message
    message = _refused(capsys, tmp_path, SITE + "target_fidelity: robot\n", "target_fidelity")
    assert "needs fidelities" in message


def test_a_cost_budget_run_reports_why_it_stopped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(_edit(FIDELITIES, "budget: {trials: 2,", "budget: {trials: 100,"))
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    assert code == 0, err
    [info] = run_json(capsys, "campaign", "list")
    assert info["stop_reason"] == "cost budget of 50 used"
    assert info["n_trials"] < 100 and info["best_params"]["fidelity"] == "robot"
    code, out, _ = run(capsys, "campaign", "show", str(info["id"]))
    assert code == 0 and "cost budget of 50 used" in out


# -- warm start ----------------------------------------------------------------------------


def test_bad_warm_starts_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("salt_molality,temperature_c,conductivity\n1.0,25,8.0\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a table\n")
    assert run(capsys, "data", "add", "partial", str(partial))[0] == 0
    assert run(capsys, "data", "add", "notes", str(notes))[0] == 0
    cases = [
        ("missing", "does not exist"),
        ("partial", "partial@1 has no column 'solvent'"),
        ("partial@9", "partial@9 does not exist"),
        ("notes", "tabular"),
        ("x@y", "is not NAME or NAME@VERSION"),
        ("partial@0", "is not NAME or NAME@VERSION"),
        ("'@1'", "is not NAME or NAME@VERSION"),
    ]
    for ref, words in cases:
        message = _refused(capsys, tmp_path, STATION + f"warm_start: {ref}\n", "warm_start")
        assert words in message, (ref, message)


def test_warm_start_lacking_a_constrained_metric_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "data", "add", "screen", str(SCREEN))[0] == 0
    text = STATION + 'warm_start: screen\noutcome_constraints: ["viscosity <= 2"]\n'
    message = _refused(capsys, tmp_path, text, "warm_start")
    assert "no column 'viscosity'" in message


def test_a_warm_start_that_is_not_text_says_what_to_write(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _refused(capsys, tmp_path, STATION + "warm_start: 5\n", "warm_start")


# -- campaign show -------------------------------------------------------------------------


def test_show_prints_the_pareto_front_and_hypervolume(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    text = _edit(STATION, "{conductivity: max}", "{conductivity: max, cost: min}")
    text = _edit(
        text,
        "runner: {station: electrolyte, options: {latency_s: 0}}",
        f'runner: {{site: local, function: "{FUNCTIONS}:electrolyte_cost_simulation"}}',
    )
    text = _edit(text, "budget: {trials: 3,", "budget: {trials: 8,")
    spec.write_text(text + "reference_point: {conductivity: 2.0, cost: 60.0}\n")
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    assert code == 0, err
    info = run_json(capsys, "campaign", "show", "1")
    assert info["pareto"] and info["hypervolume"] > 0

    code, out, _ = run(capsys, "campaign", "show", "1")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert "objectives: conductivity (max), cost (min)" in lines
    n, volume = len(info["pareto"]), f"{info['hypervolume']:.4g}"
    assert f"Pareto front: {n} trials, hypervolume {volume}" in lines
    listed = sorted(int(line.split()[1].rstrip(":")) for line in lines if line.startswith("trial "))
    assert listed == sorted(row["trial"] for row in info["pareto"])
    assert not any(line.startswith("best conductivity") for line in lines)


def test_show_prints_the_pinned_warm_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "data", "add", "screen", str(SCREEN))[0] == 0
    spec = tmp_path / "c.yaml"
    spec.write_text(STATION + "warm_start: screen\n")
    code, _, err = run(capsys, "campaign", "run", str(spec), "--quiet")
    assert code == 0, err
    assert run(capsys, "data", "add", "screen", str(SCREEN))[0] == 0  # version 2, unused
    code, out, _ = run(capsys, "campaign", "show", "1")
    assert code == 0
    assert "warm start: dataset screen@1" in " ".join(out.split())
    assert run_json(capsys, "campaign", "show", "1")["warm_start"] == "screen@1"


# -- found in review ---------------------------------------------------------------------------


def test_a_planner_without_fidelities_is_refused_on_fidelities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    text = _edit(FIDELITIES, "planner: random", "planner: optuna")
    message = _refused(capsys, tmp_path, text, "fidelities")
    assert "planner 'optuna' does not take several fidelities" in message


def test_a_station_that_does_not_measure_a_constrained_metric_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = STATION + 'outcome_constraints: ["viscosity <= 1.2"]\n'
    message = _refused(capsys, tmp_path, text, "outcome_constraints[0]")
    assert "does not measure 'viscosity'" in message


def test_a_cost_budget_is_overshot_by_at_most_one_trial(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    text = _edit(
        FIDELITIES,
        "budget: {trials: 2, parallel: 1, cost: 50}",
        "budget: {trials: 40, parallel: 4, cost: 20}",
    )
    spec.write_text(text)
    code, out, err = run(capsys, "campaign", "run", str(spec), "--json", "--quiet")
    assert code == 0, err
    info = json.loads(out)
    levels = [
        t["params"]["fidelity"]
        for t in run_json(capsys, "campaign", "show", str(info["id"]))["trials"]
    ]
    spent = sum(10 if level == "robot" else 1 for level in levels)
    assert 20 <= spent <= 20 + 10  # four slots could have started 40 at once
