"""Genesis: an open platform for closed-loop, AI-driven science.

>>> import genesis_platform as genesis
>>> p = genesis.Platform.open()                                  # doctest: +SKIP
>>> c = p.campaigns.from_file("examples/quickstart.yaml")        # doctest: +SKIP
>>> c.run(progress=True)                                         # doctest: +SKIP
"""

from genesis_platform.campaigns import (
    Budget,
    Campaign,
    CampaignInfo,
    CampaignSpec,
    PlannerSpec,
    RunnerSpec,
    StopSpec,
    TrialInfo,
    on_site,
    on_station,
)
from genesis_platform.errors import (
    AccessDenied,
    CampaignError,
    CampaignSpecError,
    CatalogError,
    ConfigError,
    CorruptBlob,
    ExecutorError,
    GenesisError,
    InvalidInput,
    NotFound,
    OperationFailed,
    PlannerError,
    StationError,
    StorageError,
    TaskFailed,
)
from genesis_platform.governance import Principal
from genesis_platform.planning.protocols import Observation
from genesis_platform.planning.space import Choice, Int, Real, Space
from genesis_platform.platform import Platform

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Budget",
    "Campaign",
    "CampaignError",
    "CampaignInfo",
    "CampaignSpec",
    "CampaignSpecError",
    "CatalogError",
    "Choice",
    "ConfigError",
    "CorruptBlob",
    "ExecutorError",
    "GenesisError",
    "Int",
    "InvalidInput",
    "NotFound",
    "Observation",
    "OperationFailed",
    "PlannerError",
    "PlannerSpec",
    "Platform",
    "Principal",
    "Real",
    "RunnerSpec",
    "Space",
    "StationError",
    "StopSpec",
    "StorageError",
    "TaskFailed",
    "TrialInfo",
    "__version__",
    "on_site",
    "on_station",
]
