"""A content-addressed blob store (sha256) over fsspec.

Blobs live at ``<root>/sha256/<first two hex digits>/<digest>``. A write copies the source
in chunks while hashing them (one read), into a temporary file beside the final place, then
renames it, so a reader never sees a partial blob and identical content is stored once. On a
local file system the copy is fsynced before the rename, so the catalog never refers to a blob
whose bytes are not yet on disk (a crash would leave it empty). A read hashes what it returns
and raises :class:`~genesis_platform.errors.CorruptBlob` when the bytes do not match their
name; writing the same content again replaces a blob that does not match, which repairs it.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from genesis_platform.errors import CorruptBlob, NotFound, StorageError

__all__ = ["BlobRef", "BlobStore"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its sha256 hex digest and size in bytes."""

    digest: str
    size: int


class BlobStore:
    """Content-addressed storage under an fsspec URL or local path.

    Args:
        url: A local directory or any fsspec URL (``s3://bucket/prefix``, ``memory://x``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StorageError(f"cannot open the object store {url!r}: {exc}") from exc
        self._fs: Any = fs
        self._root: str = root.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        self._fs.makedirs(self._root, exist_ok=True)

    def path(self, digest: str) -> str:
        """Where the blob named ``digest`` lives in the store's file system."""
        return f"{self._root}/sha256/{digest[:2]}/{digest}"

    def exists(self, digest: str) -> bool:
        """Whether a blob named ``digest`` is stored."""
        return bool(self._fs.exists(self.path(digest)))

    def put_file(self, source: str | Path) -> BlobRef:
        """Store a local file; return its reference. The file is read once."""
        try:
            with open(source, "rb") as handle:
                return self.put_stream(handle)
        except FileNotFoundError as exc:
            raise NotFound("file", source, "check the path") from exc

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store ``data``; return its reference."""
        return self.put_stream(io.BytesIO(data))

    def put_stream(self, stream: IO[bytes]) -> BlobRef:
        """Store what ``stream`` yields, hashing while copying; return its reference.

        A blob already stored under the same digest is kept when its bytes are intact, and
        atomically replaced by the new copy when they are not (size first, then sha256).
        """
        tmp = f"{self._root}/tmp/{uuid.uuid4().hex}"
        self._fs.makedirs(f"{self._root}/tmp", exist_ok=True)
        hasher, size = hashlib.sha256(), 0
        try:
            with self._fs.open(tmp, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                if self._local:
                    out.flush()
                    os.fsync(out.fileno())
            digest = hasher.hexdigest()
            final = self.path(digest)
            if self._intact(final, digest, size):
                self._fs.rm(tmp)
            else:
                self._publish(tmp, final)
        except OSError as exc:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)
            raise StorageError(f"cannot write to the object store {self.url}: {exc}") from exc
        return BlobRef(digest, size)

    def _intact(self, path: str, digest: str, size: int) -> bool:
        """Whether ``path`` exists and holds ``size`` bytes that hash to ``digest``."""
        if not self._fs.exists(path) or self._fs.size(path) != size:
            return False
        hasher = hashlib.sha256()
        with self._fs.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest() == digest

    def _publish(self, tmp: str, final: str) -> None:
        """Rename ``tmp`` to ``final``, replacing what is there, in one atomic step."""
        self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if self._local:
            os.replace(tmp, final)
        else:
            self._fs.mv(tmp, final)

    def read_bytes(self, digest: str) -> bytes:
        """Return the blob's bytes, verified against its digest."""
        return b"".join(self.iter_chunks(digest))

    def iter_chunks(self, digest: str) -> Iterator[bytes]:
        """Yield the blob in chunks; raise CorruptBlob at the end if the hash differs."""
        path = self.path(digest)
        if not self._fs.exists(path):
            raise NotFound("blob", digest, f"it is not in the object store {self.url}")
        hasher = hashlib.sha256()
        with self._fs.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                yield chunk
        if hasher.hexdigest() != digest:
            raise CorruptBlob(digest, hasher.hexdigest(), path)

    def verify(self, digest: str) -> None:
        """Raise CorruptBlob (or NotFound) unless the stored bytes match ``digest``."""
        for _ in self.iter_chunks(digest):
            pass

    def copy_to(self, digest: str, target: str | Path) -> Path:
        """Write the verified blob to a local file ``target`` (atomically) and return it."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as out:
                for chunk in self.iter_chunks(digest):
                    out.write(chunk)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
