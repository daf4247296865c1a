"""``genesis ledger``, ``genesis challenge`` and ``genesis partner``, in-process."""

import datetime as dt
from pathlib import Path

import pytest

from tests.integration.cli import electrolyte_campaign, run, run_json

FAST = electrolyte_campaign("cli-ip")
ORG = "local"


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENESIS_ORG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def test_ledger_list_show_set(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST)
    assert run(capsys, "campaign", "run", str(spec), "--quiet")[0] == 0
    [campaign] = run_json(capsys, "campaign", "list")
    cid = campaign["id"]

    entries = run_json(capsys, "ledger", "list", "--campaign", str(cid))
    assert [e["output_kind"] for e in entries] == ["dataset", "candidate"]
    assert entries[0]["output"] == campaign["dataset"]
    assert {e["commercialization"] for e in entries} == {"none"}
    assert run_json(capsys, "ledger", "list") == entries
    assert run_json(capsys, "ledger", "list", "--project", "other") == []

    code, out, _ = run(capsys, "ledger", "list")
    assert code == 0 and "IP ledger" in out and "candidate" in out

    entry = entries[1]
    assert run_json(capsys, "ledger", "show", str(entry["id"])) == entry
    code, out, _ = run(capsys, "ledger", "show", str(entry["id"]))
    assert code == 0 and f"ledger entry {entry['id']}: candidate {entry['output']}" in out

    changed = run_json(
        capsys,
        "ledger",
        "set",
        str(entry["id"]),
        "--commercialization",
        "disclosed",
        "--ownership",
        "joint",
        "--note",
        "invention disclosure filed",
    )
    assert (changed["commercialization"], changed["ownership"], changed["note"]) == (
        "disclosed",
        "joint",
        "invention disclosure filed",
    )
    records = run_json(capsys, "audit", "list", "--resource", f"campaign:{cid}")
    assert any(r["detail"].get("op") == "ledger-update" for r in records)


def test_ledger_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST)
    assert run(capsys, "campaign", "run", str(spec), "--quiet")[0] == 0
    [entry, *_] = run_json(capsys, "ledger", "list")
    for argv, message in [
        (["--commercialization", "sold"], "commercialization: 'sold' is not one of"),
        (["--ownership", "boss"], "ownership: 'boss' is not one of"),
        (["--agreement", "nope"], "agreement: local is a party to no agreement named 'nope'"),
        (["--partner", "ghost"], "partners: ghost is not a registered organization"),
        (["--commercialization", "licensed"], "commercialization: 'licensed' needs"),
        ([], "update: nothing to change"),
    ]:
        code, _, err = run(capsys, "ledger", "set", str(entry["id"]), *argv)
        assert code == 2 and message in err, (argv, err)
    assert run_json(capsys, "ledger", "show", str(entry["id"])) == entry
    code, _, err = run(capsys, "ledger", "show", "999")
    assert code == 2 and "ledger entry 999 does not exist" in err
    code, _, err = run(capsys, "ledger", "list", "--campaign", "999")
    assert code == 2 and "campaign 999 does not exist" in err


def test_challenge_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(FAST)
    assert run(capsys, "campaign", "run", str(spec), "--quiet")[0] == 0
    [campaign] = run_json(capsys, "campaign", "list")
    year = dt.datetime.now(dt.UTC).year

    code, out, _ = run(
        capsys, "challenge", "add", "grid", "--domain", "energy storage", "--lead", ORG
    )
    assert code == 0 and "added challenge grid" in out
    code, out, _ = run(capsys, "challenge", "link", "grid", f"dataset:{campaign['dataset']}")
    assert code == 0 and "linked dataset:" in out
    assert run(capsys, "challenge", "link", "grid", f"campaign:{campaign['id']}")[0] == 0
    code, out, _ = run(
        capsys, "challenge", "review", "grid", "--year", str(year), "--note", "on track"
    )
    assert code == 0 and f"review {year}" in out

    shown = run_json(capsys, "challenge", "show", "grid")
    assert shown["links"] == [f"dataset:{campaign['dataset']}", f"campaign:{campaign['id']}"]
    assert [(r["year"], r["note"]) for r in shown["reviews"]] == [(year, "on track")]
    assert [c["name"] for c in run_json(capsys, "challenge", "list")] == ["grid"]
    code, out, _ = run(capsys, "challenge", "list")
    assert code == 0 and "grid" in out and "energy storage" in out

    for argv, message in [
        (["add", "grid2", "--domain", "x", "--lead", "ghost"], "lead_org: no organization"),
        (["link", "grid", "dataset:nope"], "dataset nope does not exist"),
        (["link", "grid", "site:local"], "link: 'site:local' is not KIND:NAME"),
        (["review", "grid", "--year", "1800", "--note", "x"], "year: 1800 is not a review year"),
        (["show", "nope"], "challenge nope does not exist"),
    ]:
        code, _, err = run(capsys, "challenge", *argv)
        assert code == 2 and message in err, (argv, err)


def test_partner_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "partner", "add", ORG, "--note", "the operator")
    assert code == 0 and f"added partner {ORG}" in out
    code, out, _ = run(capsys, "partner", "contribute", ORG, "station:electrolyte")
    assert code == 0 and "contributes station:electrolyte" in out
    assert run(capsys, "partner", "contribute", ORG, "site:local")[0] == 0

    shown = run_json(capsys, "partner", "show", ORG)
    assert shown["contributes"] == ["station:electrolyte", "site:local"]
    assert shown["note"] == "the operator" and shown["mou"] == ""
    assert [p["org"] for p in run_json(capsys, "partner", "list")] == [ORG]
    code, out, _ = run(capsys, "partner", "list")
    assert code == 0 and "station:electrolyte" in out

    for argv, message in [
        (["add", "ghost"], "organization ghost does not exist"),
        (["add", ORG], f"org: {ORG} is a partner already"),
        (["add", "x", "--mou", "nope"], "organization x does not exist"),
        (["contribute", ORG, "station:nope"], "station nope does not exist"),
        (["contribute", ORG, "campaign:1"], "contribution: 'campaign:1' is not KIND:NAME"),
        (["show", "ghost"], "partner ghost does not exist"),
    ]:
        code, _, err = run(capsys, "partner", *argv)
        assert code == 2 and message in err, (argv, err)
