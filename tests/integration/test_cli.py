"""The genesis command, in-process: listings as JSON, bad input as exit code 2."""

import os
from pathlib import Path

import pytest

from tests.integration.cli import electrolyte_campaign, run, run_json

FAST = electrolyte_campaign("cli-fast")


def test_campaign_run_list_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST)
    code, out, _ = run(capsys, "campaign", "run", str(spec), "--quiet")
    assert code == 0
    assert "completed" in out and "best conductivity" in out and "observations: dataset" in out

    [listed] = run_json(capsys, "campaign", "list")
    assert {"id", "name", "state", "n_trials", "n_observed", "best"} <= set(listed)
    assert (listed["state"], listed["n_trials"], listed["n_observed"]) == ("completed", 6, 6)

    shown = run_json(capsys, "campaign", "show", str(listed["id"]))
    assert len(shown["trials"]) == 6
    assert {"id", "state", "params", "values"} <= set(shown["trials"][0])

    [dataset] = run_json(capsys, "data", "list")
    assert dataset["name"] == f"cli-fast-{listed['id']}-observations" and dataset["versions"] >= 1
    assert run_json(capsys, "model", "list") == []  # sobol keeps no surrogate
    assert {s["name"] for s in run_json(capsys, "station", "list")} >= {"electrolyte"}


def test_data_add_show_and_lineage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    code, out, _ = run(
        capsys,
        "data",
        "add",
        "d",
        str(tmp_path / "a.csv"),
        "--description",
        "one",
        "--license",
        "MIT",
    )
    assert code == 0 and "d@1" in out
    shown = run_json(capsys, "data", "show", "d@1")
    assert shown["files"][0]["path"] == "a.csv"
    code, out, _ = run(capsys, "lineage", "dataset", "d@1")
    assert code == 0 and "dataset d@1" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "add", "d", "/no/such/file.csv"], "paths: /no/such/file.csv does not exist"),
        (["data", "show", "nothing@2"], "dataset nothing does not exist"),
        (["model", "show", "m@x"], "NAME[@VERSION]"),
        (["campaign", "show", "99"], "campaign 99 does not exist"),
        (["campaign", "run", "/no/such.yaml"], "file: /no/such.yaml does not exist"),
        (["lineage", "planner", "x"], "KIND"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in " ".join(err.split())


@pytest.mark.parametrize(
    ("yaml_change", "field"),
    [
        (("type: int", "type: integer"), "space.temperature_c.type"),
        (("low: 10, high: 60", "low: 60, high: 10"), "space.temperature_c.low/high"),
        (("values: [EC-DMC, EC-EMC, PC]", "values: []"), "space.solvent.values"),
        (("planner: sobol", "planner: magic"), "planner"),
        (("station: electrolyte", "station: nowhere"), "runner.station"),
        (("objectives: {conductivity: max}", ""), "objectives"),
    ],
)
def test_bad_campaign_files_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, yaml_change: tuple[str, str], field: str
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST.replace(*yaml_change))
    code, _, err = run(capsys, "campaign", "run", str(spec))
    assert code == 2
    assert f"{field}:" in err
    assert run_json(capsys, "campaign", "list") == []


def test_corrupted_blob_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    run(capsys, "data", "add", "d", str(tmp_path / "a.csv"))
    [file] = run_json(capsys, "data", "show", "d")["files"]
    blob = next((Path(os.environ["GENESIS_HOME"]) / "objects").rglob(file["digest"]))
    blob.write_text("x\n2\n")
    code, _, err = run(capsys, "data", "fetch", "d", str(tmp_path / "out"))
    assert code == 2
    assert f"blob {file['digest']} is corrupted" in " ".join(err.split())
    code, _, _ = run(capsys, "data", "fetch", "d@1", str(tmp_path / "out2"))
    assert code == 2 and not (tmp_path / "out2" / "a.csv").exists()


def test_bad_input_changes_nothing_already_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST.replace("planner: sobol", "planner: gp"))
    assert run(capsys, "campaign", "run", str(spec), "--quiet")[0] == 0
    (tmp_path / "a.csv").write_text("x\n1\n")
    assert run(capsys, "data", "add", "d", str(tmp_path / "a.csv"))[0] == 0

    def state() -> list[object]:
        return [
            run_json(capsys, "campaign", "show", "1"),
            run_json(capsys, "data", "list"),
            run_json(capsys, "model", "list"),
            run_json(capsys, "data", "show", "d"),
        ]

    before = state()
    bad = tmp_path / "bad.yaml"
    bad.write_text(FAST.replace("low: 10, high: 60", "low: 60, high: 10"))
    for argv in (
        ["campaign", "run", str(bad)],
        ["campaign", "resume", "1"],  # completed: nothing to resume
        ["data", "add", "d", str(tmp_path / "missing.csv")],
        ["data", "show", "d@9"],
        ["model", "show", "cli-fast-1-surrogate@99"],
    ):
        code, _, err = run(capsys, *argv)
        assert code in (1, 2) and "error:" in err, argv
    assert state() == before
