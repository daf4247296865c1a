"""Organizations, members, projects and tokens: what works, and every bad input refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from genesis_platform import AccessDenied, ConfigError, InvalidInput, NotFound, Platform
from genesis_platform.catalog.tables import ApiTokenRow, MemberRow, OrgRow, utcnow
from genesis_platform.governance import Principal, Resource


@pytest.fixture
def orgs(platform: Platform) -> Platform:
    platform.orgs.create("acme", display_name="ACME Labs")
    platform.orgs.add_member("acme", "ada", role="owner", vetting="vetted")
    platform.orgs.add_member("acme", "amy")
    return platform


def counts(p: Platform) -> tuple[int, int]:
    with p._db.session(write=False) as s:
        return (
            s.scalar(select(func.count()).select_from(OrgRow)) or 0,
            s.scalar(select(func.count()).select_from(MemberRow)) or 0,
        )


def test_the_local_user_owns_the_operator_org(platform: Platform) -> None:
    local = platform.orgs.get("local")
    assert [(m.principal, m.role, m.vetting) for m in local.members] == [
        (str(platform.principal), "owner", "vetted")
    ]


def test_orgs_members_and_roles(orgs: Platform) -> None:
    acme = orgs.orgs.get("acme")
    assert acme.display_name == "ACME Labs"
    assert [(m.user, m.role, m.vetting) for m in acme.members] == [
        ("ada", "owner", "vetted"),
        ("amy", "member", "pending"),
    ]
    assert orgs.orgs.set_role("acme", "amy", "admin").role == "admin"
    assert orgs.orgs.vet("acme", "amy", "vetted").vetting == "vetted"
    orgs.orgs.remove_member("acme", "amy")
    assert [m.user for m in orgs.orgs.get("acme").members] == ["ada"]


def test_an_org_admin_adds_members_but_may_not_vet(orgs: Platform, genesis_home: Path) -> None:
    with Platform.open(principal=Principal("ada", "acme")) as ada:
        ada.orgs.add_member("acme", "avi", role="viewer")
        with pytest.raises(AccessDenied, match="administer org:\\*"):
            ada.orgs.vet("acme", "avi", "vetted")
        with pytest.raises(AccessDenied):
            ada.orgs.add_member("acme", "eve", vetting="vetted")
        with pytest.raises(AccessDenied):
            ada.orgs.create("mine")
    assert orgs.orgs.member("acme", "avi").vetting == "pending"


def test_a_plain_member_may_not_add_members(orgs: Platform) -> None:
    before = counts(orgs)
    with (
        Platform.open(principal=Principal("amy", "acme")) as amy,
        pytest.raises(AccessDenied, match="amy@acme may not administer org:acme"),
    ):
        amy.orgs.add_member("acme", "eve")
    assert counts(orgs) == before


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.orgs.create("Bad Name"), "name"),
        (lambda p: p.orgs.create("acme"), "name"),
        (lambda p: p.orgs.add_member("acme", "x", role="boss"), "role"),
        (lambda p: p.orgs.add_member("acme", "x", vetting="maybe"), "vetting"),
        (lambda p: p.orgs.add_member("acme", "ada"), "user"),
        (lambda p: p.orgs.vet("acme", "ada", "ok"), "status"),
        (lambda p: p.projects.add_member("nope", "ada"), "member"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(orgs: Platform, call, field) -> None:  # type: ignore[no-untyped-def]
    before = counts(orgs)
    with pytest.raises(InvalidInput) as caught:
        call(orgs)
    assert caught.value.field == field
    assert counts(orgs) == before


def test_unknown_org_or_member_is_not_found(orgs: Platform) -> None:
    with pytest.raises(NotFound, match="organization nope"):
        orgs.orgs.add_member("nope", "x")
    with pytest.raises(NotFound, match="member eve@acme"):
        orgs.orgs.set_role("acme", "eve", "admin")


def test_an_unknown_principal_is_told_how_to_join(orgs: Platform) -> None:
    with (
        Platform.open(principal=Principal("eve", "acme")) as eve,
        pytest.raises(AccessDenied, match="genesis org add-member acme eve"),
    ):
        eve.datasets.list()


def test_projects_span_organizations(orgs: Platform) -> None:
    orgs.orgs.create("beta")
    orgs.orgs.add_member("beta", "bob")
    info = orgs.projects.create("fusion", org="acme", description="d")
    assert info.org == "acme"
    orgs.projects.add_member("fusion", "bob@beta")
    orgs.projects.add_member("fusion", "amy@acme")
    assert set(orgs.projects.get("fusion").members) >= {"bob@beta", "amy@acme"}
    assert orgs.orgs.member("beta", "bob").projects == ("fusion",)
    with pytest.raises(NotFound, match="genesis org add-member beta zed"):
        orgs.projects.add_member("fusion", "zed@beta")
    orgs.projects.remove_member("fusion", "bob@beta")
    assert "bob@beta" not in orgs.projects.get("fusion").members


def test_a_token_stands_for_its_member_with_its_scopes(orgs: Platform) -> None:
    issued = orgs.tokens.create(member="amy@acme", scopes=["read"], days=1, note="ci")
    assert issued.secret.startswith(f"gen_{issued.info.token_id}_")
    with orgs._db.session(write=False) as s:
        stored = s.scalar(select(ApiTokenRow.secret_hash))
    assert stored is not None and issued.secret not in stored  # only the hash is kept
    with Platform.open(token=issued.secret) as amy:
        assert str(amy.principal) == "amy@acme"
        amy.datasets.list()
        with pytest.raises(AccessDenied, match="scopes \\(read\\) do not include write"):
            amy.models.register("m", b"{}", framework="json")
    assert [t.state for t in orgs.tokens.list("amy@acme")] == ["active"]


def test_revoked_expired_and_unknown_tokens_are_refused(orgs: Platform) -> None:
    revoked = orgs.tokens.create(member="amy@acme")
    orgs.tokens.revoke(revoked.info.token_id)
    with pytest.raises(AccessDenied, match="was revoked"):
        Platform.open(token=revoked.secret)
    expired = orgs.tokens.create(member="amy@acme")
    with orgs._db.session() as s:
        s.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.token_id == expired.info.token_id)
            .values(expires_at=utcnow())
        )
    with pytest.raises(AccessDenied, match="expired on"):
        Platform.open(token=expired.secret)
    forged = expired.secret[:-4] + "AAAA"
    with pytest.raises(AccessDenied, match="unknown API token"):
        Platform.open(token=forged)
    with pytest.raises(AccessDenied, match="start with 'gen_'"):
        Platform.open(token="hello")
    with pytest.raises(InvalidInput, match="scopes"):
        orgs.tokens.create(scopes=["fly"])
    with pytest.raises(InvalidInput, match="days"):
        orgs.tokens.create(days=0)


def test_a_member_may_not_issue_tokens_for_others(orgs: Platform) -> None:
    with Platform.open(principal=Principal("amy", "acme")) as amy:
        mine = amy.tokens.create(days=1)
        assert mine.info.principal == "amy@acme"
        with pytest.raises(AccessDenied):
            amy.tokens.create(member="ada@acme")


def test_a_policy_file_with_a_syntax_error_is_refused(genesis_home: Path) -> None:
    (genesis_home / "policies").mkdir(parents=True)
    bad = genesis_home / "policies" / "site.cedar"
    bad.write_text("permit (principal, action, resource) when { ;")
    with pytest.raises(ConfigError, match=r"site\.cedar does not parse"):
        Platform.open()


def test_a_policy_that_breaks_the_schema_is_refused(genesis_home: Path) -> None:
    (genesis_home / "policies").mkdir(parents=True)
    bad = genesis_home / "policies" / "site.cedar"
    bad.write_text("permit (principal, action, resource) when { principal.shoe_size > 3 };")
    with pytest.raises(ConfigError, match="does not match Genesis's Cedar schema"):
        Platform.open()


def test_an_operator_policy_adds_to_the_defaults(orgs: Platform, genesis_home: Path) -> None:
    (genesis_home / "policies").mkdir()
    (genesis_home / "policies" / "viewers.cedar").write_text(
        '@id("acme-viewers-see-local")\n'
        'permit (principal, action == Genesis::Action::"read", resource is Genesis::Asset)\n'
        'when { resource.owner == Genesis::Org::"local" &&\n'
        '       principal.org == Genesis::Org::"acme" };\n'
    )
    (genesis_home / "a.csv").write_text("x\n1\n")
    orgs.datasets.add("d", [genesis_home / "a.csv"])
    with Platform.open(principal=Principal("amy", "acme")) as amy:
        assert [d.name for d in amy.datasets.list()] == ["d"]
        decision = amy._ctx.policy.decide(amy.principal, "read", Resource("dataset", "d"))
        assert decision.policies == ("acme-viewers-see-local",)
