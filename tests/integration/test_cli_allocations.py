"""genesis allocation, in-process: grant, show against use, list, bad input, and a campaign
that runs out of its allocation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.cli import run, run_json

PROJECT = "battery-lab"
GRANT = ["allocation", "grant", PROJECT]
ONE_CORE_HOUR = ["--site", "local", "--unit", "core-hours", "--amount", "1"]
FIELDS = {
    "project",
    "kind",
    "resource",
    "unit",
    "amount",
    "used",
    "remaining",
    "starts_at",
    "ends_at",
    "state",
    "active",
    "created_by",
}


def test_grant_show_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*GRANT, "--site", "local", "--unit", "core-hours", "--amount", "100"]
    code, out, err = run(capsys, *argv, "--starts", "2026-01-01", "--ends", "2099-01-01")
    assert code == 0, err
    assert " ".join(out.split()) == (
        f"granted {PROJECT} 100 core-hours on site local from 2026-01-01 until 2099-01-01 "
        "(0 used, 100 left)"
    )
    argv = [*GRANT, "--station", "electrolyte", "--unit", "instrument-hours", "--amount", "2.5"]
    assert run(capsys, *argv)[0] == 0
    site, station = run_json(capsys, "allocation", "show", PROJECT)
    assert set(site) == FIELDS
    assert (site["kind"], site["resource"], site["unit"], site["amount"]) == (
        "site",
        "local",
        "core-hours",
        100.0,
    )
    assert (site["used"], site["remaining"], site["state"], site["active"]) == (
        0.0,
        100.0,
        "active",
        True,
    )
    assert site["ends_at"].startswith("2099-01-01")
    assert (station["resource"], station["amount"]) == ("electrolyte", 2.5)
    code, out, err = run(capsys, "allocation", "show", PROJECT)
    assert code == 0, err
    for text in ("site local", "electrolyte", "core-hours", "2099-01-01", "active"):
        assert text in out
    assert [a["project"] for a in run_json(capsys, "allocation", "list")] == [PROJECT] * 2
    code, out, _ = run(capsys, "allocation", "list")
    assert code == 0 and "battery" in out and "electrol" in out


def test_granting_again_changes_the_amount_and_keeps_what_was_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*GRANT, "--station", "electrolyte", "--unit", "instrument-hours"]
    assert run(capsys, *argv, "--amount", "1")[0] == 0
    code, out, err = run(capsys, *argv, "--amount", "3", "--ends", "2099-06-01")
    assert code == 0, err
    assert "3 instrument-hours on station electrolyte" in out and "until 2099-06-01" in out
    [allocation] = run_json(capsys, "allocation", "show", PROJECT)
    assert (allocation["amount"], allocation["used"]) == (3.0, 0.0)


def test_a_project_without_allocations_is_not_limited(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "allocation", "show", "nobody")
    assert code == 0
    assert "no allocations of project nobody that you may see" in out
    assert run_json(capsys, "allocation", "show", "nobody") == []
    assert run_json(capsys, "allocation", "list") == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--site", "local", "--unit", "core-hours", "--amount", "0"],
            "amount: must be more than 0",
        ),
        (["--site", "local", "--unit", "core-hours", "--amount", "-3"], "amount: must be more"),
        (["--site", "local", "--unit", "gpu-hours", "--amount", "1"], "unit: 'gpu-hours'"),
        (["--station", "electrolyte", "--unit", "core-hours", "--amount", "1"], "unit:"),
        (["--unit", "core-hours", "--amount", "1"], "give either a site or a station"),
        (
            [
                "--site",
                "local",
                "--station",
                "electrolyte",
                "--unit",
                "core-hours",
                "--amount",
                "1",
            ],
            "give either a site or a station",
        ),
        (["--site", "nowhere", "--unit", "core-hours", "--amount", "1"], "site nowhere does not"),
        (
            ["--station", "nowhere", "--unit", "instrument-hours", "--amount", "1"],
            "station nowhere",
        ),
        (
            [*ONE_CORE_HOUR, "--ends", "next year"],
            "--ends: 'next year' is not a date",
        ),
        (
            [*ONE_CORE_HOUR, "--starts", "2027-01-01", "--ends", "2026-01-01"],
            "ends: 2026-01-01 is not after the start, 2027-01-01",
        ),
    ],
)
def test_bad_grants_exit_2_with_the_field_and_store_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, _, err = run(capsys, *GRANT, *argv)
    assert code == 2
    assert "error:" in err and says in " ".join(err.split())
    assert run_json(capsys, "allocation", "list") == []


def test_a_campaign_that_runs_out_of_its_allocation_stops_and_says_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = [*GRANT, "--station", "electrolyte", "--unit", "instrument-hours"]
    assert run(capsys, *argv, "--amount", "0.00002")[0] == 0  # 0.072 s
    spec = {
        "name": "screen",
        "project": PROJECT,
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "runner": {"station": "electrolyte", "options": {"latency_s": 0.02}},
        "budget": {"trials": 40},
    }
    path = tmp_path / "screen.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, out, err = run(capsys, "campaign", "run", str(path), "--quiet")
    assert code == 0, err
    text = " ".join(out.split())
    assert "stopped (allocation exhausted: project battery-lab has 0 of 0.00002" in text
    assert "instrument-hours left on station electrolyte" in text
    [allocation] = run_json(capsys, "allocation", "show", PROJECT)
    assert allocation["used"] >= 0.00002 * 0.99 and allocation["remaining"] == 0.0
    [campaign] = run_json(capsys, "campaign", "list")
    assert campaign["state"] == "stopped" and campaign["n_canceled"] == 1
