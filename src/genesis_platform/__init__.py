"""Genesis: an open platform for closed-loop, AI-driven science.

>>> import genesis_platform as genesis
>>> p = genesis.Platform.open()                                  # doctest: +SKIP
>>> c = p.campaigns.from_file("examples/quickstart.yaml")        # doctest: +SKIP
>>> c.run(progress=True)                                         # doctest: +SKIP
"""

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from genesis_platform.errors import (
    AccessDenied,
    AllocationExceeded,
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

if TYPE_CHECKING:
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
    from genesis_platform.governance import Principal
    from genesis_platform.planning.protocols import Observation
    from genesis_platform.planning.space import Choice, Int, Real, Space
    from genesis_platform.platform import Platform

# Imported on first use (PEP 562), so that a process needing one part of Genesis, such as a
# batch job's worker, does not pay for loading all of it.
_LAZY = {
    **dict.fromkeys(
        [
            "Budget",
            "Campaign",
            "CampaignInfo",
            "CampaignSpec",
            "PlannerSpec",
            "RunnerSpec",
            "StopSpec",
            "TrialInfo",
            "on_site",
            "on_station",
        ],
        "genesis_platform.campaigns",
    ),
    "Principal": "genesis_platform.governance",
    "Observation": "genesis_platform.planning.protocols",
    **dict.fromkeys(["Choice", "Int", "Real", "Space"], "genesis_platform.planning.space"),
    "Platform": "genesis_platform.platform",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'genesis_platform' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


del TYPE_CHECKING, Any


__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AllocationExceeded",
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
