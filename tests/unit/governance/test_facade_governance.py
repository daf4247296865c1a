"""Facade calls carry their principal: tasks, sites and campaigns follow their owners."""

from __future__ import annotations

import pytest

from genesis_platform import AccessDenied, Platform
from genesis_platform.compute import tasks as tasks_module
from genesis_platform.governance import Principal


@pytest.fixture
def two_orgs(platform: Platform) -> Platform:
    for org, user in (("acme", "ada"), ("beta", "bea")):
        platform.orgs.create(org)
        platform.orgs.add_member(org, user, role="admin", vetting="vetted")
    platform.orgs.add_member("beta", "bob", vetting="vetted")
    return platform


def test_tasks_are_seen_by_their_submitters_org_only(two_orgs: Platform) -> None:
    with Platform.open(principal=Principal("bea", "beta")) as bea:
        bea.sites.add("beta-box", "local", {})
        done = bea.tasks.submit("beta-box", function="genesis_platform.testing.functions:noop")
        done.result(timeout=60)
        mine = [t.id for t in bea.tasks.list()]
        with pytest.raises(AccessDenied, match=r"may not (read|run) site:local"):
            bea.tasks.submit("local", function="genesis_platform.testing.functions:noop")
    assert len(mine) == 1
    with Platform.open(principal=Principal("bob", "beta")) as bob:
        assert [t.id for t in bob.tasks.list()] == mine
        assert bob.tasks.get(mine[0]).site == "beta-box"
    with Platform.open(principal=Principal("ada", "acme")) as ada:
        assert ada.tasks.list() == []
        with pytest.raises(AccessDenied, match=f"may not read task:{mine[0]}"):
            ada.tasks.get(mine[0])
        assert ada.sites.list() == []  # not even the built-in one: it is the operator's
        with pytest.raises(AccessDenied):
            ada.sites.remove("beta-box")
    assert mine[0] in [t.id for t in two_orgs.tasks.list()]  # the operator sees everything


def test_a_page_of_tasks_skips_what_the_caller_may_not_read(
    two_orgs: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limit`` counts readable tasks, however many newer unreadable ones there are."""
    monkeypatch.setattr(tasks_module, "_LIST_CHUNK", 2)  # several pages of rows
    with Platform.open(principal=Principal("bea", "beta")) as bea:
        bea.sites.add("beta-box", "local", {})
        futures = [
            bea.tasks.submit("beta-box", function="genesis_platform.testing.functions:noop")
            for _ in range(3)
        ]
        for future in futures:
            future.result(timeout=60)
        betas = [t.id for t in bea.tasks.list()]
    for _ in range(3):  # newer tasks that bob may not read
        two_orgs.tasks.submit("local", function="genesis_platform.testing.functions:noop")
    assert len(two_orgs.tasks.list(limit=6)) == 6  # recorded, and the operator sees all
    with Platform.open(principal=Principal("bob", "beta")) as bob:
        assert [t.id for t in bob.tasks.list(limit=2)] == betas[:2]  # pages of 2 rows
        assert [t.id for t in bob.tasks.list(limit=3)] == betas  # pages of 3 rows
        assert [t.id for t in bob.tasks.list(limit=1, site="local")] == []
        monkeypatch.setattr(tasks_module, "_LIST_SCAN_MAX", 3)
        assert [t.id for t in bob.tasks.list(limit=2)] == betas[:1]  # 4 rows read, then stop


def test_a_campaign_belongs_to_its_creators_org(two_orgs: Platform) -> None:
    spec = {
        "name": "screen",
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": {"station": "electrolyte"},
        "budget": {"trials": 2},
    }
    with Platform.open(principal=Principal("bob", "beta")) as bob:
        campaign = bob.campaigns.create(spec)
        assert [c.id for c in bob.campaigns.list()] == [campaign.id]
    with Platform.open(principal=Principal("ada", "acme")) as ada:
        assert ada.campaigns.list() == []
        with pytest.raises(AccessDenied, match=f"may not read campaign:{campaign.id}"):
            ada.campaigns.get(campaign.id)
    assert two_orgs.assets.get("campaign", str(campaign.id)).owner == "beta"
