"""Ways around the policy that a review found, each closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from genesis_platform import AccessDenied, InvalidInput, Platform
from genesis_platform.governance import Principal, Resource
from genesis_platform.governance.state import _CHANGE_LOCK, record_change
from genesis_platform.labs.protocols import Operation


@pytest.fixture
def orgs(platform: Platform) -> Platform:
    for org in ("acme", "beta"):
        platform.orgs.create(org)
    platform.orgs.add_member("acme", "ada", role="admin", vetting="vetted")
    platform.orgs.add_member("acme", "amy", vetting="vetted")
    platform.orgs.add_member("beta", "bea", role="admin", vetting="vetted")
    platform.orgs.add_member("beta", "bob", vetting="vetted")
    return platform


def as_(who: str) -> Platform:
    user, _, org = who.partition("@")
    return Platform.open(principal=Principal(user, org))


def test_a_narrow_token_cannot_issue_a_wider_one(orgs: Platform) -> None:
    narrow = orgs.tokens.create(member="amy@acme", scopes=["read", "write"])
    with Platform.open(token=narrow.secret) as amy:
        with pytest.raises(InvalidInput, match="cannot issue one for run"):
            amy.tokens.create(scopes=["read", "run"])
        assert amy.tokens.create(scopes=["read"]).info.scopes == ("read",)


def test_an_org_admin_cannot_issue_tokens_for_colleagues(orgs: Platform) -> None:
    with as_("ada@acme") as ada, pytest.raises(AccessDenied, match="administer org:\\*"):
        ada.tokens.create(member="amy@acme")


def test_removing_a_member_revokes_their_tokens(orgs: Platform) -> None:
    issued = orgs.tokens.create(member="amy@acme")
    with as_("ada@acme") as ada:
        ada.orgs.remove_member("acme", "amy")
    with pytest.raises(AccessDenied, match="was revoked"):
        Platform.open(token=issued.secret)


def test_an_org_cannot_undo_a_revocation_by_removing_and_readding(orgs: Platform) -> None:
    orgs.orgs.vet("acme", "amy", "revoked")
    with as_("ada@acme") as ada, pytest.raises(AccessDenied, match="administer org:\\*"):
        ada.orgs.remove_member("acme", "amy")
    assert orgs.orgs.member("acme", "amy").vetting == "revoked"


def test_a_submitter_cannot_review_their_own_submission(orgs: Platform, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    with as_("bea@beta") as bea:
        bea.datasets.add("findings", [tmp_path / "a.csv"])
        with pytest.raises(InvalidInput, match="reviewer: bea@beta is not a member of acme"):
            bea.assets.submit("dataset", "findings", "acme", reviewer="bea@beta")
        with pytest.raises(InvalidInput, match="nobody@acme is not a member"):
            bea.assets.submit("dataset", "findings", "acme", reviewer="nobody@acme")
        info = bea.assets.submit("dataset", "findings", "acme", reviewer="amy@acme")
        assert (info.owner, info.review) == ("acme", "pending")
        with pytest.raises(InvalidInput, match="not reviewed by its submitter"):
            bea.assets.review("dataset", "findings", "approved")
        assert bea.datasets.get("findings").version == 1  # the submitter still reads it
    with as_("bob@beta") as bob, pytest.raises(AccessDenied, match="forbid-unreviewed"):
        bob.datasets.get("findings")
    with as_("amy@acme") as amy:
        assert amy.assets.review("dataset", "findings", "approved").review == "approved"


def test_following_a_task_by_name_is_authorized_as_that_task(orgs: Platform) -> None:
    with as_("bea@beta") as bea:
        bea.sites.add("beta-box", "local", {})
        bea.tasks.submit(
            "beta-box", function="genesis_platform.testing.functions:noop", name="nightly"
        ).result(timeout=60)
    with as_("ada@acme") as ada, pytest.raises(AccessDenied, match="may not read task:"):
        ada.tasks.follow("nightly")
    with as_("bob@beta") as bob:
        future = bob.tasks.follow("nightly")
        assert future is not None and future.result(timeout=10) is not None


def test_other_orgs_operations_and_usage_stay_hidden(orgs: Platform) -> None:
    with as_("bea@beta") as bea:
        bea.stations.add("bcell", "simulated", {"emulator": "electrolyte"})
        params = {"salt_molality": 1.0, "temperature_c": 25, "solvent": "PC"}
        bea.stations.handle("bcell", project="secret-fusion").run(Operation("op-1", params)).result(
            timeout=30
        )
        assert [o.project for o in bea.stations.operations()] == ["secret-fusion"]
    with as_("ada@acme") as ada:
        assert ada.stations.operations() == []
        assert ada.stations.usage() == {}
        with pytest.raises(AccessDenied):
            ada.stations.operations(station="bcell")


def test_built_in_stations_are_the_operators_and_public(orgs: Platform) -> None:
    with as_("bob@beta") as bob:
        assert bob.stations.get("electrolyte").builtin
        decide = bob._ctx.policy.decide
        assert decide(bob.principal, "run", Resource("station", "electrolyte")).allowed
        assert not decide(bob.principal, "administer", Resource("station", "electrolyte")).allowed


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_change_ids_commit_in_order_on_postgresql(catalog_url: str, any_platform: Platform) -> None:
    """SQLite has one writer at a time; PostgreSQL needs the change log's lock for that."""
    with any_platform._db.session() as s:
        record_change(s, "org", "acme")  # holds the change log's lock until it commits
        other = create_engine(catalog_url)
        try:
            with other.connect() as c, pytest.raises(OperationalError, match="lock timeout"):
                c.execute(text("SET lock_timeout = '200ms'"))
                c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHANGE_LOCK})
        finally:
            other.dispose()


def test_work_counts_only_for_projects_one_belongs_to(orgs: Platform) -> None:
    orgs.projects.create("fusion", org="acme")
    with as_("bea@beta") as bea:
        bea.sites.add("beta-box", "local", {})
        noop = "genesis_platform.testing.functions:noop"
        with pytest.raises(AccessDenied, match="not a member of project fusion"):
            bea.tasks.submit("beta-box", function=noop, project="fusion")
        with pytest.raises(AccessDenied, match="not a member of project fusion"):
            bea.stations.handle("electrolyte", project="fusion")
        orgs.projects.add_member("fusion", "bea@beta")
        assert bea._ctx.governance is not None
        bea._ctx.governance.refresh(now=True)
        bea.tasks.submit("beta-box", function=noop, project="fusion").result(timeout=60)
        bea.tasks.submit("beta-box", function=noop, project="a-free-label").result(timeout=60)
