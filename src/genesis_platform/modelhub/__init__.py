"""The model hub: versioned models with artifacts, metrics and lineage."""

from genesis_platform.modelhub.service import ModelInfo, ModelService, ModelVersionInfo

__all__ = ["ModelInfo", "ModelService", "ModelVersionInfo"]
