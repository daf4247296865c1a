"""Trial runners: how a campaign turns a point into a measurement.

A runner adapts a lab :class:`~genesis_platform.labs.protocols.Station` or the compute
sites (through the platform's task service) to the loop. Its external ids are
chosen *before* dispatch (from the trial id and attempt), so the engine can store them
first and a restarted platform knows what was in flight.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from genesis_platform.campaigns.spec import FIDELITY, CampaignSpec, RunnerSpec
from genesis_platform.compute.local import resolve_function
from genesis_platform.compute.protocols import TaskResult, TaskSpec, then
from genesis_platform.compute.tasks import TaskService
from genesis_platform.errors import CampaignSpecError, InvalidInput, NotFound, TaskFailed
from genesis_platform.labs.protocols import Measurement, Operation, Station
from genesis_platform.labs.registry import open_station
from genesis_platform.labs.service import StationService
from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "FidelityRunner",
    "Outcome",
    "SiteRunner",
    "StationRunner",
    "TrialRunner",
    "make_runner",
]


@dataclass(frozen=True)
class Outcome:
    """A finished trial: measured values and the resources it used."""

    values: Mapping[str, float]
    usage: Mapping[str, float] = field(default_factory=dict)


class TrialRunner(Protocol):
    """What the campaign engine needs of a place that runs trials."""

    label: str

    def slots(self) -> int:
        """How many trials may run at once."""
        ...

    def external_id(self, trial_id: int, attempt: int) -> str:
        """The id under which attempt ``attempt`` of trial ``trial_id`` is dispatched."""
        ...

    def start(self, external_id: str, params: Mapping[str, ParamValue]) -> Future[Outcome]:
        """Dispatch one attempt; the future resolves to its outcome."""
        ...

    def reattach(self, external_id: str) -> Future[Outcome] | None:
        """The future of an attempt dispatched by an earlier process, or None if lost."""
        ...

    def close(self, abort: bool = False) -> None:
        """Release the station or executor; with ``abort``, stop what is in flight first."""
        ...


class _InProcessRunner:
    """What both built-in runners share: label, slots, ids, and no re-attachment."""

    def __init__(self, label: str, slots: int) -> None:
        self.label = label
        self._slots = slots

    def slots(self) -> int:
        """Trials the campaign runs at once."""
        return self._slots

    def external_id(self, trial_id: int, attempt: int) -> str:
        """``KIND:NAME:trial-ID.ATTEMPT``."""
        return f"{self.label}:trial-{trial_id}.{attempt}"

    def reattach(self, external_id: str) -> Future[Outcome] | None:
        """In-process runners cannot re-attach: what was in flight died with the process."""
        return None


class StationRunner(_InProcessRunner):
    """Runs trials as operations on a lab station."""

    def __init__(self, name: str, station: Station, slots: int) -> None:
        super().__init__(f"station:{name}", slots)
        self._station = station

    def start(self, external_id: str, params: Mapping[str, ParamValue]) -> Future[Outcome]:
        """Send the operation to the station."""
        return then(self._station.run(Operation(external_id, dict(params))), _from_measurement)

    def close(self, abort: bool = False) -> None:
        """Release the station, aborting its operations first if asked."""
        if abort:
            self._station.abort()
        self._station.close()


class SiteRunner(_InProcessRunner):
    """Runs trials as calls of a Python function on one or more compute sites.

    Every call is a task of the platform's task service, so it is recorded with the
    campaign's project, and a restarted campaign finds it again by its external id: a
    finished task's result is taken from its record, a running one is re-attached where the
    site can (a batch job), and the rest are lost. With several sites, each trial goes to
    the site with the most free slots (ties: the one with the fewest of this campaign's
    trials, then the order given).
    """

    def __init__(
        self, sites: Sequence[str], function: str, tasks: TaskService, slots: int, project: str
    ) -> None:
        super().__init__(f"site:{'+'.join(sites)}", slots)
        self._sites = list(sites)
        self._function = function
        self._tasks = tasks
        self._project = project
        self._inflight: dict[Future[Outcome], str] = {}
        self._lock = threading.Lock()

    def start(self, external_id: str, params: Mapping[str, ParamValue]) -> Future[Outcome]:
        """Submit the function call to the site with the most free slots."""
        site = self._choose_site()
        task = TaskSpec(function=self._function, kwargs=dict(params), name=external_id)
        future = then(self._tasks.run(site, task, project=self._project), _from_task_result)
        with self._lock:
            self._inflight[future] = site
        future.add_done_callback(self._forget)
        return future

    def reattach(self, external_id: str) -> Future[Outcome] | None:
        """The trial's task, found by its external id (None when it was lost)."""
        found = self._tasks.follow(external_id)
        return None if found is None else then(found, _from_task_result)

    def close(self, abort: bool = False) -> None:
        """With ``abort``, cancel the trials' tasks still in flight (the sites stay open)."""
        if not abort:
            return
        with self._lock:
            futures = list(self._inflight)
        for future in futures:
            future.cancel()

    def _choose_site(self) -> str:
        if len(self._sites) == 1:
            return self._sites[0]
        with self._lock:
            mine = Counter(self._inflight.values())
        free = {site: self._tasks.capacity(site) for site in self._sites}
        return max(self._sites, key=lambda s: (free[s], -mine[s], -self._sites.index(s)))

    def _forget(self, future: Future[Outcome]) -> None:
        with self._lock:
            self._inflight.pop(future, None)


class FidelityRunner:
    """Runs each trial on the runner of its fidelity (the trial's ``fidelity`` parameter).

    The fidelity is taken out of the parameters the station or function receives.
    """

    def __init__(self, runners: Mapping[str, TrialRunner], slots: int) -> None:
        self.label = "fidelities"
        self._runners = dict(runners)
        self._slots = slots

    def slots(self) -> int:
        """Trials the campaign runs at once, over all fidelities."""
        return self._slots

    def external_id(self, trial_id: int, attempt: int) -> str:
        """``fidelities:trial-ID.ATTEMPT``."""
        return f"{self.label}:trial-{trial_id}.{attempt}"

    def start(self, external_id: str, params: Mapping[str, ParamValue]) -> Future[Outcome]:
        """Dispatch to the runner of ``params["fidelity"]``."""
        level = str(params[FIDELITY])
        rest = {k: v for k, v in params.items() if k != FIDELITY}
        return self._runners[level].start(external_id, rest)

    def reattach(self, external_id: str) -> Future[Outcome] | None:
        """None: the built-in runners cannot re-attach."""
        return None

    def close(self, abort: bool = False) -> None:
        """Close every fidelity's runner."""
        for runner in self._runners.values():
            runner.close(abort=abort)


def make_runner(spec: CampaignSpec, tasks: TaskService, stations: StationService) -> TrialRunner:
    """Open the station or executor that ``spec.runner`` names (or one per fidelity).

    Raises:
        CampaignSpecError: unknown station or site, bad function reference, or a station
            that does not take the campaign's parameters or measure its objectives.
    """
    runners: dict[str, TrialRunner] = {}
    try:
        for level, runner in spec.runners().items():
            where = "runner" if level is None else f"fidelities.{level}.runner"
            opened = _open_runner(runner, spec, tasks, stations, where)
            if level is None:
                return opened
            runners[level] = opened
    except BaseException:
        for opened in runners.values():
            opened.close()
        raise
    return FidelityRunner(runners, spec.budget.parallel)


def _open_runner(
    runner: RunnerSpec,
    spec: CampaignSpec,
    tasks: TaskService,
    stations: StationService,
    where: str,
) -> TrialRunner:
    try:
        if runner.station is not None:
            return _station_runner(runner, spec, stations)
        return _site_runner(runner, spec, tasks)
    except CampaignSpecError as exc:
        if where == "runner" or not exc.field.startswith("runner"):
            raise
        raise CampaignSpecError(
            where + exc.field.removeprefix("runner"), exc.problem, exc.fix
        ) from None
    except InvalidInput as exc:
        field = exc.field.removeprefix("runner").lstrip(".")
        raise CampaignSpecError(
            f"{where}.{field}" if field else where, exc.problem, exc.fix
        ) from None


def check_runner(spec: CampaignSpec, tasks: TaskService, stations: StationService) -> None:
    """Validate ``spec.runner`` (or the fidelities' runners) without keeping anything open."""
    make_runner(spec, tasks, stations).close()


def _station_runner(
    runner: RunnerSpec, spec: CampaignSpec, stations: StationService
) -> StationRunner:
    """The runner of a station.

    A built-in station opens privately for the campaign (seeded by it, with its options); a
    registered one is shared with other campaigns through its scheduler.
    """
    assert runner.station is not None
    name, project = runner.station, spec.project or ""
    try:
        record = stations.get(name)
    except NotFound:
        raise CampaignSpecError(
            "runner.station", f"unknown station {name!r}", "`genesis station list` shows them"
        ) from None
    station: Station
    if record.builtin:
        options = {"slots": spec.budget.parallel, "seed": spec.seed, **runner.options}
        station = stations.private(name, open_station(name, **options), project, runner.priority)
    elif runner.options:
        raise CampaignSpecError(
            "runner.options",
            f"station {name!r} is registered and shared; its options are set when it is added",
            "remove runner.options (or use `genesis station add` with other options)",
        )
    else:
        station = stations.handle(name, project, runner.priority)
    info = station.describe()
    try:
        _check_station_fits(info.parameters, info.measurements, spec, runner.station)
    except CampaignSpecError:
        station.close()
        raise
    return StationRunner(name, station, min(info.slots, spec.budget.parallel))


def _check_station_fits(
    parameters: Mapping[str, Any], measurements: Mapping[str, Any], spec: CampaignSpec, name: str
) -> None:
    for param in spec.space:
        if param not in parameters:
            raise CampaignSpecError(
                f"space.{param}",
                f"station {name!r} has no parameter {param!r}",
                f"its parameters are {sorted(parameters)}",
            )
    for objective in spec.objectives:
        if objective not in measurements:
            raise CampaignSpecError(
                f"objectives.{objective}",
                f"station {name!r} does not measure {objective!r}",
                f"it measures {sorted(measurements)}",
            )
    for i, constraint in enumerate(spec.parsed_outcome_constraints()):
        if constraint.metric not in measurements:
            raise CampaignSpecError(
                f"outcome_constraints[{i}]",
                f"station {name!r} does not measure {constraint.metric!r}",
                f"it measures {sorted(measurements)}",
            )


def _site_runner(runner: RunnerSpec, spec: CampaignSpec, tasks: TaskService) -> SiteRunner:
    assert runner.site is not None and runner.function is not None
    sites = [runner.site] if isinstance(runner.site, str) else runner.site
    for site in sites:
        try:
            tasks.site(site)
        except NotFound:
            raise CampaignSpecError(
                "runner.site",
                f"unknown site {site!r}",
                "`genesis site list` shows the sites; `genesis site add` registers one",
            ) from None
    resolve_function(runner.function)
    unknown = set(runner.options) - {"max_workers"}
    if unknown:
        raise CampaignSpecError(
            f"runner.options.{sorted(unknown)[0]}",
            "unknown option",
            "a site runner takes max_workers (the site's own options are set with genesis site)",
        )
    slots = int(runner.options.get("max_workers", spec.budget.parallel))
    return SiteRunner(sites, runner.function, tasks, slots, spec.project or "")


def _from_measurement(measurement: Measurement) -> Outcome:
    return Outcome(dict(measurement.values), {"instrument_seconds": measurement.duration_s})


def _from_task_result(result: TaskResult) -> Outcome:
    output = result.output
    if not isinstance(output, Mapping):
        raise TaskFailed(
            f"the function returned {type(output).__name__}, expected a dict of measured values"
        )
    values: dict[str, float] = {}
    for key, value in output.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[str(key)] = float(value)
    return Outcome(values, dict(result.usage))


def finite_values(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``values``."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
