"""Campaigns whose trials are tasks on compute sites: recorded, spread over sites, found again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from genesis_platform import CampaignSpec, CampaignSpecError, Platform, on_site
from genesis_platform.campaigns.runners import make_runner

SIMULATION = "genesis_platform.testing.functions:sleep_then_return"
SPACE = {"a": {"type": "real", "low": 0.0, "high": 1.0}}


def create(platform: Platform, runner: dict[str, Any], **changes: Any) -> Any:
    spec: dict[str, Any] = {
        "name": "on-sites",
        "project": "materials",
        "space": SPACE,
        "objectives": {"value": "min"},
        "planner": "random",
        "runner": runner,
        "budget": {"trials": 8, "parallel": 3},
        "seed": 1,
    }
    spec.update(changes)
    return platform.campaigns.create(spec)


def test_trials_are_recorded_tasks_of_the_campaigns_project(platform: Platform) -> None:
    runner = {"site": "local", "function": "genesis_platform.testing.functions:quadratic"}
    info = create(platform, runner).run()
    assert info.n_observed == 8
    tasks = platform.tasks.list()
    assert len(tasks) == 8
    assert {t.state for t in tasks} == {"completed"}
    assert {t.project for t in tasks} == {"materials"}
    trial_ids = {t.external_id for t in platform.campaigns.get(info.id).trials()}
    assert {t.name for t in tasks} == trial_ids  # each trial's task is named by its id
    [usage] = platform.tasks.usage(project="materials")
    assert usage.tasks == 8 and usage.site == "local"


def test_a_campaign_spreads_its_trials_over_two_sites(platform: Platform) -> None:
    platform.sites.add("second", "local", {"max_workers": 1})
    runner = on_site(["local", "second"], SIMULATION)
    campaign = platform.campaigns.create(
        name="two-sites",
        space={**SPACE, "seconds": {"type": "real", "low": 0.2, "high": 0.3}},
        objectives={"value": "min"},
        planner="random",
        runner=runner,
        budget={"trials": 9, "parallel": 3},
        seed=2,
    )
    info = campaign.run()  # 3 sleeping trials in flight: more than local's free slots (2)
    assert info.n_observed == 9
    sites = [t.site for t in platform.tasks.list()]
    assert sites.count("second") >= 1 and sites.count("local") >= 1
    assert len(sites) == 9


def test_an_unknown_site_is_refused_at_create(platform: Platform) -> None:
    runner = {"site": ["local", "nowhere"], "function": SIMULATION}
    with pytest.raises(CampaignSpecError) as info:
        create(platform, runner)
    assert info.value.field == "runner.site"
    assert "nowhere" in str(info.value) and "genesis site list" in str(info.value)


@pytest.mark.parametrize("sites", [[], ["local", "local"]])
def test_a_site_list_must_hold_different_sites(platform: Platform, sites: list[str]) -> None:
    with pytest.raises(CampaignSpecError) as info:
        create(platform, {"site": sites, "function": SIMULATION})
    assert info.value.field == "runner.site"


def test_aborting_a_site_runner_cancels_its_tasks(platform: Platform) -> None:
    spec = CampaignSpec.from_dict(
        {
            "name": "abort",
            "space": {"seconds": {"type": "real", "low": 30.0, "high": 31.0}},
            "objectives": {"value": "min"},
            "runner": {"site": "local", "function": SIMULATION},
        }
    )
    runner = make_runner(spec, platform.tasks, platform.stations)
    future = runner.start("site:local:trial-1.1", {"seconds": 30.0})
    deadline = time.monotonic() + 30
    while not platform.tasks.list() or platform.tasks.list()[0].state != "active":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runner.close(abort=True)
    assert future.cancelled()
    while platform.tasks.list()[0].state != "canceled":
        assert time.monotonic() < deadline, "the trial's task was not cancelled"
        time.sleep(0.02)
