"""Readable labels for provenance nodes, and the lineage tree as text."""

from __future__ import annotations

from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import (
    Campaign,
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    ObservationRow,
    Trial,
)
from genesis_platform.provenance.graph import LineageNode, Node

__all__ = ["describe", "lineage_dict", "render_lineage"]


def describe(s: Session, node: Node) -> str:
    """A one-line label: ``model foo@2``, ``trial 7 of campaign 1 {x: 0.5}``, ..."""
    if node.kind == "model_version" and (mv := s.get(ModelVersion, node.id)):
        return f"model {s.get_one(Model, mv.model_id).name}@{mv.version}"
    if node.kind == "dataset_version" and (dv := s.get(DatasetVersion, node.id)):
        return f"dataset {s.get_one(Dataset, dv.dataset_id).name}@{dv.version}"
    if node.kind == "observation" and (obs := s.get(ObservationRow, node.id)):
        return f"observation {obs.id} {_short(obs.values)}"
    if node.kind == "trial" and (trial := s.get(Trial, node.id)):
        return f"trial {trial.number} of campaign {trial.campaign_id} {_short(trial.params)}"
    if node.kind == "campaign" and (campaign := s.get(Campaign, node.id)):
        return f"campaign {campaign.id} ({campaign.name})"
    return str(node)


def render_lineage(s: Session, root: LineageNode) -> str:
    """The lineage tree as indented text, one node a line, with the relation that led there."""
    lines: list[str] = []

    def walk(item: LineageNode, depth: int) -> None:
        prefix = "  " * depth + (f"└─ {item.relation}: " if item.relation else "")
        lines.append(prefix + describe(s, item.node))
        for parent in item.parents:
            walk(parent, depth + 1)

    walk(root, 0)
    return "\n".join(lines)


def lineage_dict(s: Session, root: LineageNode) -> dict[str, object]:
    """The lineage tree as nested JSON-ready dicts."""
    return {
        "node": str(root.node),
        "label": describe(s, root.node),
        "relation": root.relation,
        "from": [lineage_dict(s, parent) for parent in root.parents],
    }


def _short(values: dict[str, object]) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
    return "{" + ", ".join(parts) + "}"
