"""genesis agreement, in-process: templates, new, list, show, sign, terminate, bad input.

The command acts as the operator's local user; organization ``beta`` (owner ``ben``) signs
through the Python facade, as its own process would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_platform import Platform
from genesis_platform.governance import Principal
from genesis_platform.governance.agreements import KINDS
from tests.integration.cli import run, run_json

NAME = "local-beta"


@pytest.fixture
def beta(genesis_home: Path, tmp_path: Path) -> Iterator[Platform]:
    """Organization beta with its owner ben, and the operator's dataset ``spectra``."""
    data = tmp_path / "spectra.csv"
    data.write_text("x,y\n1,2\n")
    with Platform.open(genesis_home) as p:
        p.orgs.create("beta")
        p.orgs.add_member("beta", "ben", role="owner", vetting="vetted")
        p.datasets.add("spectra", [data])
    with Platform.open(genesis_home, principal=Principal("ben", "beta")) as ben:
        yield ben


def new(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str, str]:
    argv = ["agreement", "new", NAME, "--template", "data-use", "--party", "local"]
    return run(capsys, *argv, "--party", "beta", "--cover", "dataset:spectra", *options)


def test_templates(capsys: pytest.CaptureFixture[str]) -> None:
    found = run_json(capsys, "agreement", "templates")
    assert [t["kind"] for t in found] == list(KINDS)
    assert found[2]["terms"]["permitted_uses"] == ["research"]
    code, out, _ = run(capsys, "agreement", "templates")
    assert code == 0 and all(kind in out for kind in ("mou", "crada", "license"))


def test_new_sign_show_terminate(capsys: pytest.CaptureFixture[str], beta: Platform) -> None:
    code, out, err = new(capsys, "--use", "research", "--use", "government", "--days", "30")
    assert code == 0, err
    assert out.startswith(f"drew up agreement {NAME} (data-use) between local, beta: draft")

    [listed] = run_json(capsys, "agreement", "list")
    assert (listed["name"], listed["effective_state"]) == (NAME, "draft")
    assert listed["terms"]["permitted_uses"] == ["research", "government"]
    expires = dt.datetime.fromisoformat(listed["expires_at"])
    starts = dt.datetime.fromisoformat(listed["starts_at"])
    assert expires - starts == dt.timedelta(days=30)
    code, out, _ = run(capsys, "agreement", "list")
    assert code == 0 and NAME in out and "draft" in out

    code, out, err = run(capsys, "agreement", "sign", NAME)
    assert code == 0, err
    assert out.strip().endswith("it is waiting for beta")

    beta.agreements.sign(NAME)
    shown = run_json(capsys, "agreement", "show", NAME)
    assert shown["effective_state"] == "active"
    assert [p["signed_by"] for p in shown["parties"]][1] == "ben@beta"

    code, out, _ = run(capsys, "agreement", "show", NAME)
    assert code == 0
    assert out.startswith("# Data use agreement\n")
    assert "**State: active**" in out and "- beta: signed by ben@beta" in out
    assert "- Permitted uses: research, government" in out and "- dataset:spectra" in out

    code, _, err = run(capsys, "agreement", "sign", NAME)
    assert code == 2 and "signed agreement local-beta already" in err and "it is active" in err

    code, out, err = run(capsys, "agreement", "terminate", NAME, "--reason", "project ended")
    assert code == 0, err
    assert out.strip() == f"terminated agreement {NAME}: project ended"
    code, out, _ = run(capsys, "agreement", "show", NAME)
    assert "**State: terminated**" in out and "project ended" in out
    code, _, err = run(capsys, "agreement", "sign", NAME)
    assert code == 2 and "it cannot be signed" in err


def test_new_with_every_term(capsys: pytest.CaptureFixture[str], beta: Platform) -> None:
    code, _, err = new(
        capsys,
        "--title",
        "Spectra for Beta",
        "--starts",
        "2026-01-01",
        "--expires",
        "2090-12-31",
        "--ip-ownership",
        "licensee",
        "--attribution",
        "Cite us",
        "--redistribution",
        "--export-control",
        "--royalty-note",
        "none due",
    )
    assert code == 0, err
    shown = run_json(capsys, "agreement", "show", NAME)
    assert shown["title"] == "Spectra for Beta"
    assert shown["starts_at"] == "2026-01-01T00:00:00+00:00"
    assert shown["expires_at"] == "2090-12-31T00:00:00+00:00"
    assert shown["terms"] == {
        "permitted_uses": ["research"],
        "ip_ownership": "licensee",
        "attribution": "Cite us",
        "redistribution": True,
        "export_control": True,
        "royalty_note": "none due",
    }


BAD = [
    (["--template", "nda"], "--template: 'nda' is not a template"),
    (["--party", "zeta"], "--party: no organization named 'zeta'"),
    (["--cover", "dataset:nope"], "--cover: no dataset named 'nope'"),
    (["--use", "military"], "--use: 'military' is not a use"),
    (["--ip-ownership", "mine"], "--ip-ownership: 'mine' is not a kind of IP ownership"),
    (["--expires", "31/12/2090"], "--expires: '31/12/2090' is not a date"),
    (["--expires", "2001-01-01", "--starts", "2000-01-01"], "--expires: 2001-01-01 00:00 UTC is"),
    (["--starts", "2090-01-02", "--expires", "2090-01-01"], "--expires: 2090-01-01 00:00 UTC is"),
    (["--days", "0"], "--days: must be 1 or more, got 0"),
    (["--days", "3", "--expires", "2090-01-01"], "--days: is given with --expires"),
    (["--starts", "2000-01-01", "--days", "3"], "--days: 2000-01-04 00:00 UTC is in the past"),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_new_exits_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], beta: Platform, options: list[str], message: str
) -> None:
    argv = ["agreement", "new", NAME, "--party", "local", "--party", "beta"]
    if "--template" not in options:
        argv += ["--template", "data-use"]
    code, out, err = run(capsys, *argv, *options)
    assert code == 2, out
    assert err.startswith(f"error: {message}"), err
    assert "Traceback" not in err
    assert run_json(capsys, "agreement", "list") == []


def test_creator_must_be_a_party(capsys: pytest.CaptureFixture[str], beta: Platform) -> None:
    code, _, err = run(capsys, "agreement", "new", NAME, "--template", "mou", "--party", "beta")
    assert code == 2
    assert "--party: your organization, local, is not among the parties (beta)" in err
    assert "add it (--party local)" in err


def test_signing_as_a_non_party_exits_3(
    capsys: pytest.CaptureFixture[str], beta: Platform, genesis_home: Path
) -> None:
    with Platform.open(genesis_home) as p:
        p.orgs.create("gamma")
    beta.agreements.create("beta-gamma", "mou", ["beta", "gamma"])
    code, _, err = run(capsys, "agreement", "sign", "beta-gamma")
    assert code == 3
    assert "local is not a party to it (its parties are beta, gamma)" in err
    code, _, err = run(capsys, "agreement", "show", "nope")
    assert code == 2 and "agreement nope does not exist" in err
