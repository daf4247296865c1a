"""Campaigns: the closed loop of planning, running, observing and refitting."""

from genesis_platform.campaigns.service import Campaign, CampaignInfo, CampaignService, TrialInfo
from genesis_platform.campaigns.spec import (
    Budget,
    CampaignSpec,
    PlannerSpec,
    RunnerSpec,
    StopSpec,
    load_spec,
    on_site,
    on_station,
)

__all__ = [
    "Budget",
    "Campaign",
    "CampaignInfo",
    "CampaignService",
    "CampaignSpec",
    "PlannerSpec",
    "RunnerSpec",
    "StopSpec",
    "TrialInfo",
    "load_spec",
    "on_site",
    "on_station",
]
