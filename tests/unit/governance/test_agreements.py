"""Agreements: templates, lifecycle, bad input, rendering, and the decisions they drive.

The world: the operator (``user@local``) registers organizations ``alpha``, ``beta`` and
``gamma``; ``alice`` owns alpha, ``ben`` owns beta, ``bob`` is a member of beta and ``carl``
of gamma, all vetted. Alice creates alpha's datasets ``spectra`` and ``other``, both gated.
Each principal has a platform of its own on one catalog, as separate processes would.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from genesis_platform import AccessDenied, InvalidInput, NotFound, Platform
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AuditRecord,
    GovernanceChange,
    utcnow,
)
from genesis_platform.governance import Principal
from genesis_platform.governance.agreements import (
    KINDS,
    TERM_NAMES,
    USES,
    AgreementTerms,
    agreement_template,
    agreement_templates,
    render_agreement,
)

NAME = "alpha-beta-spectra"


@dataclass
class World:
    home: Path
    operator: Platform
    opened: list[Platform] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opened.append(self.operator)
        self.alice = self.as_(Principal("alice", "alpha"))
        self.ben = self.as_(Principal("ben", "beta"))
        self.bob = self.as_(Principal("bob", "beta"))
        self.carl = self.as_(Principal("carl", "gamma"))

    def as_(self, principal: Principal) -> Platform:
        """A platform of one more principal, closed with the world."""
        p = Platform.open(self.home, principal=principal)
        self.opened.append(p)
        return p

    def sync(self) -> None:
        """Make every platform see the others' changes now (not within poll_s)."""
        for p in self.opened:
            assert p._ctx.governance is not None
            p._ctx.governance.refresh(now=True)

    def close(self) -> None:
        for p in self.opened[1:]:  # the operator's is the fixture's
            p.close()


@pytest.fixture
def world(any_platform: Platform, genesis_home: Path, tmp_path: Path) -> Iterator[World]:
    op = any_platform
    for org in ("alpha", "beta", "gamma"):
        op.orgs.create(org)
    for org, user, role in [
        ("alpha", "alice", "owner"),
        ("beta", "ben", "owner"),
        ("beta", "bob", "member"),
        ("gamma", "carl", "owner"),
    ]:
        op.orgs.add_member(org, user, role=role, vetting="vetted")
    w = World(genesis_home, op)
    data = tmp_path / "spectra.csv"
    data.write_text("x,y\n1,2\n")
    for name in ("spectra", "other"):
        w.alice.datasets.add(name, [data])
        w.alice.assets.set("dataset", name, access="gated")
    w.carl.datasets.add("gamma-data", [data])
    w.sync()
    yield w
    w.close()


def create(p: Platform, name: str = NAME, **kwargs: Any) -> Any:
    kwargs.setdefault("covers", ["dataset:spectra"])
    parties = kwargs.pop("parties", ["alpha", "beta"])
    return p.agreements.create(name, kwargs.pop("kind", "data-use"), parties, **kwargs)


def activate(w: World, name: str = NAME) -> None:
    w.alice.agreements.sign(name)
    w.ben.agreements.sign(name)
    w.sync()


def expire(w: World, name: str = NAME) -> None:
    """Move the agreement's dates into the past, as time would (with its change record)."""
    now = utcnow()
    with w.operator._db.session() as s:
        s.execute(
            update(AgreementRow)
            .where(AgreementRow.name == name)
            .values(starts_at=now - dt.timedelta(days=30), expires_at=now - dt.timedelta(days=1))
        )
        s.add(GovernanceChange(kind="agreement", key=name))
    w.sync()


def counts(p: Platform) -> tuple[int, ...]:
    """Rows of agreements, parties, signatures, their change records, allowed changes."""
    with p._db.session(write=False) as s:
        return (
            s.scalar(select(func.count()).select_from(AgreementRow)) or 0,
            s.scalar(select(func.count()).select_from(AgreementPartyRow)) or 0,
            s.scalar(
                select(func.count())
                .select_from(AgreementPartyRow)
                .where(AgreementPartyRow.signed_at.is_not(None))
            )
            or 0,
            s.scalar(
                select(func.count())
                .select_from(GovernanceChange)
                .where(GovernanceChange.kind == "agreement")
            )
            or 0,
            s.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(
                    AuditRecord.resource_kind == "agreement",
                    AuditRecord.action == "write",
                    AuditRecord.decision == "allow",
                )
            )
            or 0,
        )


def can_read(p: Platform, dataset: str = "spectra") -> bool:
    try:
        p.datasets.get(dataset)
    except AccessDenied:
        return False
    return True


# ---- templates -------------------------------------------------------------------------


def test_one_template_per_kind_ships_with_valid_terms() -> None:
    found = agreement_templates()
    assert [t.kind for t in found] == list(KINDS)
    for t in found:
        assert t.title and t.description and t.duration_days > 0
        assert set(t.terms.to_dict()) == set(TERM_NAMES)
        assert t.terms.permitted_uses and set(t.terms.permitted_uses) <= set(USES)
    assert agreement_template("crada").terms.ip_ownership == "joint"
    assert "commercial" in agreement_template("license").terms.permitted_uses


def test_unknown_template_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"^template: 'nda' is not one of mou, crada"):
        agreement_template("nda")


def test_the_template_fills_what_is_not_given(world: World) -> None:
    before = utcnow()
    info = create(world.alice, terms={"attribution": "Cite Alpha"})
    data_use = agreement_template("data-use")
    assert info.title == data_use.title == "Data use agreement"
    assert info.terms == AgreementTerms(
        permitted_uses=("research",),
        ip_ownership="owner",
        attribution="Cite Alpha",
        redistribution=False,
        export_control=False,
        royalty_note="",
    )
    assert before <= info.starts_at <= utcnow()
    assert info.expires_at - info.starts_at == dt.timedelta(days=data_use.duration_days)
    other = create(
        world.alice,
        "from-crada",
        kind="data-use",
        template="crada",
        title="Joint spectra",
        starts=dt.date(2020, 1, 1),
        expires=dt.datetime(2099, 6, 30, 12, 0),
    )
    assert other.kind == "data-use" and other.title == "Joint spectra"
    assert other.terms == agreement_template("crada").terms
    assert other.starts_at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert other.expires_at == dt.datetime(2099, 6, 30, 12, 0, tzinfo=dt.UTC)


# ---- lifecycle -------------------------------------------------------------------------


def test_draft_then_signed_then_active(world: World) -> None:
    info = create(world.alice)
    assert (info.state, info.effective_state, info.owner) == ("draft", "draft", "alpha")
    assert [(p.org, p.signed) for p in info.parties] == [("alpha", False), ("beta", False)]
    assert info.created_by == "alice@alpha" and info.unsigned == ("alpha", "beta")

    info = world.alice.agreements.sign(NAME)
    assert (info.state, info.effective_state, info.unsigned) == ("signed", "signed", ("beta",))
    assert info.parties[0].signed_by == "alice@alpha"
    assert not info.in_force

    info = world.ben.agreements.sign(NAME)
    assert (info.state, info.effective_state, info.unsigned) == ("active", "active", ())
    assert info.parties[1].signed_by == "ben@beta" and info.in_force

    with world.operator._db.session(write=False) as s:
        audited = s.scalars(
            select(AuditRecord)
            .where(AuditRecord.resource_kind == "agreement", AuditRecord.action == "write")
            .order_by(AuditRecord.id)
        ).all()
    assert [(r.principal, r.detail["operation"]) for r in audited] == [
        ("alice@alpha", "create"),
        ("alice@alpha", "sign"),
        ("ben@beta", "sign"),
    ]


def test_parties_signing_at_once_make_it_active(world: World) -> None:
    # Each signature reads the others: without the row lock, two concurrent signers could
    # each see only their own and leave it "signed" (PostgreSQL's read committed).
    for round_ in range(5):
        name = f"at-once-{round_}"
        create(world.alice, name)
        world.sync()
        start = threading.Barrier(2)

        def sign(p: Platform, name: str = name, start: threading.Barrier = start) -> None:
            start.wait()
            p.agreements.sign(name)

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(sign, world.alice), pool.submit(sign, world.ben)]:
                done.result()
        assert world.alice.agreements.get(name).state == "active", round_


def test_an_active_agreement_past_its_expiry_is_expired(world: World) -> None:
    create(world.alice)
    activate(world)
    expire(world)
    info = world.bob.agreements.get(NAME)
    assert (info.state, info.effective_state, info.in_force) == ("active", "expired", False)
    assert info.state_at(info.expires_at - dt.timedelta(seconds=1)) == "active"


def test_terminate_keeps_the_reason(world: World) -> None:
    create(world.alice)
    activate(world)
    info = world.ben.agreements.terminate(NAME, "  the project ended ")
    assert (info.state, info.effective_state) == ("terminated", "terminated")
    assert info.termination_reason == "the project ended"
    assert info.terminated_at is not None
    assert world.alice.agreements.get(NAME).termination_reason == "the project ended"


def test_terminate_refuses_an_empty_reason_and_a_second_time(world: World) -> None:
    create(world.alice)
    with pytest.raises(InvalidInput, match=r"^reason: is empty"):
        world.alice.agreements.terminate(NAME, " ")
    world.alice.agreements.terminate(NAME, "withdrawn")
    before = counts(world.operator)
    with pytest.raises(InvalidInput, match="was terminated already"):
        world.alice.agreements.terminate(NAME, "again")
    assert counts(world.operator) == before


def test_a_non_party_may_not_terminate(world: World) -> None:
    create(world.alice)
    # to a non-party it is as if there were no such agreement: no names, no parties
    with pytest.raises(NotFound, match=f"agreement {NAME} does not exist"):
        world.carl.agreements.terminate(NAME, "spite")
    assert world.alice.agreements.get(NAME).state == "draft"


def test_unknown_agreement(world: World) -> None:
    for call in (
        lambda: world.alice.agreements.get("nope"),
        lambda: world.alice.agreements.sign("nope"),
        lambda: world.alice.agreements.terminate("nope", "why"),
        lambda: world.alice.agreements.render("nope"),
    ):
        with pytest.raises(NotFound, match="agreement nope does not exist"):
            call()


# ---- bad input: a clear error naming the field, and nothing stored -------------------------

GOOD: dict[str, Any] = {"kind": "data-use", "parties": ["alpha", "beta"], "covers": []}
BAD_CREATES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown kind", {"kind": "nda"}, "kind", "'nda' is not one of mou"),
    ("unknown template", {"template": "nda"}, "template", "'nda' is not one of"),
    ("bad name", {"name": "Bad Name!"}, "name", "is not a valid name"),
    ("unknown party", {"parties": ["alpha", "zeta"]}, "parties", "no organization named 'zeta'"),
    ("creator not a party", {"parties": ["beta", "gamma"]}, "parties", "your organization, alpha"),
    ("one party", {"parties": ["alpha"]}, "parties", "two or more parties"),
    ("party twice", {"parties": ["alpha", "beta", "alpha"]}, "parties", "alpha is listed twice"),
    ("parties as text", {"parties": "alpha,beta"}, "parties", "is not a list of organizations"),
    ("unknown asset", {"covers": ["dataset:nope"]}, "covers", "no dataset named 'nope'"),
    ("not KIND:NAME", {"covers": ["spectra"]}, "covers", "'spectra' is not KIND:NAME"),
    ("kind not covered", {"covers": ["task:1"]}, "covers", "'task' is not a kind of asset"),
    ("asset of a non-party", {"covers": ["dataset:gamma-data"]}, "covers", "does not belong"),
    ("owner not a party", {"covers": ["owner:gamma"]}, "covers", "gamma, which is not a party"),
    ("unknown owner", {"covers": ["owner:Zeta!"]}, "covers", "is not a valid name"),
    ("bad use", {"terms": {"permitted_uses": ["military"]}}, "terms.permitted_uses", "'military'"),
    (
        "use as text",
        {"terms": {"permitted_uses": "research"}},
        "terms.permitted_uses",
        "not a list",
    ),
    ("no use", {"terms": {"permitted_uses": []}}, "terms.permitted_uses", "permits no use"),
    ("unknown term", {"terms": {"royalty": "5%"}}, "terms.royalty", "is not a term"),
    ("bad IP", {"terms": {"ip_ownership": "mine"}}, "terms.ip_ownership", "'mine' is not a kind"),
    ("not a bool", {"terms": {"redistribution": "yes"}}, "terms.redistribution", "true or false"),
    ("attribution not text", {"terms": {"attribution": 3}}, "terms.attribution", "is not text"),
    ("terms not a mapping", {"terms": ["research"]}, "terms", "must map term names"),
    (
        "expiry before start",
        {"starts": dt.date(2090, 1, 2), "expires": dt.date(2090, 1, 1)},
        "expires",
        "2090-01-01 00:00 UTC is not after the start, 2090-01-02 00:00 UTC",
    ),
    (
        "expiry in the past",
        {"starts": dt.date(2000, 1, 1), "expires": dt.date(2001, 1, 1)},
        "expires",
        "2001-01-01 00:00 UTC is in the past",
    ),
    ("expiry not a date", {"expires": "2090-01-01"}, "expires", "is not a date or time"),
]


def test_bad_create_names_the_field_and_stores_nothing(world: World) -> None:
    # One world for every case (setting one up costs a second): each case stores nothing.
    before = counts(world.operator)
    for case, changes, field_name, problem in BAD_CREATES:
        args = {**GOOD, "name": "bad", **changes}
        with pytest.raises(InvalidInput) as info:
            world.alice.agreements.create(
                args.pop("name"), args.pop("kind"), args.pop("parties"), **args
            )
        assert (info.value.field, case) == (field_name, case)
        assert problem in info.value.problem, (case, info.value.problem)
        assert info.value.fix, case
        assert counts(world.operator) == before, case


def test_a_taken_name_is_refused(world: World) -> None:
    create(world.alice)
    before = counts(world.operator)
    with pytest.raises(InvalidInput, match=f"^name: an agreement named '{NAME}' exists"):
        create(world.alice, covers=[])
    assert counts(world.operator) == before


def test_a_viewer_may_not_create(world: World) -> None:
    world.operator.orgs.add_member("alpha", "vic", role="viewer", vetting="vetted")
    vic = world.as_(Principal("vic", "alpha"))
    before = counts(world.operator)
    with pytest.raises(AccessDenied, match="forbid-viewers-changes"):
        create(vic)
    assert counts(world.operator) == before


def test_a_non_party_is_told_the_parties_only_if_it_may_read_them(world: World) -> None:
    create(world.alice)
    before = counts(world.operator)
    with pytest.raises(NotFound, match=f"agreement {NAME} does not exist"):
        world.carl.agreements.sign(NAME)  # a non-party learns nothing about it
    # The operator may read it, so it is told who the parties are; it signs only for its org.
    message = (
        r"may not sign agreement alpha-beta-spectra: local is not a party to it "
        r"\(its parties are alpha, beta\)"
    )
    with pytest.raises(AccessDenied, match=message) as info:
        world.operator.agreements.sign(NAME)
    assert info.value.details["parties"] == ["alpha", "beta"]
    assert counts(world.operator) == before


def test_a_plain_member_of_a_party_may_not_sign_for_it(world: World) -> None:
    create(world.alice)
    before = counts(world.operator)
    with pytest.raises(AccessDenied, match=r"; an owner or admin of beta signs it for beta$"):
        world.bob.agreements.sign(NAME)
    assert counts(world.operator) == before


def test_signing_by_an_unknown_principal_says_so(world: World) -> None:
    create(world.alice)
    stranger = world.as_(Principal("eve", "beta"))
    with pytest.raises(AccessDenied, match="unknown principal: eve is not a member"):
        stranger.agreements.sign(NAME)


def test_signing_twice_is_refused(world: World) -> None:
    create(world.alice)
    world.alice.agreements.sign(NAME)
    before = counts(world.operator)
    with pytest.raises(InvalidInput, match=r"alpha signed agreement .* already .*waiting for beta"):
        world.alice.agreements.sign(NAME)
    assert counts(world.operator) == before


def test_an_expired_agreement_cannot_be_signed(world: World) -> None:
    create(world.alice)
    world.alice.agreements.sign(NAME)
    expire(world)
    assert world.ben.agreements.get(NAME).effective_state == "expired"
    before = counts(world.operator)
    with pytest.raises(InvalidInput, match=r"expired .*; it cannot be signed"):
        world.ben.agreements.sign(NAME)
    assert counts(world.operator) == before


def test_a_terminated_agreement_cannot_be_signed(world: World) -> None:
    create(world.alice)
    world.alice.agreements.terminate(NAME, "withdrawn")
    world.sync()
    before = counts(world.operator)
    with pytest.raises(InvalidInput, match=r"was terminated .*; it cannot be signed"):
        world.ben.agreements.sign(NAME)
    assert counts(world.operator) == before


# ---- reading and rendering -----------------------------------------------------------------


def test_list_shows_only_what_the_principal_may_read(world: World) -> None:
    create(world.alice)
    create(world.carl, "gamma-beta", parties=["gamma", "beta"], covers=["owner:gamma"])
    world.sync()
    assert [a.name for a in world.alice.agreements.list()] == [NAME]
    assert [a.name for a in world.bob.agreements.list()] == [NAME, "gamma-beta"]
    assert [a.name for a in world.carl.agreements.list()] == ["gamma-beta"]
    assert [a.name for a in world.operator.agreements.list()] == [NAME, "gamma-beta"]
    with pytest.raises(AccessDenied):
        world.carl.agreements.get(NAME)
    with pytest.raises(AccessDenied):
        world.carl.agreements.render(NAME)


def test_render_shows_every_term_and_the_state(world: World) -> None:
    create(
        world.alice,
        covers=["dataset:spectra", "owner:alpha"],
        terms={
            "permitted_uses": ["government", "research"],
            "ip_ownership": "joint",
            "attribution": "Cite Alpha 2026",
            "redistribution": True,
            "export_control": True,
            "royalty_note": "2% of net sales",
        },
        starts=dt.date(2026, 1, 1),
        expires=dt.date(2099, 1, 1),
    )
    world.alice.agreements.sign(NAME)
    text = world.bob.agreements.render(NAME)
    for line in [
        "# Data use agreement",
        "Agreement `alpha-beta-spectra`, a data-use agreement drawn up by alice@alpha",
        "**State: signed**: waiting for the signature of beta; it grants nothing until",
        "- alpha: signed by alice@alpha, ",
        "- beta: not signed",
        "- dataset:spectra",
        "- every asset of alpha (owner:alpha)",
        "- Permitted uses: research, government",
        "- IP ownership: joint (what the parties make under the agreement is owned by them",
        "- Attribution: Cite Alpha 2026",
        "- Redistribution: permitted",
        "- Export control: the covered assets are export-controlled",
        "- Royalty note: 2% of net sales",
        "- Starts: 2026-01-01 00:00 UTC",
        "- Expires: 2099-01-01 00:00 UTC",
    ]:
        assert line in text, line
    world.ben.agreements.sign(NAME)
    assert "**State: active**: signed by every party; it grants access until 2099-01-01" in (
        world.bob.agreements.render(NAME)
    )
    world.ben.agreements.terminate(NAME, "merger")
    text = world.bob.agreements.render(NAME)
    assert "**State: terminated**: terminated " in text and "(merger)" in text
    assert "- Terminated: " in text and text.endswith(": merger\n")


def test_render_of_expired_and_not_started_agreements(world: World) -> None:
    info = create(world.alice, starts=dt.date(2090, 1, 1), expires=dt.date(2091, 1, 1))
    activate(world)
    info = world.alice.agreements.get(NAME)
    assert "it grants access from 2090-01-01 00:00 UTC" in render_agreement(info)
    assert not info.in_force
    later = dt.datetime(2091, 6, 1, tzinfo=dt.UTC)
    assert "**State: expired**: expired 2091-01-01 00:00 UTC" in render_agreement(info, later)


def test_to_dict_is_json_ready(world: World) -> None:
    info = create(world.alice)
    out = info.to_dict()
    assert out["effective_state"] == "draft" and out["owner"] == "alpha"
    assert out["parties"] == [
        {"org": "alpha", "signed_by": "", "signed_at": None},
        {"org": "beta", "signed_by": "", "signed_at": None},
    ]
    assert out["terms"]["permitted_uses"] == ["research"]
    assert dt.datetime.fromisoformat(out["expires_at"]) == info.expires_at


# ---- decisions: what an agreement grants, and when -----------------------------------------


def test_an_active_agreement_grants_reading_a_gated_dataset(world: World) -> None:
    assert not can_read(world.bob)
    create(world.alice)
    world.sync()
    assert not can_read(world.bob)  # draft
    world.alice.agreements.sign(NAME)
    world.sync()
    assert not can_read(world.bob)  # signed by alpha only
    world.ben.agreements.sign(NAME)
    world.sync()
    assert can_read(world.bob)
    assert [d.name for d in world.bob.datasets.list()] == ["spectra"]
    assert not can_read(world.bob, "other")  # not covered
    assert not can_read(world.carl)  # not a party
    commercial = world.as_(Principal("bob", "beta", purpose="commercial"))
    assert not can_read(commercial)  # a use it does not permit


def test_access_ends_when_the_agreement_expires(world: World) -> None:
    create(world.alice)
    activate(world)
    assert can_read(world.bob)
    expire(world)
    assert not can_read(world.bob)
    assert world.bob.datasets.list() == []


def test_access_ends_when_the_agreement_is_terminated(world: World) -> None:
    create(world.alice)
    activate(world)
    assert can_read(world.bob)
    world.ben.agreements.terminate(NAME, "the project ended")
    world.sync()
    assert not can_read(world.bob)


def test_an_agreement_not_started_grants_nothing_yet(world: World) -> None:
    create(world.alice, starts=dt.date(2090, 1, 1), expires=dt.date(2091, 1, 1))
    activate(world)
    assert world.bob.agreements.get(NAME).effective_state == "active"
    assert not can_read(world.bob)


def test_covering_an_owner_grants_every_gated_asset_for_the_permitted_uses(world: World) -> None:
    create(
        world.alice,
        covers=["owner:alpha"],
        terms={"permitted_uses": ["research", "commercial"]},
    )
    activate(world)
    commercial = world.as_(Principal("bob", "beta", purpose="commercial"))
    government = world.as_(Principal("bob", "beta", purpose="government"))
    assert can_read(world.bob) and can_read(world.bob, "other")
    assert can_read(commercial, "other")
    assert not can_read(government)
    assert sorted(d.name for d in world.bob.datasets.list()) == ["other", "spectra"]


def test_an_agreement_grants_no_access_to_a_private_dataset(world: World) -> None:
    world.alice.assets.set("dataset", "other", access="private")
    create(world.alice, covers=["dataset:spectra", "dataset:other"])
    activate(world)
    assert can_read(world.bob) and not can_read(world.bob, "other")
