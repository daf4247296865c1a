"""The lineage service (``p.lineage``): where a model or dataset version came from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from genesis_platform.catalog.tables import Dataset, DatasetVersion, Model, ModelVersion
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.provenance.describe import lineage_dict, render_lineage
from genesis_platform.provenance.graph import Node, ProvenanceGraph

__all__ = ["LineageService"]


class LineageService:
    """Walks the provenance graph back from a model or dataset version."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._graph = ProvenanceGraph()

    def text(self, kind: str, name: str, version: int | None = None) -> str:
        """The lineage of ``kind`` (``model`` or ``dataset``) ``name@version`` as a tree."""
        with self._ctx.reading(Resource(kind, name)) as s:
            root = self._graph.lineage(s, self._node(s, kind, name, version))
            return render_lineage(s, root)

    def tree(self, kind: str, name: str, version: int | None = None) -> dict[str, Any]:
        """The same lineage as nested dicts (``node``, ``label``, ``relation``, ``from``)."""
        with self._ctx.reading(Resource(kind, name)) as s:
            root = self._graph.lineage(s, self._node(s, kind, name, version))
            return lineage_dict(s, root)

    @staticmethod
    def _node(s: Any, kind: str, name: str, version: int | None) -> Node:
        if kind == "model":
            query = (
                select(ModelVersion.id, ModelVersion.version)
                .join(Model, Model.id == ModelVersion.model_id)
                .where(Model.name == name)
            )
            column = ModelVersion.version
        elif kind == "dataset":
            query = (
                select(DatasetVersion.id, DatasetVersion.version)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(Dataset.name == name)
            )
            column = DatasetVersion.version
        else:
            raise InvalidInput("kind", f"no lineage for {kind!r}", "use model or dataset")
        query = query.order_by(column.desc()) if version is None else query.where(column == version)
        row = s.execute(query.limit(1)).first()
        if row is None:
            shown = name if version is None else f"{name}@{version}"
            raise NotFound(
                f"{kind} version",
                shown,
                f"`genesis {kind.replace('dataset', 'data')} list` shows them",
            )
        return Node(f"{kind}_version", int(row[0]))
