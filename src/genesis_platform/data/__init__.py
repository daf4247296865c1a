"""Datasets: immutable versions of files, tabular reads, references ``name@version``."""

from genesis_platform.data.service import DatasetInfo, DatasetService, DatasetVersionInfo, FileInfo

__all__ = ["DatasetInfo", "DatasetService", "DatasetVersionInfo", "FileInfo"]
