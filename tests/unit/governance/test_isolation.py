"""Property: no principal sees an asset the policy denies, through any facade read or list.

Random organizations, members (roles, vetting), assets (owner, access level,
classification, export control) and agreements (parties, coverage, uses, state, expiry);
for every member, every list result and every get is compared with an oracle written
from the issue's rules in plain Python, independently of the Cedar policies. Runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_platform import AccessDenied, Platform
from genesis_platform.catalog.tables import utcnow
from genesis_platform.governance import Principal
from tests.unit.governance.governed import agree, set_asset

ROLES = ("owner", "admin", "member", "viewer")
VETTING = ("pending", "vetted", "revoked")
KINDS = ("dataset", "model", "site")
_examples = itertools.count()


@dataclass(frozen=True)
class Member:
    org: str
    user: str
    role: str
    vetting: str


@dataclass(frozen=True)
class Asset:
    kind: str
    name: str
    owner: str
    access: str
    classification: str
    export_controlled: bool


@dataclass(frozen=True)
class Agreement:
    parties: tuple[str, str]
    covers: tuple[str, ...]
    uses: tuple[str, ...]
    state: str
    expired: bool


@dataclass(frozen=True)
class World:
    orgs: tuple[str, ...]
    cleared: frozenset[str]
    members: tuple[Member, ...]
    assets: tuple[Asset, ...]
    agreements: tuple[Agreement, ...]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    orgs = ("local", "o1", "o2", "o3")[: draw(st.integers(2, 4))]
    cleared = frozenset(draw(st.sets(st.sampled_from(orgs))))
    members = tuple(
        Member(org, f"u{i}", draw(st.sampled_from(ROLES)), draw(st.sampled_from(VETTING)))
        for org in orgs
        for i in range(draw(st.integers(1, 2)))
    )
    assets = tuple(
        Asset(
            draw(st.sampled_from(KINDS)),
            f"a{i}",
            draw(st.sampled_from(orgs)),
            draw(st.sampled_from(("public", "gated", "private"))),
            draw(st.sampled_from(("public", "controlled"))),
            draw(st.booleans()),
        )
        for i in range(draw(st.integers(1, 5)))
    )
    keys = [f"{a.kind}:{a.name}" for a in assets] + [f"owner:{o}" for o in orgs]
    agreements = tuple(
        Agreement(
            tuple(draw(st.lists(st.sampled_from(orgs), min_size=2, max_size=2, unique=True))),  # type: ignore[arg-type]
            tuple(draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))),
            tuple(draw(st.sets(st.sampled_from(("research", "commercial")), min_size=1))),
            draw(st.sampled_from(("active", "active", "draft", "terminated"))),
            draw(st.booleans()),
        )
        for _ in range(draw(st.integers(0, 2)))
    )
    return World(orgs, cleared, members, assets, agreements)


def may_read(w: World, m: Member, a: Asset) -> bool:
    """The issue's read rules, written out without Cedar."""
    if m.vetting == "revoked":
        return False
    if a.classification == "controlled" and m.vetting != "vetted":
        return False
    if a.export_controlled and m.org != a.owner and m.org not in w.cleared:
        return False
    if m.org == a.owner or a.access == "public":
        return True
    if m.org == "local" and m.role in ("owner", "admin"):  # the operator's admins
        return True
    key = f"{a.kind}:{a.name}"
    return (
        a.access == "gated"
        and m.vetting == "vetted"
        and any(
            g.state == "active"
            and not g.expired
            and {m.org, a.owner} <= set(g.parties)
            and (key in g.covers or f"owner:{a.owner}" in g.covers)
            and "research" in g.uses
            for g in w.agreements
        )
    )


def build(p: Platform, w: World, prefix: str, tmp_path: Path) -> dict[str, Asset]:
    for org in w.orgs:
        if org != "local":
            p.orgs.create(f"{prefix}{org}")
        # `local` is shared by every example: set its clearance either way
        p.orgs.clear_for_export(_org(prefix, org), org in w.cleared)
    for m in w.members:
        p.orgs.add_member(_org(prefix, m.org), f"{prefix}{m.user}", role=m.role, vetting=m.vetting)
    (tmp_path / "a.csv").write_text("x\n1\n")
    named: dict[str, Asset] = {}
    for a in w.assets:
        name = f"{prefix}{a.name}"
        if a.kind == "dataset":
            p.datasets.add(name, [tmp_path / "a.csv"])
        elif a.kind == "model":
            p.models.register(name, b"{}", framework="json")
        else:
            p.sites.add(name, "ray", {})
        set_asset(
            p,
            a.kind,
            name,
            owner_org=_org(prefix, a.owner),
            access=a.access,
            classification=a.classification,
            export_controlled=a.export_controlled,
        )
        named[name] = a
    now = utcnow()
    for i, g in enumerate(w.agreements):
        covers = [
            f"owner:{_org(prefix, c[6:])}" if c.startswith("owner:") else _prefixed(prefix, c)
            for c in g.covers
        ]
        agree(
            p,
            f"{prefix}g{i}",
            [_org(prefix, o) for o in g.parties],
            covers,
            uses=g.uses,
            state=g.state,
            expires=now - dt.timedelta(seconds=1) if g.expired else None,
            starts=now - dt.timedelta(days=2),
        )
    return named


def _org(prefix: str, org: str) -> str:
    return org if org == "local" else f"{prefix}{org}"


def _prefixed(prefix: str, key: str) -> str:
    kind, _, name = key.partition(":")
    return f"{kind}:{prefix}{name}"


def listed(p: Platform, kind: str, prefix: str) -> set[str]:
    items = {"dataset": p.datasets.list, "model": p.models.list, "site": p.sites.list}[kind]()
    return {i.name for i in items if i.name.startswith(prefix)}


def readable(p: Platform, kind: str, name: str) -> bool:
    get = {"dataset": p.datasets.get, "model": p.models.get, "site": p.sites.get}[kind]
    try:
        get(name)
    except AccessDenied:
        return False
    return True


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=worlds())
def test_no_principal_sees_what_policy_denies(
    any_platform: Platform, catalog_env: str, tmp_path: Path, w: World
) -> None:
    prefix = f"x{next(_examples)}-"
    named = build(any_platform, w, prefix, tmp_path)
    for m in w.members:
        who = Principal(f"{prefix}{m.user}", _org(prefix, m.org))
        with Platform.open(principal=who) as p:
            for kind in KINDS:
                if m.vetting == "revoked":  # a revoked member may not even list
                    with pytest.raises(AccessDenied, match="forbid-revoked-members"):
                        listed(p, kind, prefix)
                expected = {n for n, a in named.items() if a.kind == kind and may_read(w, m, a)}
                if m.vetting != "revoked":
                    assert listed(p, kind, prefix) == expected, (m, kind)
                for name in (n for n, a in named.items() if a.kind == kind):
                    assert readable(p, kind, name) == (name in expected), (m, name)


def test_the_oracle_is_not_vacuous() -> None:
    """A world where one member reads through an agreement and another does not."""
    w = World(
        ("local", "o1", "o2"),
        frozenset(),
        (Member("o1", "u0", "member", "vetted"), Member("o2", "u0", "member", "pending")),
        (Asset("dataset", "a0", "o2", "gated", "public", False),),
        (Agreement(("o1", "o2"), ("dataset:a0",), ("research",), "active", False),),
    )
    assert may_read(w, w.members[0], w.assets[0])
    assert may_read(w, w.members[1], w.assets[0])  # the owner's own member
    outsider = Member("o3", "u0", "admin", "vetted")
    assert not may_read(w, outsider, w.assets[0])


pytestmark = pytest.mark.timeout(600)
