"""Snapshots of a campaign: its observations as dataset versions, its surrogate as models.

Every ``snapshot_every`` observations (and at the end) the observations so far become a
new version of the campaign's dataset (one Parquet table, with a fixed schema derived from
the search space), recorded in provenance as having the observations new since the last
version as members; then the planner's surrogate is registered as a model version trained
on that dataset version. Both survive crashes: on resume the snapshotter finds the latest
version by name and which observations it already holds, and registers a missing
surrogate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from sqlalchemy import select

from genesis_platform.campaigns.spec import CampaignSpec
from genesis_platform.catalog.tables import (
    Campaign,
    Dataset,
    DatasetVersion,
    Model,
    ProvenanceEdge,
)
from genesis_platform.data.service import DatasetService, DatasetVersionInfo
from genesis_platform.errors import NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.modelhub.service import SURROGATE_FRAMEWORK, ModelService
from genesis_platform.planning.protocols import Planner
from genesis_platform.planning.space import Choice, Int, Parameter
from genesis_platform.provenance import Node

__all__ = ["Snapshotter", "dataset_name", "model_name"]


def dataset_name(campaign_id: int, name: str) -> str:
    """Name of a campaign's observation dataset."""
    return f"{name}-{campaign_id}-observations"


def model_name(campaign_id: int, name: str) -> str:
    """Name of a campaign's surrogate model."""
    return f"{name}-{campaign_id}-surrogate"


class Snapshotter:
    """Keeps a campaign's observations in memory and writes them out as versions.

    Args:
        ctx: The platform's service context.
        campaign_id: Which campaign.
        spec: Its spec (space, objectives, names).
        datasets: Dataset service.
        models: Model service.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        campaign_id: int,
        spec: CampaignSpec,
        datasets: DatasetService,
        models: ModelService,
    ) -> None:
        self._ctx = ctx
        self._id = campaign_id
        self._space = spec.build_space()
        self._objective = next(iter(spec.objectives))
        self._datasets = datasets
        self._models = models
        self._resource = Resource("campaign", str(campaign_id))
        self.dataset = dataset_name(campaign_id, spec.name)
        self.model = model_name(campaign_id, spec.name)
        self._description = f"campaign {campaign_id} ({spec.name})"
        self._rows: list[dict[str, Any]] = []
        self._value_names: dict[str, None] = dict.fromkeys(spec.objectives)
        self._pending: list[int] = []
        self._last: DatasetVersionInfo | None = None
        self._surrogate_on: str | None = None

    def add(
        self, number: int, params: Mapping[str, Any], values: Mapping[str, float], obs_id: int
    ) -> None:
        """Remember one observation (trial number, parameters, values, catalog id)."""
        self._rows.append({"trial": number, "params": dict(params), "values": dict(values)})
        self._value_names.update(dict.fromkeys(values))
        self._pending.append(obs_id)

    def restore(self) -> None:
        """After the stored observations were added: find what earlier snapshots hold."""
        try:
            self._last = self._datasets.get(self.dataset)
        except NotFound:
            return
        held = self._members()
        self._pending = [i for i in self._pending if i not in held]
        try:
            self._surrogate_on = self._models.get(self.model).trained_on
        except NotFound:
            self._surrogate_on = None

    def snapshot(self, planner: Planner, best: float | None) -> None:
        """Write a dataset version of any new observations; give the latest one its surrogate."""
        if self._pending:
            self._last = self._datasets.add_table(
                self.dataset,
                self.table(),
                filename="observations.parquet",
                message=f"{len(self._rows)} observations of {self._description}",
                description=f"Observations of {self._description}",
                members=[Node("observation", i) for i in self._pending],
            )
            self._pending = []
            self._link("dataset")
        if self._last is not None and self._surrogate_on != self._last.ref:
            self._register_surrogate(planner, self._last, best)

    def table(self) -> pa.Table:
        """Every observation so far: ``trial``, one column per parameter, one per value."""
        columns: dict[str, pa.Array] = {
            "trial": pa.array([r["trial"] for r in self._rows], pa.int64())
        }
        for name, parameter in self._space.items():
            kind = _arrow_type(parameter)
            values = [r["params"].get(name) for r in self._rows]
            if kind == pa.string():
                values = [None if v is None else str(v) for v in values]
            columns[name] = pa.array(values, kind)
        for name in self._value_names:
            columns[name] = pa.array([r["values"].get(name) for r in self._rows], pa.float64())
        return pa.table(columns)

    def _register_surrogate(
        self, planner: Planner, version: DatasetVersionInfo, best: float | None
    ) -> None:
        surrogate = planner.surrogate()
        if surrogate is None:
            return
        self._models.register(
            self.model,
            json.dumps(surrogate.to_json()).encode(),
            framework=SURROGATE_FRAMEWORK,
            metrics={"n_observations": len(self._rows), f"best_{self._objective}": best},
            trained_on=version.ref,
            description=f"Surrogate of {self._description}",
        )
        self._surrogate_on = version.ref
        self._link("model")

    def _link(self, kind: str) -> None:
        """Point the campaign row at its dataset or model."""
        table, column = (Dataset, "dataset_id") if kind == "dataset" else (Model, "model_id")
        name = self.dataset if kind == "dataset" else self.model
        with self._ctx.mutation("write", self._resource, {"op": "link", kind: name}) as s:
            row_id = s.scalar(select(table.id).where(table.name == name))
            setattr(s.get_one(Campaign, self._id), column, row_id)

    def _members(self) -> set[int]:
        """Ids of the observations some version of the dataset already holds."""
        with self._ctx.db.session(write=False) as s:
            return set(
                s.scalars(
                    select(ProvenanceEdge.object_id)
                    .join(DatasetVersion, DatasetVersion.id == ProvenanceEdge.subject_id)
                    .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                    .where(
                        ProvenanceEdge.subject_kind == "dataset_version",
                        ProvenanceEdge.relation == "hadMember",
                        ProvenanceEdge.object_kind == "observation",
                        Dataset.name == self.dataset,
                    )
                )
            )


def _arrow_type(parameter: Parameter) -> pa.DataType:
    if isinstance(parameter, Int):
        return pa.int64()
    if isinstance(parameter, Choice):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in parameter.values):
            return pa.int64()
        if all(isinstance(v, int | float) for v in parameter.values):
            return pa.float64()
        return pa.string()
    return pa.float64()
