"""The campaign file: a YAML document validated into :class:`CampaignSpec`.

::

    name: electrolyte-quickstart
    space:
      salt_molality: {type: real, low: 0.1, high: 3.0}        # log: true for a log scale
      temperature_c: {type: int, low: 10, high: 60}
      solvent: {type: choice, values: [EC-DMC, EC-EMC, PC]}
    objectives: {conductivity: max}          # name: max | min
    planner: gp                              # or {kind: gp, options: {...}}; random, sobol
    runner: {station: electrolyte}           # a built-in simulated station (options: {...}), or
    # runner: {site: local, function: "package.module:function"}
    budget: {trials: 30, parallel: 2}        # also wall: 2h, retries: 1, core_hours: 10
    stop: {target: 12.0, no_improvement: 15} # optional stopping rules
    snapshot_every: 10                       # dataset version + surrogate every K trials
    seed: 7

Validation errors are :class:`~genesis_platform.errors.CampaignSpecError` naming the field
(``space.temperature_c.low``) and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genesis_platform.errors import CampaignSpecError, InvalidInput
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

__all__ = [
    "Budget",
    "CampaignSpec",
    "PlannerSpec",
    "RunnerSpec",
    "StopSpec",
    "load_spec",
    "on_site",
    "on_station",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | float | int, field: str = "budget.wall") -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or a plain number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise CampaignSpecError(field, f"{value!r} is not a duration", "e.g. 90s, 10m, 2h")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds <= 0:
        raise CampaignSpecError(field, "must be positive", "e.g. 2h")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlannerSpec(_Strict):
    """Which planner proposes: a short name or ``package.module:Class``, and its options."""

    kind: str = "gp"
    options: dict[str, Any] = Field(default_factory=dict)


class RunnerSpec(_Strict):
    """Where trials run: a lab station, or a function on a compute site."""

    station: str | None = None
    site: str | None = None
    function: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> RunnerSpec:
        if (self.station is None) == (self.site is None):
            raise ValueError("give either station: NAME or site: NAME with function: pkg.mod:fn")
        if self.site is not None and not self.function:
            raise ValueError("a site runner needs function: package.module:function")
        if self.station is not None and self.function:
            raise ValueError("a station runner takes no function")
        return self


class Budget(_Strict):
    """How much a campaign may use.

    Attributes:
        trials: Trials to run (each retried up to ``retries`` times on failure).
        parallel: Trials in flight at once.
        wall: Wall-time limit (``"2h"``, ``"90m"``, seconds), summed over resumes.
        retries: Extra attempts of a failed trial before it counts as failed.
        core_hours: Core-hours of compute the trials may use (site runners).
    """

    trials: int = Field(30, ge=1, le=1_000_000)
    parallel: int = Field(1, ge=1, le=10_000)
    wall: str | float | None = None
    retries: int = Field(1, ge=0, le=100)
    core_hours: float | None = Field(None, gt=0)

    @field_validator("wall")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def wall_seconds(self) -> float | None:
        """The wall limit in seconds, or None."""
        return None if self.wall is None else parse_duration(self.wall)


class StopSpec(_Strict):
    """Stopping rules: reach a target value of the first objective, or stall for K trials."""

    target: float | None = None
    no_improvement: int | None = Field(None, ge=1)


class CampaignSpec(_Strict):
    """A whole campaign, as written in its YAML file."""

    name: str = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    space: dict[str, dict[str, Any]]
    objectives: dict[str, Literal["max", "min"]] = Field(min_length=1)
    planner: PlannerSpec = Field(default_factory=PlannerSpec)
    runner: RunnerSpec
    budget: Budget = Field(default_factory=Budget)
    stop: StopSpec = Field(default_factory=StopSpec)
    snapshot_every: int = Field(10, ge=1)
    seed: int = 0

    @field_validator("planner", mode="before")
    @classmethod
    def _planner_short_form(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def build_space(self) -> Space:
        """The search space of this campaign."""
        return build_space(self.space)

    @classmethod
    def from_yaml(cls, text: str, source: str = "campaign file") -> CampaignSpec:
        """Parse and validate YAML text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CampaignSpecError(source, f"is not valid YAML: {exc}", "fix the syntax") from exc
        if not isinstance(data, dict):
            raise CampaignSpecError(source, "must be a mapping of keys", "start with name: ...")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CampaignSpec:
        """Validate a mapping (as read from YAML or built in Python)."""
        try:
            spec = cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _translate(exc) from None
        spec.build_space()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML form, which :meth:`from_dict` reads back unchanged."""
        return self.model_dump(mode="json")


def load_spec(path: str | Path) -> CampaignSpec:
    """Read a campaign file.

    Raises:
        CampaignSpecError: the file is missing or does not validate.
    """
    file = Path(path)
    if not file.is_file():
        raise CampaignSpecError("file", f"{path} does not exist", "check the path")
    return CampaignSpec.from_yaml(file.read_text(), source=str(path))


def on_station(name: str, **options: Any) -> RunnerSpec:
    """Run trials as operations on lab station ``name``."""
    return RunnerSpec(station=name, options=options)


def on_site(site: str, function: str, **options: Any) -> RunnerSpec:
    """Run trials as calls of ``function`` (``"package.module:function"``) on ``site``."""
    return RunnerSpec(site=site, function=function, options=options)


def build_space(space: Mapping[str, Any]) -> Space:
    """Build a :class:`Space` from its campaign-file form (or Real/Int/Choice objects)."""
    if not isinstance(space, Mapping) or not space:
        raise CampaignSpecError("space", "no parameters", "e.g. space: {x: {type: real, ...}}")
    return Space({name: _parameter(name, spec) for name, spec in space.items()})


def space_to_dict(space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The campaign-file form of a space given as definitions or dicts."""
    return {
        name: spec.to_dict() if isinstance(spec, Real | Int | Choice) else dict(spec)
        for name, spec in space.items()
    }


_TYPES: dict[str, tuple[type[Real] | type[Int] | type[Choice], set[str]]] = {
    "real": (Real, {"low", "high", "log"}),
    "int": (Int, {"low", "high", "log"}),
    "choice": (Choice, {"values"}),
}


def _parameter(name: str, spec: Any) -> Parameter:
    where = f"space.{name}"
    if isinstance(spec, Real | Int | Choice):
        return spec
    if not isinstance(spec, Mapping):
        raise CampaignSpecError(where, "must be a mapping", "e.g. {type: real, low: 0, high: 1}")
    kind = spec.get("type")
    if kind not in _TYPES:
        raise CampaignSpecError(
            f"{where}.type", f"unknown parameter type {kind!r}", "use real, int or choice"
        )
    cls, allowed = _TYPES[kind]
    extra = set(spec) - allowed - {"type", "unit"}
    if extra:
        raise CampaignSpecError(
            f"{where}.{sorted(extra)[0]}", "unknown key", f"a {kind} takes {sorted(allowed)}"
        )
    missing = allowed - {"log"} - set(spec)
    if missing:
        raise CampaignSpecError(f"{where}.{sorted(missing)[0]}", "missing", f"a {kind} needs it")
    try:
        return cls(**{k: v for k, v in spec.items() if k in allowed})
    except InvalidInput as exc:
        raise CampaignSpecError(f"{where}.{exc.field}", exc.problem, exc.fix) from None


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or check its spelling",
    "literal_error": "",
    "greater_than_equal": "",
}


def _translate(exc: ValidationError) -> CampaignSpecError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
    field = ".".join(loc) or "campaign"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing" and field == "objectives":
        return CampaignSpecError(field, "missing", "e.g. objectives: {conductivity: max}")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return CampaignSpecError(field, message, _FIXES.get(error["type"], ""))
