"""The campaign file: a YAML document validated into :class:`CampaignSpec`.

::

    name: electrolyte-quickstart
    project: battery-lab                     # optional; recorded on the campaign
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

Optional keys of the planner issue::

    constraints: ["salt_molality * temperature_c <= 120"]   # every proposal satisfies them
    outcome_constraints: ["viscosity <= 5"]   # measured values; the runner must report them
    objectives: {conductivity: max, cost: min}              # two or three objectives ...
    reference_point: {conductivity: 5, cost: 40}            # ... measured from this point
    warm_start: electrolyte-1-observations@2  # begin from a dataset version's observations
    fidelities:                               # instead of runner: a cheap and a costly level
      simulation: {cost: 1, runner: {site: local, function: "package.module:function"}}
      robot: {cost: 20, runner: {station: electrolyte}}
    target_fidelity: robot                    # optional; the costliest level by default
    budget: {cost: 400}                       # optional: stop when the trials' costs reach it

With ``fidelities``, every trial gets a ``fidelity`` parameter (one of the levels) that
selects its runner; the best value reported is the best at the target fidelity.

Validation errors are :class:`~genesis_platform.errors.CampaignSpecError` naming the field
(``space.temperature_c.low``) and the fix, whether the spec comes from a file, a mapping, or
the models built directly in Python (``Budget(trials=0)`` fails on ``budget.trials``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from genesis_platform.data.refs import parse_ref
from genesis_platform.errors import CampaignSpecError, InvalidInput
from genesis_platform.planning.constraints import OutcomeConstraint, parse_outcome_constraint
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

__all__ = [
    "FIDELITY",
    "Budget",
    "CampaignSpec",
    "FidelitySpec",
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
_MAX_DURATION_S = 3650 * 86400.0  # ten years: far beyond any campaign, well within timeouts
_DURATION_FIX = "write a positive number of seconds or a string like 90s, 10m, 2h or 1d"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_NAME = 150
_MAX_WORKERS = 10_000
_RESERVED = "trial"  # the observation table's trial-number column

# One example per field, shown as the fix when a value does not validate.
_EXAMPLES = {
    "name": "e.g. name: electrolyte-screen",
    "description": "e.g. description: Find the most conductive electrolyte",
    "project": "e.g. project: battery-lab",
    "space": "e.g. space: {x: {type: real, low: 0, high: 1}}",
    "objectives": "e.g. objectives: {conductivity: max}",
    "planner": "e.g. planner: gp or planner: {kind: gp, options: {n_initial: 8}}",
    "planner.kind": "e.g. planner: {kind: gp}; built-ins are gp, random and sobol",
    "planner.options": "e.g. planner: {kind: gp, options: {n_initial: 8}}",
    "runner": "e.g. runner: {station: electrolyte} or {site: local, function: pkg.mod:fn}",
    "runner.station": "e.g. runner: {station: electrolyte}",
    "runner.site": "e.g. runner: {site: local, function: pkg.mod:fn}",
    "runner.function": "e.g. runner: {site: local, function: pkg.mod:fn}",
    "runner.options": "e.g. runner: {station: electrolyte, options: {latency_s: 0}}",
    "budget": "e.g. budget: {trials: 30, parallel: 2, wall: 2h}",
    "budget.trials": "e.g. budget: {trials: 30}",
    "budget.parallel": "e.g. budget: {parallel: 2}",
    "budget.wall": _DURATION_FIX,
    "budget.retries": "e.g. budget: {retries: 1}",
    "budget.core_hours": "e.g. budget: {core_hours: 10}",
    "stop": "e.g. stop: {target: 12.0, no_improvement: 15}",
    "stop.target": "e.g. stop: {target: 12.0}",
    "stop.no_improvement": "e.g. stop: {no_improvement: 15}",
    "snapshot_every": "e.g. snapshot_every: 10",
    "seed": "e.g. seed: 7",
    "constraints": 'e.g. constraints: ["x_salt * T <= 120", "a + b + c == 1"]',
    "outcome_constraints": 'e.g. outcome_constraints: ["purity >= 0.95"]',
    "reference_point": "e.g. reference_point: {yield: 0.2, cost: 50}",
    "warm_start": "e.g. warm_start: electrolyte-1-observations@2",
    "fidelities": "e.g. fidelities: {simulation: {cost: 1, runner: {...}}, robot: {cost: 20, ...}}",
    "target_fidelity": "e.g. target_fidelity: robot",
    "budget.cost": "e.g. budget: {cost: 400}",
}

FIDELITY = "fidelity"
"""The parameter that holds a multi-fidelity trial's fidelity."""


def parse_duration(value: str | float | int, field: str = "budget.wall") -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or a plain number of seconds.

    Raises:
        CampaignSpecError: on ``field`` for anything else, including booleans, NaN, infinity,
            zero, negative numbers and durations beyond ten years.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CampaignSpecError(field, f"{value!r} is not a duration", _DURATION_FIX)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise CampaignSpecError(field, f"{value!r} is not a duration", _DURATION_FIX)
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond the range of floats
            seconds = math.inf
    if not math.isfinite(seconds):
        raise CampaignSpecError(field, f"{value!r} is not a finite duration", _DURATION_FIX)
    if seconds <= 0:
        raise CampaignSpecError(field, f"must be positive, got {value!r}", _DURATION_FIX)
    if seconds > _MAX_DURATION_S:
        raise CampaignSpecError(field, f"{value!r} is longer than ten years", "e.g. 30d")
    return seconds


class _Strict(BaseModel):
    """A part of the campaign file: unknown keys are errors and instances are immutable.

    Building one directly (``Budget(trials=0)``) raises :class:`CampaignSpecError` on the
    same dotted field a campaign file would report (``budget.trials``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    _section: ClassVar[str] = ""  # where the model sits in the campaign file

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _translate(exc, type(self)._section) from None


class PlannerSpec(_Strict):
    """Which planner proposes: a short name or ``package.module:Class``, and its options."""

    _section: ClassVar[str] = "planner"

    kind: str = Field("gp", min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class RunnerSpec(_Strict):
    """Where trials run: a lab station, or a function on one or more compute sites.

    ``site`` is a site name or a list of them: the trials then spread over the sites, each
    going to the site with the most free slots. A site runner's ``options.max_workers``, if
    given, caps the trials in flight (a whole number from 1 to 10,000; default
    ``budget.parallel``).

    A station runner's ``priority`` orders its operations in the queue of a station shared
    with other campaigns (higher first; default 0).
    """

    _section: ClassVar[str] = "runner"

    station: str | None = None
    site: str | list[str] | None = None
    function: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000, strict=True)

    @model_validator(mode="after")
    def _one_target(self) -> RunnerSpec:
        if (self.station is None) == (self.site is None):
            raise CampaignSpecError(
                "runner", "give either station: NAME or site: NAME", _EXAMPLES["runner"]
            )
        if self.site is not None and not self.function:
            raise CampaignSpecError(
                "runner.function", "a site runner needs a function", _EXAMPLES["runner.function"]
            )
        if self.station is not None and self.function:
            raise CampaignSpecError(
                "runner.function", "a station runner takes no function", "remove it"
            )
        if isinstance(self.site, list) and (not self.site or len(set(self.site)) < len(self.site)):
            raise CampaignSpecError(
                "runner.site", "give one or more different sites", "e.g. site: [local, hpc]"
            )
        if self.site is not None and "max_workers" in self.options:
            workers = self.options["max_workers"]
            if not _whole(workers, 1, _MAX_WORKERS):
                raise CampaignSpecError(
                    "runner.options.max_workers",
                    f"must be a whole number from 1 to {_MAX_WORKERS}, got {workers!r}",
                    "e.g. options: {max_workers: 4}",
                )
        return self


class Budget(_Strict):
    """How much a campaign may use.

    Attributes:
        trials: Trials to run (each retried up to ``retries`` times on failure).
        parallel: Trials in flight at once.
        wall: Wall-time limit (``"2h"``, ``"90m"``, seconds; positive, at most ten years),
            summed over resumes.
        retries: Extra attempts of a failed trial before it counts as failed.
        core_hours: Core-hours of compute the trials may use (site runners).
    """

    _section: ClassVar[str] = "budget"

    trials: int = Field(30, ge=1, le=1_000_000, strict=True)
    parallel: int = Field(1, ge=1, le=10_000, strict=True)
    wall: str | float | None = None
    retries: int = Field(1, ge=0, le=100, strict=True)
    core_hours: float | None = Field(None, gt=0, strict=True, allow_inf_nan=False)
    cost: float | None = Field(None, gt=0, strict=True, allow_inf_nan=False)

    @field_validator("wall", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def wall_seconds(self) -> float | None:
        """The wall limit in seconds, or None."""
        return None if self.wall is None else parse_duration(self.wall)


class FidelitySpec(_Strict):
    """One fidelity of a multi-fidelity campaign: what a trial costs and where it runs."""

    _section: ClassVar[str] = "fidelities"

    cost: float = Field(gt=0, strict=True, allow_inf_nan=False)
    runner: RunnerSpec


class StopSpec(_Strict):
    """Stopping rules: reach a target value of the first objective, or stall for K trials."""

    _section: ClassVar[str] = "stop"

    target: float | None = Field(None, strict=True, allow_inf_nan=False)
    no_improvement: int | None = Field(None, ge=1, strict=True)


class CampaignSpec(_Strict):
    """A whole campaign, as written in its YAML file.

    ``project`` is recorded with the campaign for governance; nothing enforces it yet.
    """

    name: str
    description: str = ""
    project: str | None = None
    space: dict[str, dict[str, Any]]
    objectives: dict[str, Literal["max", "min"]]
    planner: PlannerSpec = Field(default_factory=PlannerSpec)
    runner: RunnerSpec | None = None
    budget: Budget = Field(default_factory=Budget)
    stop: StopSpec = Field(default_factory=StopSpec)
    snapshot_every: int = Field(10, ge=1, strict=True)
    seed: int = Field(0, strict=True)
    constraints: list[str] = Field(default_factory=list)
    outcome_constraints: list[str] = Field(default_factory=list)
    reference_point: dict[str, float] | None = None
    warm_start: str | None = None
    fidelities: dict[str, FidelitySpec] | None = None
    target_fidelity: str | None = None

    @field_validator("name", "project", mode="before")
    @classmethod
    def _name(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "project" and value is None:
            return value
        _check_name(value, str(info.field_name))
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, value: Any) -> Any:
        build_space(value)
        return space_to_dict(value)

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, value: Any) -> Any:
        example = _EXAMPLES["objectives"]
        if not isinstance(value, Mapping):
            raise CampaignSpecError(
                "objectives", "must be a mapping of names to max or min", example
            )
        if not value:
            raise CampaignSpecError("objectives", "no objectives", example)
        for name, direction in value.items():
            where = f"objectives.{name}"
            if not isinstance(name, str) or not name.strip():
                raise CampaignSpecError(where, "objective names must be non-empty text", example)
            if name == _RESERVED:
                raise CampaignSpecError(
                    where,
                    f"{name!r} is reserved for the observations' trial number",
                    "rename the objective, e.g. trial_yield",
                )
            if direction not in ("max", "min"):
                raise CampaignSpecError(
                    where, f"{direction!r} is not a direction", f"use max or min, {example}"
                )
        return value

    @field_validator("planner", "runner", "budget", "stop", mode="before")
    @classmethod
    def _section_is_a_mapping(cls, value: Any, info: ValidationInfo) -> Any:
        field = str(info.field_name)
        if field == "planner" and isinstance(value, str):
            return {"kind": value}
        if field == "runner" and value is None:
            return value
        if isinstance(value, Mapping | _Strict):
            return value
        problem = (
            "must be a planner name or a mapping" if field == "planner" else "must be a mapping"
        )
        raise CampaignSpecError(field, problem, _EXAMPLES[field])

    @field_validator("fidelities", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        """Validate each level here so that errors name it (``fidelities.robot.cost``)."""
        if value is None:
            return value
        if not isinstance(value, Mapping):
            raise CampaignSpecError(
                "fidelities", "must be a mapping of levels", _EXAMPLES["fidelities"]
            )
        levels = {}
        for level, data in value.items():
            if isinstance(data, FidelitySpec):
                levels[level] = data
                continue
            if not isinstance(data, Mapping):
                raise CampaignSpecError(
                    f"fidelities.{level}", "must be a mapping", "e.g. {cost: 1, runner: {...}}"
                )
            try:
                levels[level] = FidelitySpec(**data)
            except CampaignSpecError as exc:
                field = exc.field.removeprefix("fidelities").lstrip(".")
                raise CampaignSpecError(
                    f"fidelities.{level}.{field}", exc.problem, exc.fix
                ) from None
        return levels

    @field_validator("warm_start", mode="before")
    @classmethod
    def _warm_start(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str):
            raise CampaignSpecError(
                "warm_start", f"{value!r} is not a dataset reference", _EXAMPLES["warm_start"]
            )
        try:
            name, _ = parse_ref(value, "warm_start")
        except InvalidInput as exc:
            raise CampaignSpecError(exc.field, exc.problem, exc.fix) from None
        _check_name(name, "warm_start")
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> CampaignSpec:
        for name in self.space:
            if name in self.objectives:
                raise CampaignSpecError(
                    f"space.{name}",
                    f"{name!r} is both a parameter and an objective",
                    "rename one of them: each is its own column of the observations",
                )
        return self

    @model_validator(mode="after")
    def _runner_or_fidelities(self) -> CampaignSpec:
        if (self.runner is None) == (self.fidelities is None):
            raise CampaignSpecError(
                "runner",
                "give either runner: or fidelities: (one runner per fidelity)",
                _EXAMPLES["runner"],
            )
        if self.fidelities is None:
            if self.target_fidelity is not None:
                raise CampaignSpecError("target_fidelity", "needs fidelities:", "remove it")
            if self.budget.cost is not None:
                raise CampaignSpecError(
                    "budget.cost", "a cost budget needs fidelities: with costs", "use trials:"
                )
            return self
        if len(self.fidelities) < 2:
            raise CampaignSpecError(
                "fidelities", "give two or more fidelities", _EXAMPLES["fidelities"]
            )
        for name in self.fidelities:
            _check_name(name, "fidelities")
        if FIDELITY in self.space:
            raise CampaignSpecError(
                f"space.{FIDELITY}",
                f"{FIDELITY!r} is the fidelity parameter of a multi-fidelity campaign",
                "rename the parameter",
            )
        if len(self.objectives) > 1:
            raise CampaignSpecError(
                "fidelities", "several fidelities work with one objective", "keep one objective"
            )
        if self.target_fidelity is not None and self.target_fidelity not in self.fidelities:
            raise CampaignSpecError(
                "target_fidelity",
                f"{self.target_fidelity!r} is not one of the fidelities",
                f"one of {sorted(self.fidelities)}",
            )
        return self

    @property
    def target(self) -> str | None:
        """The fidelity whose results count (the costliest unless ``target_fidelity``)."""
        if self.fidelities is None:
            return None
        if self.target_fidelity is not None:
            return self.target_fidelity
        return max(self.fidelities, key=lambda name: self.fidelities[name].cost)  # type: ignore[index]

    def fidelity_costs(self) -> dict[str, float]:
        """Cost of one trial at each fidelity (empty without fidelities)."""
        return {name: f.cost for name, f in (self.fidelities or {}).items()}

    def runners(self) -> dict[str | None, RunnerSpec]:
        """Runner per fidelity; ``{None: runner}`` without fidelities."""
        if self.fidelities is None:
            assert self.runner is not None
            return {None: self.runner}
        return {name: f.runner for name, f in self.fidelities.items()}

    @model_validator(mode="after")
    def _constraints(self) -> CampaignSpec:
        self.build_space()
        for i, constraint in enumerate(self.parsed_outcome_constraints()):
            if constraint.metric in self.space:
                raise CampaignSpecError(
                    f"outcome_constraints[{i}]",
                    f"{constraint.metric!r} is a parameter, not a measured value",
                    "bound parameters under constraints:, measured values here",
                )
        if self.reference_point is not None:
            for name, value in self.reference_point.items():
                if not math.isfinite(value):
                    raise CampaignSpecError(
                        f"reference_point.{name}",
                        f"{value!r} is not a finite number",
                        _EXAMPLES["reference_point"],
                    )
            if len(self.objectives) < 2:
                raise CampaignSpecError(
                    "reference_point", "needs two or more objectives", "remove it"
                )
            if set(self.reference_point) != set(self.objectives):
                raise CampaignSpecError(
                    "reference_point",
                    f"must give a value for exactly {sorted(self.objectives)}",
                    _EXAMPLES["reference_point"],
                )
        return self

    def parsed_outcome_constraints(self) -> list[OutcomeConstraint]:
        """The outcome constraints, parsed."""
        try:
            return [
                parse_outcome_constraint(text, f"outcome_constraints[{i}]")
                for i, text in enumerate(self.outcome_constraints)
            ]
        except InvalidInput as exc:
            raise CampaignSpecError(exc.field, exc.problem, exc.fix) from None

    def metric_names(self) -> list[str]:
        """Objectives, then the constrained metrics: what every successful trial reports."""
        names = list(self.objectives)
        for constraint in self.parsed_outcome_constraints():
            if constraint.metric not in names:
                names.append(constraint.metric)
        return names

    def planner_options(self) -> dict[str, Any]:
        """The planner's options, with the campaign's outcome constraints and reference point."""
        options = dict(self.planner.options)
        if self.outcome_constraints:
            options["outcome_constraints"] = list(self.outcome_constraints)
        if self.reference_point is not None:
            options["reference_point"] = dict(self.reference_point)
        if self.fidelities is not None:
            options["fidelity"] = {
                "parameter": FIDELITY,
                "costs": self.fidelity_costs(),
                "target": self.target,
            }
        return options

    def build_space(self) -> Space:
        """The search space of this campaign, with its parameter constraints."""
        space = build_space(self.space)
        params = dict(space)
        if self.fidelities is not None:
            params[FIDELITY] = Choice(list(self.fidelities))
        if not self.constraints and self.fidelities is None:
            return space
        try:
            return Space(params, constraints=self.constraints)
        except InvalidInput as exc:
            raise CampaignSpecError(exc.field, exc.problem, exc.fix) from None

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
        if not isinstance(data, Mapping):
            raise CampaignSpecError("campaign", "must be a mapping of keys", "start with name: ...")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _translate(exc) from None

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


def on_site(site: str | Sequence[str], function: str, **options: Any) -> RunnerSpec:
    """Run trials as calls of ``function`` (``"package.module:function"``) on ``site``.

    Give several sites to spread the trials over them, filling their free slots.
    """
    sites = site if isinstance(site, str) else list(site)
    return RunnerSpec(site=sites, function=function, options=options)


def build_space(space: Mapping[str, Any]) -> Space:
    """Build a :class:`Space` from its campaign-file form (or Real/Int/Choice objects).

    Raises:
        CampaignSpecError: naming the first bad parameter (``space.<name>...``).
    """
    example = _EXAMPLES["space"]
    if not isinstance(space, Mapping):
        raise CampaignSpecError("space", "must be a mapping of names to parameters", example)
    if not space:
        raise CampaignSpecError("space", "no parameters", example)
    params: dict[str, Parameter] = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise CampaignSpecError(
                f"space.{name}",
                "parameter names must be identifiers",
                "use letters, digits and _, not starting with a digit, e.g. salt_molality",
            )
        if name == _RESERVED:
            raise CampaignSpecError(
                f"space.{name}",
                f"{name!r} is reserved for the observations' trial number",
                "rename the parameter, e.g. trial_index",
            )
        params[name] = _parameter(name, spec)
    try:
        return Space(params)
    except InvalidInput as exc:
        raise CampaignSpecError(exc.field, exc.problem, exc.fix) from None


def space_to_dict(space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The campaign-file form of a space given as definitions or dicts."""
    return {
        name: spec.to_dict() if isinstance(spec, Real | Int | Choice) else dict(spec)
        for name, spec in space.items()
    }


_TYPES: dict[str, tuple[type[Real] | type[Int] | type[Choice], tuple[str, ...]]] = {
    "real": (Real, ("low", "high", "log")),
    "int": (Int, ("low", "high", "log")),
    "choice": (Choice, ("values",)),
}


def _parameter(name: str, spec: Any) -> Parameter:
    where = f"space.{name}"
    if isinstance(spec, Real | Int | Choice):
        return spec
    if not isinstance(spec, Mapping):
        raise CampaignSpecError(where, "must be a mapping", "e.g. {type: real, low: 0, high: 1}")
    kind = spec.get("type")
    if kind is None:
        raise CampaignSpecError(f"{where}.type", "missing", "add type: real, int or choice")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise CampaignSpecError(
            f"{where}.type", f"unknown parameter type {kind!r}", "use real, int or choice"
        )
    cls, allowed = _TYPES[kind]
    for key in spec:
        if key not in (*allowed, "type", "unit"):
            raise CampaignSpecError(
                f"{where}.{key}", "unknown key", f"a {kind} takes {', '.join(allowed)} and unit"
            )
    for key in allowed:
        if key not in spec and key != "log":
            raise CampaignSpecError(f"{where}.{key}", "missing", f"a {kind} needs {key}")
    unit = spec.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise CampaignSpecError(f"{where}.unit", f"{unit!r} is not text", "e.g. unit: mol/kg")
    try:
        return cls(**{k: v for k, v in spec.items() if k in allowed})
    except InvalidInput as exc:
        raise CampaignSpecError(f"{where}.{exc.field}", exc.problem, exc.fix) from None


def _check_name(value: Any, field: str) -> None:
    example = _EXAMPLES[field]
    if not isinstance(value, str):
        raise CampaignSpecError(field, f"{value!r} is not text", example)
    if not value:
        raise CampaignSpecError(field, "must not be empty", example)
    if len(value) > _MAX_NAME:
        raise CampaignSpecError(field, f"is longer than {_MAX_NAME} characters", "shorten it")
    if not _NAME.fullmatch(value):
        allowed = "use only letters, digits, _, . and -, starting with a letter or digit, "
        if not (value[0].isascii() and value[0].isalnum()):
            raise CampaignSpecError(field, f"{value!r} starts with {value[0]!r}", allowed + example)
        bad = next(c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-")))
        raise CampaignSpecError(field, f"{value!r} contains {bad!r}", allowed + example)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# What a pydantic error type means, in the words of a campaign file.
_PROBLEMS = {
    "int_type": "{input!r} is not a whole number",
    "float_type": "{input!r} is not a number",
    "float_parsing": "{input!r} is not a number",
    "list_type": "must be a list",
    "finite_number": "{input!r} is not a finite number",
    "string_type": "{input!r} is not text",
    "bool_type": "{input!r} is not true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "greater_than_equal": "{input!r} is below the minimum, {ge}",
    "greater_than": "{input!r} must be above {gt}",
    "less_than_equal": "{input!r} is above the maximum, {le}",
    "string_too_short": "must not be empty",
    "missing": "missing",
    "extra_forbidden": "unknown key",
}


def _translate(exc: ValidationError, section: str = "") -> CampaignSpecError:
    """The first error of ``exc`` as a :class:`CampaignSpecError` on its dotted field.

    Args:
        exc: Pydantic's error.
        section: Where the validated model sits in a campaign file (``budget``), or ``""``.
    """
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidInput):  # our own validators name the whole field already
        return CampaignSpecError(cause.field, cause.problem, cause.fix)
    loc = [section] if section else []
    loc += [str(part) for part in error["loc"] if not str(part).startswith("function-")]
    if "[key]" in loc:
        field = ".".join(loc[: loc.index("[key]")])
        return CampaignSpecError(field, "names must be text", "quote the name")
    field = ".".join(loc) or "campaign"
    kind = error["type"]
    template = _PROBLEMS.get(kind)
    if template is None:
        problem = error["msg"].removeprefix("Value error, ")
    else:
        problem = template.format_map({"input": error.get("input"), **error.get("ctx", {})})
    if kind == "extra_forbidden":
        parent = ".".join(loc[:-1])
        keys = ", ".join(_SECTIONS[parent].model_fields) if parent in _SECTIONS else ""
        where = parent or "a campaign"
        fix = "remove it or check its spelling" + (f"; {where} takes {keys}" if keys else "")
        return CampaignSpecError(field, problem, fix)
    example = _example(loc)
    fix = f"add it, {example}" if kind == "missing" else example
    return CampaignSpecError(field, problem, fix)


def _example(loc: list[str]) -> str:
    for end in range(len(loc), 0, -1):
        example = _EXAMPLES.get(".".join(loc[:end]))
        if example:
            return example
    return "see the campaign file format in the genesis_platform.campaigns.spec docs"


_SECTIONS: dict[str, type[_Strict]] = {
    "": CampaignSpec,
    "planner": PlannerSpec,
    "runner": RunnerSpec,
    "budget": Budget,
    "stop": StopSpec,
    "fidelities": FidelitySpec,
}
