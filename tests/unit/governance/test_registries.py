"""Challenges and partners: the operator's registries, read by everyone, checked on entry."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from genesis_platform import Platform
from genesis_platform.catalog.tables import (
    ChallengeRow,
    PartnerRow,
)
from genesis_platform.errors import AccessDenied, InvalidInput, NotFound
from genesis_platform.governance import Principal
from tests.unit.governance.governed import agree

THIS_YEAR = dt.datetime.now(dt.UTC).year


def _agreement(p: Platform, name: str, *parties: str, expired: bool = False) -> None:
    """An active MOU between ``parties`` (or one that expired yesterday)."""
    now = dt.datetime.now(dt.UTC)
    ends = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=365)
    agree(p, name, parties, [], kind="mou", starts=now - dt.timedelta(days=30), expires=ends)


def _rows(p: Platform) -> list[Any]:
    with p._db.session(write=False) as s:
        challenges = [
            (r.name, r.domain, r.lead_org, list(r.links), list(r.reviews))
            for r in s.scalars(select(ChallengeRow).order_by(ChallengeRow.id))
        ]
        partners = [
            (r.org, r.mou, list(r.contributes), r.note)
            for r in s.scalars(select(PartnerRow).order_by(PartnerRow.id))
        ]
    return [challenges, partners]


@pytest.fixture
def assets(platform: Platform) -> dict[str, str]:
    """A dataset, a model and a finished campaign of the operator's organization."""
    platform.datasets.add_table("grid-obs", pa.table({"x": [1.0, 2.0]}), filename="t.parquet")
    platform.models.register("grid-model", b"{}", framework="json")
    campaign = platform.campaigns.create(
        name="grid",
        space={"salt_molality": {"type": "real", "low": 0.1, "high": 3.0}},
        objectives={"conductivity": "max"},
        planner="random",
        runner={"station": "electrolyte", "options": {"latency_s": 0.0}},
        budget={"trials": 2},
    )
    return {"dataset": "grid-obs", "model": "grid-model", "campaign": str(campaign.id)}


@pytest.fixture
def bob(platform: Platform, genesis_home: Path) -> Iterator[Platform]:
    """An admin of another organization, beta."""
    platform.orgs.create("beta")
    platform.orgs.add_member("beta", "bob", role="admin", vetting="vetted")
    with Platform.open(genesis_home, principal=Principal("bob", org="beta")) as p:
        yield p


# ---- challenges ---------------------------------------------------------------------------


def test_challenge_add_link_review_get_list(platform: Platform, assets: dict[str, str]) -> None:
    me = platform.principal.org
    added = platform.challenges.add("grid-storage", "energy storage", me, "Store a day of load")
    assert (added.name, added.domain, added.lead_org, added.description) == (
        "grid-storage",
        "energy storage",
        me,
        "Store a day of load",
    )
    assert added.links == () and added.reviews == ()
    for ref in ("dataset:grid-obs@1", "model:grid-model", f"campaign:{assets['campaign']}"):
        platform.challenges.link("grid-storage", ref)
    again = platform.challenges.link("grid-storage", "Dataset:grid-obs@1")  # already linked
    assert again.links == (
        "dataset:grid-obs@1",
        "model:grid-model",
        f"campaign:{assets['campaign']}",
    )
    platform.challenges.review("grid-storage", THIS_YEAR, "on track")
    reviewed = platform.challenges.review("grid-storage", THIS_YEAR - 1, "kick-off")
    assert [(r.year, r.note, r.by) for r in reviewed.reviews] == [
        (THIS_YEAR - 1, "kick-off", str(platform.principal)),
        (THIS_YEAR, "on track", str(platform.principal)),
    ]
    assert platform.challenges.get("grid-storage") == reviewed
    platform.challenges.add("fusion", "fusion energy", me)
    assert [c.name for c in platform.challenges.list()] == ["fusion", "grid-storage"]
    as_json = reviewed.to_dict()
    assert as_json["reviews"][0]["year"] == THIS_YEAR - 1 and isinstance(
        as_json["reviews"][0]["at"], str
    )

    records = platform.audit.list(resource="challenge:grid-storage", limit=100)
    ops = sorted(r.detail["op"] for r in records if r.action == "administer")
    assert ops == ["add", "link", "link", "link", "review", "review"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.challenges.add("Grid Storage", "energy", p.principal.org), "name"),
        (lambda p: p.challenges.add("grid", " ", p.principal.org), "domain"),
        (lambda p: p.challenges.add("grid", "energy", "no-such-org"), "lead_org"),
        (lambda p: p.challenges.add("taken", "energy", p.principal.org), "name"),
        (lambda p: p.challenges.link("taken", "grid-obs"), "link"),
        (lambda p: p.challenges.link("taken", "site:local"), "link"),
        (lambda p: p.challenges.link("taken", "dataset:"), "link"),
        (lambda p: p.challenges.link("taken", "campaign:abc"), "link"),
        (lambda p: p.challenges.review("taken", 1800, "too early"), "year"),
        (lambda p: p.challenges.review("taken", THIS_YEAR + 2, "too late"), "year"),
        (lambda p: p.challenges.review("taken", "2026", "a string"), "year"),
        (lambda p: p.challenges.review("taken", THIS_YEAR, "  "), "note"),
    ],
)
def test_challenge_bad_input_names_the_field_and_changes_nothing(
    platform: Platform, assets: dict[str, str], call: Any, field: str
) -> None:
    platform.challenges.add("taken", "energy", platform.principal.org)
    before = _rows(platform)
    with pytest.raises(InvalidInput) as raised:
        call(platform)
    assert raised.value.field == field
    assert raised.value.fix  # says what to do
    assert _rows(platform) == before


def test_challenge_links_only_what_exists(platform: Platform, assets: dict[str, str]) -> None:
    platform.challenges.add("grid", "energy", platform.principal.org)
    for ref in ("dataset:nope", "dataset:grid-obs@7", "model:nope", "campaign:999"):
        with pytest.raises(NotFound):
            platform.challenges.link("grid", ref)
    with pytest.raises(NotFound, match="challenge other does not exist"):
        platform.challenges.link("other", "dataset:grid-obs")
    with pytest.raises(NotFound):
        platform.challenges.review("other", THIS_YEAR, "x")
    with pytest.raises(NotFound):
        platform.challenges.get("other")
    assert platform.challenges.get("grid").links == ()


def test_only_operator_admins_change_challenges_and_links_stay_private(
    platform: Platform, assets: dict[str, str], bob: Platform
) -> None:
    platform.challenges.add("grid", "energy", platform.principal.org)
    platform.challenges.link("grid", "dataset:grid-obs")
    before = _rows(platform)
    with pytest.raises(AccessDenied):
        bob.challenges.add("beta-grid", "energy", "beta")
    with pytest.raises(AccessDenied):
        bob.challenges.link("grid", "model:grid-model")
    with pytest.raises(AccessDenied):
        bob.challenges.review("grid", THIS_YEAR, "mine")
    assert _rows(platform) == before
    # anyone reads the registry; a private dataset of another organization is not named
    [seen] = bob.challenges.list()
    assert seen.name == "grid" and seen.links == ()
    assert bob.challenges.get("grid").links == ()
    assert platform.challenges.get("grid").links == ("dataset:grid-obs",)


# ---- partners ----------------------------------------------------------------------------


def test_partner_add_contribute_get_list(
    platform: Platform, assets: dict[str, str], bob: Platform
) -> None:
    me = platform.principal.org
    _agreement(platform, "beta-mou", me, "beta")
    _agreement(platform, "old-mou", me, "beta", expired=True)
    added = platform.partners.add("beta", mou="beta-mou", note="since 2024")
    assert (added.org, added.mou, added.note, added.contributes) == (
        "beta",
        "beta-mou",
        "since 2024",
        (),
    )
    assert added.agreements == ("beta-mou",)  # the expired one is not in force
    for ref in ("site:local", "station:electrolyte", "dataset:grid-obs", "model:grid-model"):
        platform.partners.contribute("beta", ref)
    again = platform.partners.contribute("beta", "site:local")
    assert again.contributes == (
        "site:local",
        "station:electrolyte",
        "dataset:grid-obs",
        "model:grid-model",
    )
    platform.partners.add(me)
    assert [p.org for p in platform.partners.list()] == sorted(["beta", me])
    assert platform.partners.get("beta") == again
    assert again.to_dict()["contributes"][0] == "site:local"

    # beta reads its own entry, without the operator's private dataset and model
    seen = bob.partners.get("beta")
    assert set(seen.contributes) <= {"site:local", "station:electrolyte"}
    assert seen.mou == "beta-mou" and seen.agreements == ("beta-mou",)

    records = platform.audit.list(resource="partner:beta", limit=100)
    ops = sorted(r.detail["op"] for r in records if r.action == "administer")
    assert ops == ["add", "contribute", "contribute", "contribute", "contribute"]


def test_partner_bad_input_and_missing_things(
    platform: Platform, assets: dict[str, str], bob: Platform
) -> None:
    me = platform.principal.org
    platform.orgs.create("gamma")
    _agreement(platform, "gamma-mou", me, "gamma")
    platform.partners.add("gamma")
    before = _rows(platform)
    for call, field in [
        (lambda: platform.partners.add("gamma"), "org"),
        (lambda: platform.partners.add("beta", mou="no-such-mou"), "mou"),
        (lambda: platform.partners.add("beta", mou="gamma-mou"), "mou"),  # beta not a party
        (lambda: platform.partners.contribute("gamma", "campaign:1"), "contribution"),
        (lambda: platform.partners.contribute("gamma", "local"), "contribution"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            call()
        assert raised.value.field == field, raised.value
    for call in [
        lambda: platform.partners.add("no-such-org"),
        lambda: platform.partners.contribute("gamma", "site:nope"),
        lambda: platform.partners.contribute("gamma", "station:nope"),
        lambda: platform.partners.contribute("gamma", "dataset:nope"),
        lambda: platform.partners.contribute("beta", "site:local"),  # not a partner
        lambda: platform.partners.get("beta"),
    ]:
        with pytest.raises(NotFound):
            call()
    with pytest.raises(AccessDenied):
        bob.partners.add("beta")
    with pytest.raises(AccessDenied):
        bob.partners.contribute("gamma", "site:local")
    assert _rows(platform) == before
