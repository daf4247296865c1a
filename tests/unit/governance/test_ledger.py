"""The IP ledger: every output of a finished campaign has one entry, changed only by the
owner organization's admins, and every change is audited."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from genesis_platform import Platform
from genesis_platform.campaigns.snapshots import Snapshotter
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    Campaign,
    IpLedgerRow,
)
from genesis_platform.errors import AccessDenied, CatalogError, InvalidInput, NotFound
from genesis_platform.governance import Principal
from genesis_platform.governance.ledger import LedgerEntry, LedgerService
from tests.unit.governance.governed import agree

SPACE = {
    "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
    "temperature_c": {"type": "int", "low": 10, "high": 60},
    "solvent": {"type": "choice", "values": ["EC-DMC", "EC-EMC", "PC"]},
}


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "ip",
        "space": SPACE,
        "objectives": {"conductivity": "max"},
        "planner": "gp",
        "runner": {"station": "electrolyte", "options": {"latency_s": 0.0}},
        "budget": {"trials": 8, "parallel": 2},
        "snapshot_every": 4,
        "seed": 3,
    }
    spec.update(changes)
    return spec


def _outputs(entries: list[LedgerEntry]) -> list[tuple[str, str]]:
    return [(e.output_kind, e.output) for e in entries]


def _snapshot(p: Platform) -> list[tuple[Any, ...]]:
    with p._db.session(write=False) as s:
        rows = s.scalars(select(IpLedgerRow).order_by(IpLedgerRow.id)).all()
        return [
            (r.id, r.commercialization, r.ownership, r.agreement, list(r.partners), r.note)
            for r in rows
        ]


def _agreement(p: Platform, name: str, *parties: str) -> None:
    """An active license between ``parties``."""
    agree(p, name, parties, [], kind="license")


@pytest.fixture
def finished(platform: Platform) -> Any:
    """A finished GP campaign: two dataset versions, two surrogates, one best trial."""
    return platform.campaigns.create(_spec()).run()


def test_finished_campaign_has_an_entry_per_output(platform: Platform, finished: Any) -> None:
    info = finished
    entries = platform.ledger.entries(campaign=info.id)
    dataset, model = f"ip-{info.id}-observations", f"ip-{info.id}-surrogate"
    best = next(t for t in platform.campaigns.get(info.id).trials() if t.params == info.best_params)
    assert _outputs(entries) == [
        ("dataset", f"{dataset}@1"),
        ("dataset", f"{dataset}@2"),
        ("model", f"{model}@1"),
        ("model", f"{model}@2"),
        ("candidate", f"ip-{info.id}/trial-{best.number}"),
    ]
    assert info.dataset == f"{dataset}@2" and info.model == f"{model}@2"
    me = platform.principal.org
    for e in entries:
        assert (e.campaign_id, e.project, e.owner_org, e.partners) == (info.id, "", me, (me,))
        assert (e.agreement, e.ownership, e.commercialization) == ("", "owner", "none")
    candidate = entries[-1]
    assert candidate.note.startswith(f"trial {best.number}: conductivity = ")
    assert "solvent = " in candidate.note
    assert platform.ledger.get(candidate.id) == candidate
    assert platform.ledger.entries() == entries
    assert platform.ledger.entries(project="elsewhere") == []
    # the entries came in one transaction, audited once
    [written] = [
        r
        for r in platform.audit.list(resource=f"campaign:{info.id}", limit=1000)
        if r.detail.get("op") == "ledger"
    ]
    assert written.detail["outputs"] == [f"{k}:{n}" for k, n in _outputs(entries)]


def test_pareto_front_trials_are_the_candidates(platform: Platform) -> None:
    spec = _spec(
        objectives={"conductivity": "max", "cost": "min"},
        planner="random",
        runner={
            "site": "local",
            "function": "genesis_platform.testing.functions:electrolyte_cost_simulation",
        },
        budget={"trials": 8, "parallel": 2, "retries": 0},
    )
    info = platform.campaigns.create(spec).run()
    candidates = [
        e.output for e in platform.ledger.entries(info.id) if e.output_kind == "candidate"
    ]
    assert candidates == [f"ip-{info.id}/trial-{row['trial']}" for row in info.pareto]
    assert len(candidates) >= 1


def test_nothing_is_written_per_trial_and_a_resume_adds_no_duplicates(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = platform.campaigns.create(_spec())
    real = Snapshotter.snapshot

    def interrupted(self: Snapshotter, *args: Any) -> None:
        real(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(Snapshotter, "snapshot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        campaign.run()
    assert campaign.info().state == "stopped"
    assert platform.ledger.entries(campaign.id) == []  # written when it finishes, not before
    monkeypatch.setattr(Snapshotter, "snapshot", real)

    info = platform.campaigns.resume(campaign.id).run()
    assert info.state == "completed"
    first = platform.ledger.entries(campaign.id)
    kinds = [e.output_kind for e in first]
    assert kinds.count("dataset") == 2 and kinds.count("candidate") == 1
    platform.ledger.update(first[0].id, commercialization="disclosed")

    # finishing again (a failed campaign resumed) leaves what is recorded as it is
    with platform._db.session() as s:
        s.get_one(Campaign, campaign.id).state = "failed"
    assert platform.campaigns.resume(campaign.id).run().state == "completed"
    again = platform.ledger.entries(campaign.id)
    assert [e.id for e in again] == [e.id for e in first]
    assert again[0].commercialization == "disclosed"
    with platform._db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(IpLedgerRow)) == len(first)


def test_project_members_organizations_are_the_partners(platform: Platform) -> None:
    me = platform.principal.org
    platform.orgs.create("beta")
    platform.orgs.add_member("beta", "bob", role="admin", vetting="vetted")
    platform.projects.create("battery")
    platform.projects.add_member("battery", "bob@beta")
    info = platform.campaigns.create(_spec(project="battery", planner="random")).run()
    entries = platform.ledger.entries(project="battery")
    assert entries and all(e.campaign_id == info.id for e in entries)
    assert all(e.project == "battery" and e.partners == (me, "beta") for e in entries)
    assert all(e.owner_org == me for e in entries)


# ---- who may change an entry -------------------------------------------------------------


@pytest.fixture
def people(platform: Platform, genesis_home: Path) -> Iterator[dict[str, Platform]]:
    """Platforms acting as an admin and a plain member of the owner, and another org's admin."""
    me = platform.principal.org
    platform.orgs.add_member(me, "ann", role="admin", vetting="vetted")
    platform.orgs.add_member(me, "mo", role="member", vetting="vetted")
    platform.orgs.create("beta")
    platform.orgs.add_member("beta", "bob", role="admin", vetting="vetted")
    opened = {
        "admin": Platform.open(genesis_home, principal=Principal("ann", org=me)),
        "member": Platform.open(genesis_home, principal=Principal("mo", org=me)),
        "other": Platform.open(genesis_home, principal=Principal("bob", org="beta")),
    }
    yield opened
    for p in opened.values():
        p.close()


def test_only_the_owner_admins_change_an_entry(
    platform: Platform, finished: Any, people: dict[str, Platform]
) -> None:
    [entry, *_] = platform.ledger.entries(finished.id)
    before = _snapshot(platform)
    for who in ("member", "other"):
        with pytest.raises(AccessDenied):
            people[who].ledger.update(entry.id, commercialization="disclosed", note="mine")
    assert _snapshot(platform) == before

    changed = people["admin"].ledger.update(
        entry.id, commercialization="disclosed", ownership="joint", note="filed 2026-11"
    )
    assert (changed.commercialization, changed.ownership, changed.note) == (
        "disclosed",
        "joint",
        "filed 2026-11",
    )
    assert changed.updated_at > entry.updated_at
    assert platform.ledger.get(entry.id) == changed

    records = platform.audit.list(resource=f"campaign:{finished.id}", limit=1000)
    [allowed] = [r for r in records if r.detail.get("op") == "ledger-update"]
    assert allowed.principal == f"ann@{platform.principal.org}"
    assert (allowed.action, allowed.decision) == ("administer", "allow")
    assert allowed.detail == {
        "op": "ledger-update",
        "entry": entry.id,
        "commercialization": "disclosed",
        "ownership": "joint",
        "note": "filed 2026-11",
    }
    denied = [r for r in records if r.decision == "deny" and r.action == "administer"]
    assert sorted(r.principal for r in denied) == sorted(
        [f"mo@{platform.principal.org}", "bob@beta"]
    )


def test_another_organization_does_not_see_the_entries(
    platform: Platform, finished: Any, people: dict[str, Platform]
) -> None:
    entries = platform.ledger.entries()
    assert entries and people["member"].ledger.entries() == entries
    assert people["other"].ledger.entries() == []
    with pytest.raises(AccessDenied):
        people["other"].ledger.get(entries[0].id)
    with pytest.raises(AccessDenied):
        people["other"].ledger.entries(campaign=finished.id)


# ---- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"commercialization": "sold"}, "commercialization"),
        ({"ownership": "boss"}, "ownership"),
        ({"agreement": "no-such-agreement"}, "agreement"),
        ({"partners": ["ghost-org"]}, "partners"),
        ({"partners": []}, "partners"),
        ({"partners": "beta"}, "partners"),
        ({"commercialization": "licensed"}, "commercialization"),
        ({"ownership": "licensee"}, "ownership"),
        ({}, "update"),
    ],
)
def test_bad_values_are_clear_errors_and_change_nothing(
    platform: Platform, finished: Any, changes: dict[str, Any], field: str
) -> None:
    [entry, *_] = platform.ledger.entries(finished.id)
    before = _snapshot(platform)
    with pytest.raises(InvalidInput) as raised:
        platform.ledger.update(entry.id, **changes)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    assert _snapshot(platform) == before


def test_agreement_must_bind_the_owner_and_licensing_needs_one(
    platform: Platform, finished: Any
) -> None:
    me = platform.principal.org
    platform.orgs.create("beta")
    platform.orgs.create("gamma")
    _agreement(platform, "beta-gamma-license", "beta", "gamma")
    _agreement(platform, "beta-license", me, "beta")
    [entry, *_] = platform.ledger.entries(finished.id)

    # not a party, or no such agreement: one answer, so others' agreements stay unknown
    for name in ("beta-gamma-license", "nope"):
        with pytest.raises(InvalidInput, match=f"{me} is a party to no agreement named '{name}'"):
            platform.ledger.update(entry.id, agreement=name)
    with platform._db.session() as s:  # a draft grants nothing
        s.add(
            AgreementRow(
                name="draft-license",
                kind="license",
                state="draft",
                starts_at=dt.datetime.now(dt.UTC),
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=9),
            )
        )
        s.flush()
        draft = s.scalar(select(AgreementRow.id).where(AgreementRow.name == "draft-license"))
        s.add(AgreementPartyRow(agreement_id=draft, org=me))
    with pytest.raises(InvalidInput, match="'draft-license' is not in force"):
        platform.ledger.update(entry.id, agreement="draft-license")
    for bad in ({"partners": [1]}, {"agreement": 5}, {"note": 5}):
        with pytest.raises(InvalidInput):
            platform.ledger.update(entry.id, **bad)  # type: ignore[arg-type]
    licensed = platform.ledger.update(
        entry.id,
        agreement="beta-license",
        commercialization="licensed",
        ownership="licensee",
        partners=[me, "beta", me],
    )
    assert (licensed.agreement, licensed.commercialization, licensed.ownership) == (
        "beta-license",
        "licensed",
        "licensee",
    )
    assert licensed.partners == (me, "beta")
    with pytest.raises(InvalidInput) as raised:
        platform.ledger.update(entry.id, agreement="")
    assert raised.value.field == "agreement" and "while commercialization is 'licensed'" in str(
        raised.value
    )
    cleared = platform.ledger.update(
        entry.id, agreement="", commercialization="disclosed", ownership="owner"
    )
    assert (cleared.agreement, cleared.commercialization) == ("", "disclosed")


def test_unknown_entry_and_campaign_are_not_found(platform: Platform) -> None:
    with pytest.raises(NotFound, match="ledger entry 99 does not exist"):
        platform.ledger.get(99)
    with pytest.raises(NotFound):
        platform.ledger.update(99, note="x")
    with pytest.raises(NotFound, match="campaign 42 does not exist"):
        platform.ledger.entries(campaign=42)


def test_entries_lost_at_the_end_of_a_campaign_can_be_written_later(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise CatalogError("the catalog went away for a moment")

    with monkeypatch.context() as m:
        m.setattr(LedgerService, "record_campaign", broken)
        info = platform.campaigns.create(_spec()).run()
    assert info.state == "completed" and platform.ledger.entries(campaign=info.id) == []
    platform.campaigns.record_outputs(info.id)
    platform.campaigns.record_outputs(info.id)  # again: nothing doubles
    assert len(platform.ledger.entries(campaign=info.id)) == 5
