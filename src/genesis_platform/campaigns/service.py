"""The campaign service (``p.campaigns``) and the :class:`Campaign` handle."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genesis_platform.campaigns.engine import CampaignEngine, best_of, counts_for_best
from genesis_platform.campaigns.lock import CampaignLock
from genesis_platform.campaigns.progress import ProgressBar
from genesis_platform.campaigns.runners import check_runner, make_runner
from genesis_platform.campaigns.snapshots import dataset_name, model_name
from genesis_platform.campaigns.spec import CampaignSpec, load_spec, space_to_dict
from genesis_platform.campaigns.warmstart import WarmStart, load_warm_start, pin_warm_start
from genesis_platform.catalog.tables import Campaign as CampaignRow
from genesis_platform.catalog.tables import ObservationRow, Trial
from genesis_platform.compute.tasks import TaskService
from genesis_platform.data.service import DatasetService
from genesis_platform.errors import (
    CampaignError,
    CampaignSpecError,
    GenesisError,
    InvalidInput,
    NotFound,
)
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.ledger import Candidate, LedgerService
from genesis_platform.labs.service import StationService
from genesis_platform.modelhub.service import ModelService
from genesis_platform.planning._feasible import check_satisfiable
from genesis_platform.planning.encoding import Encoder
from genesis_platform.planning.pareto import default_reference_point, hypervolume, pareto_mask
from genesis_platform.planning.protocols import Planner
from genesis_platform.planning.registry import make_planner
from genesis_platform.provenance import Edge, Node, ProvenanceGraph

__all__ = ["Campaign", "CampaignInfo", "CampaignService", "TrialInfo"]

_RESUMABLE = ("created", "running", "stopped", "failed")
_log = logging.getLogger(__name__)
_CAMPAIGN_OPTIONS = {
    "outcome_constraints": ("outcome_constraints", "outcome constraints"),
    "reference_point": ("reference_point", "a reference point"),
    "fidelity": ("fidelities", "several fidelities"),
}
"""Planner options a campaign file sets through its own keys: key, field, what it is."""
_ORPHANED = "the process running it ended without stopping it (crash or kill); resume to go on"


@dataclass(frozen=True)
class TrialInfo:
    """One trial as stored."""

    id: int
    number: int
    state: str
    params: dict[str, Any]
    values: dict[str, float] | None
    attempts: int
    external_id: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign's state and results so far.

    ``best`` is the best value of the first objective among the observations that meet the
    outcome constraints. With several objectives, ``pareto`` lists the non-dominated
    feasible observations (``{"trial", "params", "values"}``) and ``hypervolume`` the
    hypervolume they dominate, measured from ``reference_point`` (or from the default
    reference point of the planner: the front's nadir minus 10% of its range).
    """

    id: int
    name: str
    project: str | None
    state: str
    objective: str
    direction: str
    objectives: dict[str, str]
    n_trials: int
    n_observed: int
    n_failed: int
    n_interrupted: int
    n_canceled: int
    best: float | None
    best_params: dict[str, Any] | None
    wall_seconds: float
    stop_reason: str
    error: str
    dataset: str | None
    model: str | None
    created_at: dt.datetime
    warm_start: str | None = None
    pareto: tuple[dict[str, Any], ...] = ()
    hypervolume: float | None = None
    trials: tuple[TrialInfo, ...] = field(default=(), repr=False)

    def to_dict(self, with_trials: bool = False) -> dict[str, Any]:
        """JSON-ready form; ``trials`` included on request."""
        out = {k: v for k, v in asdict(self).items() if k != "trials"}
        out["created_at"] = self.created_at.isoformat()
        if with_trials:
            out["trials"] = [t.to_dict() for t in self.trials]
        return out


class CampaignService:
    """Campaigns of one platform (``p.campaigns``)."""

    def __init__(
        self,
        ctx: ServiceContext,
        datasets: DatasetService,
        models: ModelService,
        tasks: TaskService,
        stations: StationService,
    ) -> None:
        self._ctx = ctx
        self._datasets = datasets
        self._models = models
        self._tasks = tasks
        self._stations = stations
        self._ledger = LedgerService(ctx)

    def create(
        self, spec: CampaignSpec | Mapping[str, Any] | None = None, **fields: Any
    ) -> Campaign:
        """Validate and store a new campaign; nothing runs until :meth:`Campaign.run`.

        Pass a :class:`CampaignSpec`, a mapping in the campaign-file form, or its fields as
        keywords (``space`` may hold ``Real``/``Int``/``Choice``; ``runner`` may be
        :func:`on_station` or :func:`on_site`; ``budget`` a :class:`Budget`).

        Raises:
            CampaignSpecError: a field does not validate; the message names it.
        """
        spec = pin_warm_start(_coerce_spec(spec, fields), self._datasets)
        try:
            check_satisfiable(Encoder(spec.build_space()))
        except InvalidInput as exc:
            raise CampaignSpecError(exc.field, exc.problem, exc.fix) from None
        self._planner(spec)  # validates the planner and its options
        check_runner(spec, self._tasks, self._stations)
        self._ctx.check_project(spec.project or "")
        warm = None if spec.warm_start is None else self._datasets.get(spec.warm_start)
        with self._ctx.mutation("write", Resource("campaign", spec.name), {"op": "create"}) as s:
            row = CampaignRow(
                name=spec.name, spec=spec.to_dict(), state="created", created_by=self._who
            )
            s.add(row)
            s.flush()
            campaign_id = row.id
            self._ctx.register_asset(
                s,
                "campaign",
                str(campaign_id),
                project=spec.project or self._ctx.principal.project or "",
            )
            if warm is not None:
                edge = Edge(Node("campaign", campaign_id), "used", Node("dataset_version", warm.id))
                ProvenanceGraph().record(s, [edge])
        return Campaign(self, campaign_id, spec)

    def from_file(self, path: str | Path) -> Campaign:
        """Create a campaign from a YAML campaign file."""
        return self.create(load_spec(path))

    def get(self, campaign_id: int | str) -> Campaign:
        """The campaign with this id."""
        cid = _parse_id(campaign_id)
        with self._ctx.reading(Resource("campaign", str(cid))) as s:
            row = s.get(CampaignRow, cid)
            if row is None:
                raise NotFound("campaign", cid, "`genesis campaign list` shows the campaigns")
            return Campaign(self, cid, CampaignSpec.from_dict(row.spec))

    def list(self) -> list[CampaignInfo]:
        """Every campaign, newest first."""
        with self._ctx.reading(Resource("campaign", "*")) as s:
            rows = s.scalars(select(CampaignRow).order_by(CampaignRow.id.desc())).all()
            seen = self._ctx.visible("campaign", [str(row.id) for row in rows])
            return [
                self._info(s, row, with_trials=False)
                for row, ok in zip(rows, seen, strict=True)
                if ok
            ]

    def info(self, campaign_id: int, with_trials: bool = False) -> CampaignInfo:
        """State and results of one campaign."""
        with self._ctx.reading(Resource("campaign", str(campaign_id))) as s:
            row = s.get(CampaignRow, campaign_id)
            if row is None:
                raise NotFound("campaign", campaign_id)
            return self._info(s, row, with_trials)

    def resume(self, campaign_id: int | str) -> Campaign:
        """The campaign, checked to be resumable (not completed)."""
        campaign = self.get(campaign_id)
        state = campaign.info().state
        if state not in _RESUMABLE:
            raise CampaignError(
                f"campaign {campaign.id} is {state}; there is nothing to resume",
                campaign=campaign.id,
                state=state,
            )
        return campaign

    @property
    def _locks(self) -> Path:
        """Folder of the campaign lock files: beside a SQLite catalog, else in the home."""
        url = self._ctx.db.url
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            catalog = Path(url.removeprefix("sqlite:///"))
            return catalog.with_name(f"{catalog.name}.locks")
        return self._ctx.home / "locks"

    def _run(self, campaign: Campaign, progress: bool) -> CampaignInfo:
        spec = campaign.spec
        with CampaignLock(self._locks, campaign.id):
            planner = self._planner(spec)
            warm = load_warm_start(spec, self._datasets)
            runner = make_runner(spec, self._tasks, self._stations)
            objective = next(iter(spec.objectives))
            if progress:
                with ProgressBar(f"{spec.name} #{campaign.id}", objective) as bar:
                    self._engine(campaign, planner, runner, bar, warm).run()
            else:
                self._engine(campaign, planner, runner, None, warm).run()
            try:
                self.record_outputs(campaign.id)
            except GenesisError as exc:  # the campaign's results are safe: say how to retry
                _log.warning(
                    "campaign %s finished, but its IP ledger entries were not written (%s); "
                    "write them with `genesis ledger record %s`",
                    campaign.id,
                    exc,
                    campaign.id,
                )
        return self.info(campaign.id)

    def record_outputs(self, campaign_id: int) -> None:
        """Give a campaign's outputs their IP ledger entries (new ones only; idempotent).

        Runs when a campaign finishes; run it again if that failed (``genesis ledger
        record ID``).
        """
        with self._ctx.reading(Resource("campaign", str(campaign_id))) as s:
            spec = CampaignSpec.from_dict(s.get_one(CampaignRow, campaign_id).spec)
            observed = s.execute(
                select(Trial.number, Trial.params, ObservationRow.values)
                .join(ObservationRow, ObservationRow.trial_id == Trial.id)
                .where(Trial.campaign_id == campaign_id)
                .order_by(Trial.number)
            ).all()
        self._ledger.record_campaign(campaign_id, _best_candidates(spec, observed))

    def _engine(
        self, campaign: Campaign, planner: Planner, runner: Any, bar: Any, warm: WarmStart | None
    ) -> CampaignEngine:
        return CampaignEngine(
            self._ctx,
            campaign.id,
            campaign.spec,
            planner,
            runner,
            self._datasets,
            self._models,
            bar,
            warm,
        )

    @staticmethod
    def _planner(spec: CampaignSpec) -> Planner:
        try:
            return make_planner(
                spec.planner.kind,
                spec.build_space(),
                spec.objectives,
                seed=spec.seed,
                options=spec.planner_options(),
            )
        except InvalidInput as exc:
            key = exc.field.removeprefix("planner.options.")
            if key in _CAMPAIGN_OPTIONS and key not in spec.planner.options:
                field, what = _CAMPAIGN_OPTIONS[key]
                raise CampaignSpecError(
                    field,
                    f"planner {spec.planner.kind!r} does not take {what}: {exc.problem}",
                    "use planner gp, or random or sobol (which accept and ignore it)",
                ) from None
            raise

    @property
    def _who(self) -> str:
        return str(self._ctx.principal)

    def _info(self, s: Session, row: CampaignRow, with_trials: bool) -> CampaignInfo:
        spec = CampaignSpec.from_dict(row.spec)
        objective, direction = next(iter(spec.objectives.items()))
        counts: dict[str, int] = {
            state: n
            for state, n in s.execute(
                select(Trial.state, func.count())
                .where(Trial.campaign_id == row.id)
                .group_by(Trial.state)
            )
        }
        trials = _trials(s, row.id)
        constraints = spec.parsed_outcome_constraints()
        rows = [
            {"trial": t.number, "params": t.params, "values": t.values}
            for t in trials
            if t.values and counts_for_best(spec, t.params, t.values, constraints)
        ]
        best = best_of(rows, objective, direction)
        pareto, volume = pareto_front(rows, spec) if len(spec.objectives) > 1 else ((), None)
        state, stop_reason = row.state, row.stop_reason
        if state == "created":
            state, stop_reason = "stopped", "created but never run; resume to run it"
        elif state == "running" and not CampaignLock.held(self._locks, row.id):
            state, stop_reason = "stopped", _ORPHANED
        return CampaignInfo(
            id=row.id,
            name=row.name,
            project=spec.project,
            state=state,
            objective=objective,
            direction=direction,
            objectives=dict(spec.objectives),
            n_trials=sum(counts.values()),
            n_observed=counts.get("observed", 0),
            n_failed=counts.get("failed", 0),
            n_interrupted=counts.get("interrupted", 0),
            n_canceled=counts.get("canceled", 0),
            best=None if best is None else float(best["values"][objective]),
            best_params=None if best is None else dict(best["params"]),
            wall_seconds=row.wall_seconds,
            stop_reason=stop_reason,
            error=row.error,
            dataset=self._latest_ref("dataset", dataset_name(row.id, row.name), row.dataset_id),
            model=self._latest_ref("model", model_name(row.id, row.name), row.model_id),
            created_at=row.created_at,
            warm_start=spec.warm_start,
            pareto=pareto,
            hypervolume=volume,
            trials=tuple(trials) if with_trials else (),
        )

    def _latest_ref(self, kind: str, name: str, row_id: int | None) -> str | None:
        if row_id is None:
            return None
        service = self._datasets if kind == "dataset" else self._models
        return service.get(name).ref


class Campaign:
    """A handle on one stored campaign."""

    def __init__(self, service: CampaignService, campaign_id: int, spec: CampaignSpec) -> None:
        self._service = service
        self.id = campaign_id
        self.spec = spec

    @property
    def name(self) -> str:
        """The campaign's name."""
        return self.spec.name

    def run(self, progress: bool = False) -> CampaignInfo:
        """Run (or go on running) until the budget or a stopping rule ends it.

        Args:
            progress: Show a live progress bar with the best value so far.

        Returns:
            The campaign's final state and results.
        """
        return self._service._run(self, progress)

    def info(self, with_trials: bool = False) -> CampaignInfo:
        """State and results now."""
        return self._service.info(self.id, with_trials)

    def trials(self) -> list[TrialInfo]:
        """Every trial, in proposal order."""
        return list(self.info(with_trials=True).trials)

    def __repr__(self) -> str:
        return f"Campaign(id={self.id}, name={self.name!r})"


def _coerce_spec(
    spec: CampaignSpec | Mapping[str, Any] | None, fields: dict[str, Any]
) -> CampaignSpec:
    if isinstance(spec, CampaignSpec):
        if fields:
            raise InvalidInput("create", "give a spec or keyword fields, not both")
        return spec
    data = dict(spec or {}) | fields
    if "space" in data and isinstance(data["space"], Mapping):
        data["space"] = space_to_dict(data["space"])
    for key in ("runner", "budget", "stop", "planner"):
        value = data.get(key)
        if isinstance(value, BaseModel):
            data[key] = value.model_dump(mode="json", exclude_none=True)
    return CampaignSpec.from_dict(data)


def pareto_front(
    rows: Sequence[Mapping[str, Any]], spec: CampaignSpec
) -> tuple[tuple[dict[str, Any], ...], float | None]:
    """The non-dominated rows (``{"trial", "params", "values"}``) and their hypervolume.

    Hypervolume is measured from the spec's reference point, or from the nadir of the
    front minus 10% of its range when it has none (as the planner does).
    """
    names = list(spec.objectives)
    usable = [r for r in rows if all(_finite(r["values"].get(n)) for n in names)]
    if not usable:
        return (), None
    signs = np.array([1.0 if spec.objectives[n] == "max" else -1.0 for n in names])
    y = np.array([[float(r["values"][n]) for n in names] for r in usable]) * signs
    mask = pareto_mask(y)
    if spec.reference_point is not None:
        ref = np.array([spec.reference_point[n] for n in names]) * signs
    else:
        ref = default_reference_point(y[mask])
    front = tuple(
        {"trial": r["trial"], "params": dict(r["params"]), "values": dict(r["values"])}
        for r, keep in zip(usable, mask, strict=True)
        if keep
    )
    return front, hypervolume(y, ref)


def _best_candidates(
    spec: CampaignSpec, observed: Sequence[tuple[int, dict[str, Any], dict[str, Any]]]
) -> list[Candidate]:
    """The best feasible trial, or with several objectives the trials on the Pareto front.

    ``observed`` holds the number, parameters and values of each observed trial.
    """
    constraints = spec.parsed_outcome_constraints()
    rows = [
        {"trial": number, "params": params, "values": values}
        for number, params, values in observed
        if values and counts_for_best(spec, params, values, constraints)
    ]
    if len(spec.objectives) > 1:
        best: Sequence[Mapping[str, Any]] = pareto_front(rows, spec)[0]
    else:
        one = best_of(rows, *next(iter(spec.objectives.items())))
        best = () if one is None else (one,)
    return [Candidate(int(r["trial"]), r["params"], r["values"]) for r in best]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _parse_id(value: int | str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CampaignSpecError(
            "id", f"{value!r} is not a campaign id", "use the number `genesis campaign list` shows"
        ) from None


def _trials(s: Session, campaign_id: int) -> list[TrialInfo]:
    rows = s.execute(
        select(Trial, ObservationRow.values)
        .outerjoin(ObservationRow, ObservationRow.trial_id == Trial.id)
        .where(Trial.campaign_id == campaign_id)
        .order_by(Trial.number)
    ).all()
    return [
        TrialInfo(
            id=t.id,
            number=t.number,
            state=t.state,
            params=dict(t.params),
            values=None if values is None else dict(values),
            attempts=t.attempts,
            external_id=t.external_id,
            error=t.error,
        )
        for t, values in rows
    ]
