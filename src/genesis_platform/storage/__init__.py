"""Content-addressed blob storage over fsspec."""

from genesis_platform.storage.blobs import BlobRef, BlobStore

__all__ = ["BlobRef", "BlobStore"]
