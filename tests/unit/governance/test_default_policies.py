"""Every default policy allows what it should and denies its neighbours.

One world: the operator org ``local`` (the test's user owns it; ``olga`` is a plain member),
``acme`` (ada owner, alan admin, amy member, apu unvetted member, avi viewer) and ``beta``
(bea admin, bob member, ben unvetted member), and datasets owned by acme with every access
level and flag.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from genesis_platform import Platform
from genesis_platform.catalog.tables import utcnow
from tests.unit.governance.governed import agree, decide, set_asset

MEMBERS = {
    "acme": [
        ("ada", "owner", "vetted"),
        ("alan", "admin", "vetted"),
        ("amy", "member", "vetted"),
        ("apu", "member", "pending"),
        ("avi", "viewer", "vetted"),
    ],
    "beta": [("bea", "admin", "vetted"), ("bob", "member", "vetted"), ("ben", "member", "pending")],
    "local": [("olga", "member", "vetted")],
}
DATASETS = {
    "private": {},
    "public": {"access": "public"},
    "gated": {"access": "gated"},
    "controlled": {"classification": "controlled"},
    "export": {"access": "public", "export_controlled": True},
}


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> Platform:
    p = platform
    p.orgs.create("acme")
    p.orgs.create("beta")
    for org, members in MEMBERS.items():
        for user, role, vetting in members:
            p.orgs.add_member(org, user, role=role, vetting=vetting)
    (tmp_path / "a.csv").write_text("x\n1\n")
    for name, values in DATASETS.items():
        p.datasets.add(name, [tmp_path / "a.csv"])
        set_asset(p, "dataset", name, owner_org="acme", **values)
    return p


def allowed_by(world: Platform, who: str, action: str, resource: str, **extra: object) -> set[str]:
    d = decide(world, who, action, resource, **extra)  # type: ignore[arg-type]
    assert d.allowed, f"{who} {action} {resource} denied: {d.policies} {d.reason}"
    return set(d.policies)


def denied_by(world: Platform, who: str, action: str, resource: str, **extra: object) -> set[str]:
    d = decide(world, who, action, resource, **extra)  # type: ignore[arg-type]
    assert not d.allowed, f"{who} {action} {resource} allowed by {d.policies}"
    return set(d.policies)


def test_owner_members_read(world: Platform) -> None:
    assert "owner-members-read" in allowed_by(world, "amy@acme", "read", "dataset:private")
    assert denied_by(world, "bob@beta", "read", "dataset:private") == {"default-deny"}


def test_owner_members_write_run(world: Platform) -> None:
    for action in ("write", "run"):
        assert "owner-members-write-run" in allowed_by(world, "amy@acme", action, "dataset:private")
        assert denied_by(world, "bob@beta", action, "dataset:private") == {"default-deny"}


def test_owner_admins_administer_share_export(world: Platform) -> None:
    for action in ("administer", "share", "export"):
        assert "owner-admins-administer" in allowed_by(
            world, "alan@acme", action, "dataset:private"
        )
        assert denied_by(world, "amy@acme", action, "dataset:private") == {"default-deny"}
        assert denied_by(world, "bea@beta", action, "dataset:private") == {"default-deny"}


def test_operator_admins(world: Platform) -> None:
    root = str(world.principal)
    assert "operator-admins" in allowed_by(world, root, "administer", "dataset:private")
    assert "operator-admins" in allowed_by(world, root, "administer", "org:*")
    assert denied_by(world, "olga@local", "administer", "dataset:private") == {"default-deny"}
    assert denied_by(world, "ada@acme", "administer", "org:*") == {"default-deny"}


def test_collections_list(world: Platform) -> None:
    assert allowed_by(world, "bob@beta", "read", "dataset:*") == {"collections-list"}
    assert denied_by(world, "bob@beta", "write", "dataset:*") == {"default-deny"}


def test_public_read(world: Platform) -> None:
    assert allowed_by(world, "bob@beta", "read", "dataset:public") == {"public-read"}
    assert denied_by(world, "bob@beta", "write", "dataset:public") == {"default-deny"}
    assert denied_by(world, "bob@beta", "read", "dataset:gated") == {"default-deny"}


def test_project_members_read(world: Platform) -> None:
    world.projects.create("fusion", org="acme")
    world.projects.add_member("fusion", "bob@beta")
    set_asset(world, "dataset", "private", project="fusion")
    assert "project-members-read" in allowed_by(world, "bob@beta", "read", "dataset:private")
    assert denied_by(world, "bob@beta", "write", "dataset:private") == {"default-deny"}
    assert denied_by(world, "bea@beta", "read", "dataset:private") == {"default-deny"}


def test_shared_orgs_read_and_admins_write(world: Platform) -> None:
    world.projects.create("fusion", org="acme")
    world.projects.add_member("fusion", "bob@beta")
    assert "shared-orgs-read" in allowed_by(world, "ben@beta", "read", "project:fusion")
    assert "shared-org-admins-write" in allowed_by(world, "bea@beta", "write", "project:fusion")
    assert denied_by(world, "bob@beta", "write", "project:fusion") == {"default-deny"}
    world.orgs.create("gamma")
    world.orgs.add_member("gamma", "gil", role="admin", vetting="vetted")
    assert denied_by(world, "gil@gamma", "read", "project:fusion") == {"default-deny"}


def test_agreement_read(world: Platform) -> None:
    agree(world, "du", ["acme", "beta"], ["dataset:gated"])
    assert allowed_by(world, "bob@beta", "read", "dataset:gated") == {"agreement-read"}
    # neighbours: unvetted member, other actions, an asset it does not cover, another use
    assert denied_by(world, "ben@beta", "read", "dataset:gated") == {"default-deny"}
    assert denied_by(world, "bob@beta", "write", "dataset:gated") == {"default-deny"}
    assert denied_by(world, "bob@beta", "read", "dataset:private") == {"default-deny"}
    assert denied_by(world, "bob@beta", "read", "dataset:gated", purpose="commercial") == {
        "default-deny"
    }


@pytest.mark.parametrize(
    "variant",
    ["unsigned", "not-yet-started", "expired", "terminated", "private-asset", "owner-wide"],
)
def test_agreement_read_needs_an_agreement_in_force(world: Platform, variant: str) -> None:
    now = utcnow()
    kwargs: dict[str, object] = {}
    covers = ["dataset:gated"]
    resource = "dataset:gated"
    if variant == "unsigned":
        kwargs = {"signed": ["acme"], "state": "signed"}
    elif variant == "not-yet-started":
        kwargs = {"starts": now + dt.timedelta(days=1)}
    elif variant == "expired":
        kwargs = {"starts": now - dt.timedelta(days=9), "expires": now - dt.timedelta(seconds=1)}
    elif variant == "terminated":
        kwargs = {"state": "terminated"}
    elif variant == "private-asset":
        covers, resource = ["dataset:private"], "dataset:private"
    agree(
        world,
        "du",
        ["acme", "beta"],
        ["owner:acme"] if variant == "owner-wide" else covers,
        **kwargs,
    )  # type: ignore[arg-type]
    if variant == "owner-wide":  # every gated asset of the owner is covered
        assert allowed_by(world, "bob@beta", "read", "dataset:gated") == {"agreement-read"}
    else:
        assert denied_by(world, "bob@beta", "read", resource) == {"default-deny"}


def test_agreement_run_on_a_gated_station_or_site(world: Platform) -> None:
    world.sites.add("cluster", "ray", {})
    set_asset(world, "site", "cluster", owner_org="acme", access="gated")
    agree(world, "share", ["acme", "beta"], ["site:cluster"])
    assert allowed_by(world, "bob@beta", "run", "site:cluster") == {"agreement-run"}
    assert denied_by(world, "bob@beta", "run", "dataset:gated") == {"default-deny"}
    assert denied_by(world, "bob@beta", "administer", "site:cluster") == {"default-deny"}


def test_agreement_export_needs_redistribution(world: Platform) -> None:
    agree(world, "du", ["acme", "beta"], ["dataset:gated"])
    assert denied_by(world, "bob@beta", "export", "dataset:gated") == {"default-deny"}
    agree(world, "du2", ["acme", "beta"], ["dataset:gated"], redistribution=True)
    assert allowed_by(world, "bob@beta", "export", "dataset:gated") == {"agreement-export"}


def test_forbid_revoked_members(world: Platform) -> None:
    world.orgs.vet("acme", "amy", "revoked")
    assert denied_by(world, "amy@acme", "read", "dataset:private") == {"forbid-revoked-members"}
    assert denied_by(world, "amy@acme", "read", "dataset:public") == {"forbid-revoked-members"}
    assert "owner-members-read" in allowed_by(world, "alan@acme", "read", "dataset:private")


def test_forbid_unvetted_controlled(world: Platform) -> None:
    assert denied_by(world, "apu@acme", "read", "dataset:controlled") == {
        "forbid-unvetted-controlled"
    }
    assert "owner-members-read" in allowed_by(world, "amy@acme", "read", "dataset:controlled")
    assert "owner-members-read" in allowed_by(world, "apu@acme", "read", "dataset:private")


def test_forbid_export_controlled_uncleared(world: Platform) -> None:
    assert denied_by(world, "bob@beta", "read", "dataset:export") == {
        "forbid-export-controlled-uncleared"
    }
    assert "owner-members-read" in allowed_by(world, "amy@acme", "read", "dataset:export")
    world.orgs.clear_for_export("beta")
    assert allowed_by(world, "bob@beta", "read", "dataset:export") == {"public-read"}


def test_forbid_unreviewed_and_review_parties(world: Platform) -> None:
    set_asset(
        world, "dataset", "public", review="pending", submitted_by="bob@beta", reviewer="amy@acme"
    )
    assert "review-parties-read" in allowed_by(world, "bob@beta", "read", "dataset:public")
    assert "owner-members-read" in allowed_by(world, "amy@acme", "read", "dataset:public")
    assert "owner-members-read" in allowed_by(world, "ada@acme", "read", "dataset:public")
    assert denied_by(world, "avi@acme", "read", "dataset:public") == {"forbid-unreviewed"}
    assert denied_by(world, "bea@beta", "read", "dataset:public") == {"forbid-unreviewed"}
    assert "reviewer-decides" in allowed_by(world, "amy@acme", "administer", "dataset:public")
    assert denied_by(world, "bob@beta", "administer", "dataset:public") == {"default-deny"}


def test_forbid_viewers_changes(world: Platform) -> None:
    assert "owner-members-read" in allowed_by(world, "avi@acme", "read", "dataset:private")
    assert denied_by(world, "avi@acme", "write", "dataset:private") == {"forbid-viewers-changes"}


def test_unknown_principal_and_token_scope(world: Platform) -> None:
    assert denied_by(world, "eve@beta", "read", "dataset:public") == {"unknown-principal"}
    assert denied_by(world, "bob@nowhere", "read", "dataset:public") == {"unknown-principal"}


def test_public_run(world: Platform) -> None:
    world.sites.add("open-cluster", "ray", {})
    set_asset(world, "site", "open-cluster", owner_org="acme", access="public")
    assert allowed_by(world, "bob@beta", "run", "site:open-cluster") == {"public-run"}
    assert denied_by(world, "bob@beta", "administer", "site:open-cluster") == {"default-deny"}
    assert denied_by(world, "bob@beta", "run", "dataset:public") == {"default-deny"}


def test_forbid_export_controlled_agreement_uncleared(world: Platform) -> None:
    agree(world, "du", ["acme", "beta"], ["dataset:gated"], export_control=True)
    assert denied_by(world, "bob@beta", "read", "dataset:gated") == {
        "forbid-export-controlled-agreement-uncleared"
    }
    assert "owner-members-read" in allowed_by(world, "amy@acme", "read", "dataset:gated")
    world.orgs.clear_for_export("beta")
    assert allowed_by(world, "bob@beta", "read", "dataset:gated") == {"agreement-read"}


def test_agreements_belong_to_their_parties_not_to_the_operator(world: Platform) -> None:
    agree(world, "du", ["acme", "beta"], ["dataset:gated"])
    assert "shared-orgs-read" in allowed_by(world, "ben@beta", "read", "agreement:du")
    assert "shared-org-admins-write" in allowed_by(world, "bea@beta", "write", "agreement:du")
    assert denied_by(world, "bob@beta", "write", "agreement:du") == {"default-deny"}
    assert denied_by(world, "olga@local", "read", "agreement:du") == {"default-deny"}
    assert "operator-admins" in allowed_by(world, str(world.principal), "read", "agreement:du")
