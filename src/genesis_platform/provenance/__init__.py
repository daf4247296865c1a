"""Provenance: a W3C PROV graph over trials, observations, datasets and models."""

from genesis_platform.provenance.graph import Edge, LineageNode, Node, ProvenanceGraph

__all__ = ["Edge", "LineageNode", "Node", "ProvenanceGraph"]
