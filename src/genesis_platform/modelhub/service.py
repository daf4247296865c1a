"""The model service: register versions, list, get, load."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import retry_conflicts
from genesis_platform.catalog.queries import with_version_stats
from genesis_platform.catalog.tables import Dataset, DatasetVersion, Model, ModelVersion
from genesis_platform.data.refs import format_ref, parse_ref, split_ref
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.planning.registry import load_surrogate
from genesis_platform.provenance import Edge, Node, ProvenanceGraph

__all__ = ["SURROGATE_FRAMEWORK", "ModelInfo", "ModelService", "ModelVersionInfo"]

SURROGATE_FRAMEWORK = "genesis-surrogate"
"""Framework name of planner surrogates (JSON artifacts that :meth:`ModelService.load` rebuilds)."""


@dataclass(frozen=True)
class ModelInfo:
    """A model and how many versions it has."""

    name: str
    description: str
    versions: int
    latest: int
    framework: str
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class ModelVersionInfo:
    """One immutable model version."""

    id: int
    name: str
    version: int
    framework: str
    digest: str
    size: int
    metrics: Mapping[str, Any]
    trained_on: str | None
    created_at: dt.datetime
    created_by: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return format_ref(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = {**asdict(self), "ref": self.ref, "created_at": self.created_at.isoformat()}
        out["metrics"] = dict(self.metrics)
        return out


class ModelService:
    """Models of one platform (``p.models``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._prov = ProvenanceGraph()

    def register(
        self,
        name: str,
        artifact: str | Path | bytes,
        *,
        framework: str = "",
        metrics: Mapping[str, Any] | None = None,
        trained_on: str | None = None,
        description: str = "",
    ) -> ModelVersionInfo:
        """Register the next version of model ``name`` (creating the model if needed).

        Args:
            name: Model name.
            artifact: The model file's path, or its bytes.
            framework: How to load it (``genesis-surrogate``, ``sklearn``, ``onnx``, ...).
            metrics: Scalar metrics (JSON-serializable).
            trained_on: ``dataset@version`` it was trained on; recorded in provenance.
            description: Set on the model when it is created.
        """
        if not name or "@" in name:
            raise InvalidInput("name", f"{name!r} is not a valid model name", "e.g. my-surrogate")
        metrics = dict(metrics or {})
        _check_json("metrics", metrics)
        ref = (
            self._ctx.blobs.put_bytes(artifact)
            if isinstance(artifact, bytes)
            else self._put_path(artifact)
        )

        def add() -> ModelVersionInfo:
            with self._ctx.mutation("write", Resource("model", name), {"op": "register"}) as s:
                trained_on_id = _dataset_version_id(s, trained_on) if trained_on else None
                model = s.scalar(select(Model).where(Model.name == name))
                if model is None:
                    model = Model(name=name, description=description, created_by=self._who)
                    s.add(model)
                    s.flush()
                    self._ctx.register_asset(s, "model", name)
                else:
                    self._ctx.confirm_existing("write", "model", name)
                row = ModelVersion(
                    model_id=model.id,
                    version=_next_version(s, model.id),
                    framework=framework,
                    digest=ref.digest,
                    size=ref.size,
                    metrics=metrics,
                    trained_on_id=trained_on_id,
                    created_by=self._who,
                )
                s.add(row)
                s.flush()
                if trained_on_id is not None:
                    self._prov.record(
                        s,
                        [
                            Edge(
                                Node("model_version", row.id),
                                "wasDerivedFrom",
                                Node("dataset_version", trained_on_id),
                            )
                        ],
                    )
                return _info(s, row, name)

        # A writer that took this version number (or created the model) meanwhile is seen
        # by the retry, which numbers the version after it.
        return retry_conflicts(add)

    def list(self) -> list[ModelInfo]:
        """Every model, by name."""
        with self._ctx.reading(Resource("model", "*")) as s:
            rows = with_version_stats(s, Model, ModelVersion.model_id, ModelVersion.version)
            seen = self._ctx.visible("model", [m.name for m, _, _ in rows])
            rows = [row for row, ok in zip(rows, seen, strict=True) if ok]
            out = []
            for model, n, latest in rows:
                framework = s.scalar(
                    select(ModelVersion.framework).where(
                        ModelVersion.model_id == model.id, ModelVersion.version == latest
                    )
                )
                out.append(
                    ModelInfo(
                        model.name, model.description, n, latest, framework or "", model.created_at
                    )
                )
            return out

    def get(self, name: str, version: int | None = None) -> ModelVersionInfo:
        """Version ``version`` (default: latest) of model ``name``, or of ``name@version``."""
        name, version = split_ref(name, version)
        with self._ctx.reading(Resource("model", name)) as s:
            return _info(s, _find_version(s, name, version), name)

    def artifact(self, name: str, version: int | None = None) -> bytes:
        """The verified bytes of a version's artifact."""
        info = self.get(name, version)
        return self._ctx.blobs.read_bytes(info.digest)

    def load(self, name: str, version: int | None = None) -> Any:
        """Load a model version.

        Returns:
            A Surrogate for ``genesis-surrogate``, a dict for ``json``, and the artifact's
            bytes for frameworks Genesis does not load itself.
        """
        info = self.get(name, version)
        data = self._ctx.blobs.read_bytes(info.digest)
        if info.framework == SURROGATE_FRAMEWORK:
            return load_surrogate(json.loads(data))
        if info.framework == "json":
            return json.loads(data)
        return data

    @property
    def _who(self) -> str:
        return str(self._ctx.principal)

    def _put_path(self, artifact: str | Path) -> Any:
        path = Path(artifact)
        if not path.is_file():
            raise InvalidInput("artifact", f"{artifact} is not a file", "check the path")
        return self._ctx.blobs.put_file(path)


def _check_json(field: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            field, f"not JSON-serializable: {exc}", "use numbers and strings"
        ) from exc


def _dataset_version_id(s: Session, ref: str) -> int:
    name, version = parse_ref(ref, "trained_on")
    query = (
        select(DatasetVersion.id, DatasetVersion.version)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(Dataset.name == name)
        .order_by(DatasetVersion.version.desc())
    )
    if version is not None:
        query = query.where(DatasetVersion.version == version)
    row = s.execute(query.limit(1)).first()
    if row is None:
        raise NotFound("dataset version", ref, "`genesis data list` shows the datasets")
    return int(row[0])


def _next_version(s: Session, model_id: int) -> int:
    """One more than the latest version, unique until the transaction ends.

    The write lock (SQLite), or the model's row lock (PostgreSQL), makes the other writers
    of the model wait until this one commits; they then number theirs after it.
    """
    s.execute(select(Model.id).where(Model.id == model_id).with_for_update(key_share=True))
    latest = s.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id)
    )
    return (latest or 0) + 1


def _find_version(s: Session, name: str, version: int | None) -> ModelVersion:
    model_id = s.scalar(select(Model.id).where(Model.name == name))
    if model_id is None:
        raise NotFound("model", name, "`genesis model list` shows the models")
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    query = (
        query.order_by(ModelVersion.version.desc()).limit(1)
        if version is None
        else query.where(ModelVersion.version == version)
    )
    row = s.scalar(query)
    if row is None:
        raise NotFound("model version", f"{name}@{version}", "`genesis model show NAME` lists them")
    return row


def _info(s: Session, row: ModelVersion, name: str) -> ModelVersionInfo:
    trained_on = None
    if row.trained_on_id is not None:
        pair = s.execute(
            select(Dataset.name, DatasetVersion.version)
            .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
            .where(DatasetVersion.id == row.trained_on_id)
        ).first()
        trained_on = format_ref(pair[0], pair[1]) if pair else None
    return ModelVersionInfo(
        id=row.id,
        name=name,
        version=row.version,
        framework=row.framework,
        digest=row.digest,
        size=row.size,
        metrics=row.metrics,
        trained_on=trained_on,
        created_at=row.created_at,
        created_by=row.created_by,
    )
