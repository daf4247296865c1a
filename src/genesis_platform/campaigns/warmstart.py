"""Warm start: begin a campaign from the observations in an existing dataset version.

The dataset needs a column per parameter and per reported metric (objectives and
constrained metrics); a campaign's own observations dataset (``NAME-ID-observations``) has
exactly these. Rows outside the new campaign's space (a related campaign with other bounds
or choices) and rows without a finite value for every metric are skipped. The version is
pinned when the campaign is created, so a resumed campaign replays the same observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from genesis_platform.campaigns.spec import CampaignSpec
from genesis_platform.data.refs import format_ref
from genesis_platform.data.service import DatasetService
from genesis_platform.errors import CampaignSpecError, InvalidInput, NotFound
from genesis_platform.planning.protocols import Observation
from genesis_platform.planning.space import Int, Space

__all__ = ["WarmStart", "load_warm_start", "pin_warm_start"]

_FIX = (
    "warm-start from a dataset with a column per parameter and objective, e.g. NAME-ID-observations"
)


@dataclass(frozen=True)
class WarmStart:
    """Observations a campaign begins from.

    Attributes:
        ref: The dataset version, ``name@version``.
        observations: Usable rows, in the dataset's order.
        skipped: Rows outside the space or without a value for every metric.
    """

    ref: str
    observations: tuple[Observation, ...]
    skipped: int


def pin_warm_start(spec: CampaignSpec, datasets: DatasetService) -> CampaignSpec:
    """The spec with ``warm_start`` pinned to a version (``name`` becomes ``name@latest``).

    Raises:
        CampaignSpecError: on ``warm_start`` when the dataset is missing or lacks a column.
    """
    if spec.warm_start is None:
        return spec
    pinned = spec.model_copy(update={"warm_start": _resolve(spec.warm_start, datasets)})
    load_warm_start(pinned, datasets)  # checks the columns now rather than at the first run
    return pinned


def load_warm_start(spec: CampaignSpec, datasets: DatasetService) -> WarmStart | None:
    """Read the observations of the spec's ``warm_start`` dataset version, or None.

    Raises:
        CampaignSpecError: on ``warm_start`` when the dataset is missing, has no table, or
            lacks a column for a parameter or metric.
    """
    if spec.warm_start is None:
        return None
    try:
        table = datasets.read_table(spec.warm_start)
    except (NotFound, InvalidInput) as exc:
        raise CampaignSpecError("warm_start", str(exc), _FIX) from None
    space = spec.build_space()
    metrics = spec.metric_names()
    for name in [*space, *metrics]:
        if name not in table.column_names:
            raise CampaignSpecError("warm_start", f"{spec.warm_start} has no column {name!r}", _FIX)
    observations, skipped = [], 0
    for row in table.select([*space, *metrics]).to_pylist():
        observation = _observation(row, space, metrics)
        if observation is None:
            skipped += 1
        else:
            observations.append(observation)
    return WarmStart(spec.warm_start, tuple(observations), skipped)


def _resolve(ref: str, datasets: DatasetService) -> str:
    try:
        info = datasets.get(ref)
    except (NotFound, InvalidInput) as exc:
        raise CampaignSpecError(
            "warm_start", str(exc), "name an existing dataset version"
        ) from None
    return format_ref(info.name, info.version)


def _observation(row: dict[str, Any], space: Space, metrics: list[str]) -> Observation | None:
    params: dict[str, Any] = {}
    for name, spec in space.items():
        value = row[name]
        if isinstance(spec, Int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        params[name] = value
    try:
        params = space.validate(params)
    except InvalidInput:
        return None
    values: dict[str, float] = {}
    for name in metrics:
        value = row[name]
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        values[name] = float(value)
    return Observation(params, values)
