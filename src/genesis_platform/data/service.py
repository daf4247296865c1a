"""The dataset service: add datasets and versions, list, get, read tables."""

from __future__ import annotations

import builtins
import datetime as dt
import io
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import retry_conflicts
from genesis_platform.catalog.queries import with_version_stats
from genesis_platform.catalog.tables import Dataset, DatasetFile, DatasetVersion
from genesis_platform.data.refs import format_ref, split_ref
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.provenance import Edge, Node, ProvenanceGraph
from genesis_platform.storage.blobs import BlobRef

__all__ = ["DatasetInfo", "DatasetService", "DatasetVersionInfo", "FileInfo"]

_TABULAR = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class FileInfo:
    """One file of a dataset version: logical path, sha256 digest, size in bytes."""

    path: str
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset and how many versions it has."""

    name: str
    description: str
    license: str
    versions: int
    latest: int
    created_at: dt.datetime
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class DatasetVersionInfo:
    """One immutable dataset version and its files."""

    id: int
    name: str
    version: int
    message: str
    files: tuple[FileInfo, ...]
    created_at: dt.datetime
    created_by: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return format_ref(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "ref": self.ref, "created_at": self.created_at.isoformat()}


class DatasetService:
    """Datasets of one platform (``p.datasets``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def add(
        self,
        name: str,
        paths: Sequence[str | Path],
        *,
        description: str = "",
        license: str = "",
    ) -> DatasetVersionInfo:
        """Create dataset ``name`` with its version 1 made of ``paths`` (files or folders).

        Raises:
            InvalidInput: the name is taken or empty, a path does not exist, or two files
                would be stored under one path.
        """
        _check_name(name)
        files = _collect(paths)
        refs = [(logical, self._ctx.blobs.put_file(real)) for logical, real in files]

        def create() -> DatasetVersionInfo:
            with self._ctx.mutation("write", Resource("dataset", name), {"op": "add"}) as s:
                if _dataset_id(s, name) is not None:
                    raise InvalidInput(
                        "name",
                        f"dataset {name!r} already exists",
                        "add a version with add_version",
                    )
                dataset = Dataset(
                    name=name, description=description, license=license, created_by=self._who
                )
                s.add(dataset)
                s.flush()
                self._ctx.register_asset(s, "dataset", name)
                return self._new_version(s, dataset, refs, "initial version")

        # A writer that created the dataset meanwhile makes the retry raise InvalidInput.
        return retry_conflicts(create)

    def add_version(
        self, name: str, paths: Sequence[str | Path], *, message: str = ""
    ) -> DatasetVersionInfo:
        """Add the next version of dataset ``name``, made of ``paths``."""
        files = _collect(paths)
        refs = [(logical, self._ctx.blobs.put_file(real)) for logical, real in files]
        return self._add_blobs(name, refs, message)

    def add_files(
        self, name: str, files: Mapping[str, str | Path], *, message: str = ""
    ) -> DatasetVersionInfo:
        """The next version of dataset ``name`` (version 1 if it is new) made of ``files``.

        Args:
            name: Dataset name.
            files: Logical path in the version -> the file to store there.
            message: What this version is.

        Raises:
            InvalidInput: a bad name, no files, or a file that does not exist.
        """
        _check_name(name)
        if not files:
            raise InvalidInput("files", "no files given", "give at least one file")
        for logical, real in files.items():
            if not Path(real).is_file():
                raise InvalidInput(f"files.{logical}", f"{real} is not a file", "check the path")
        refs = [(logical, self._ctx.blobs.put_file(Path(real))) for logical, real in files.items()]
        refs.sort(key=lambda pair: pair[0])

        def add() -> DatasetVersionInfo:
            with self._ctx.mutation("write", Resource("dataset", name), {"op": "add_files"}) as s:
                dataset = s.scalar(select(Dataset).where(Dataset.name == name))
                if dataset is None:
                    dataset = Dataset(name=name, created_by=self._who)
                    s.add(dataset)
                    s.flush()
                    self._ctx.register_asset(s, "dataset", name)
                else:
                    self._ctx.confirm_existing("write", "dataset", name)
                return self._new_version(s, dataset, refs, message)

        return retry_conflicts(add)

    def add_table(
        self,
        name: str,
        table: pa.Table,
        *,
        filename: str = "data.parquet",
        message: str = "",
        description: str = "",
        members: Sequence[Node] = (),
    ) -> DatasetVersionInfo:
        """Add ``table`` as a Parquet file in a new version (creating the dataset if needed).

        Args:
            name: Dataset name.
            table: The rows of the new version.
            filename: Name of the Parquet file in the version.
            message: What changed.
            description: Set on the dataset when it is created.
            members: Entities new in this version, recorded as ``hadMember`` in provenance
                (with ``wasDerivedFrom`` the previous version) in the same transaction.
        """
        sink = io.BytesIO()
        pq.write_table(table, sink)
        ref = self._ctx.blobs.put_bytes(sink.getvalue())

        def add() -> DatasetVersionInfo:
            with self._ctx.mutation("write", Resource("dataset", name), {"op": "add_table"}) as s:
                dataset = s.scalar(select(Dataset).where(Dataset.name == name))
                if dataset is None:
                    dataset = Dataset(name=name, description=description, created_by=self._who)
                    s.add(dataset)
                    s.flush()
                    self._ctx.register_asset(s, "dataset", name)
                else:
                    self._ctx.confirm_existing("write", "dataset", name)
                info = self._new_version(s, dataset, [(filename, ref)], message)
                self._record_lineage(s, info, members)
                return info

        return retry_conflicts(add)

    def list(self) -> list[DatasetInfo]:
        """Every dataset, by name."""
        with self._ctx.reading(Resource("dataset", "*")) as s:
            rows = with_version_stats(s, Dataset, DatasetVersion.dataset_id, DatasetVersion.version)
        seen = self._ctx.visible("dataset", [d.name for d, _, _ in rows])
        return [
            DatasetInfo(d.name, d.description, d.license, n, latest, d.created_at, d.created_by)
            for (d, n, latest), ok in zip(rows, seen, strict=True)
            if ok
        ]

    def get(self, name: str, version: int | None = None) -> DatasetVersionInfo:
        """Version ``version`` (default: latest) of dataset ``name``, or of ``name@version``."""
        name, version = split_ref(name, version)
        with self._ctx.reading(Resource("dataset", name)) as s:
            return self._version_info(s, _find_version(s, name, version), name)

    def files(self, name: str, version: int | None = None) -> builtins.list[FileInfo]:
        """The files of a dataset version."""
        return list(self.get(name, version).files)

    def read_table(
        self, name: str, version: int | None = None, *, file: str | None = None
    ) -> pa.Table:
        """Read a CSV or Parquet file of a dataset version as a pyarrow Table.

        Args:
            name: Dataset name.
            version: Version (default: latest).
            file: Which file; may be omitted when the version has one tabular file.
        """
        info = self.get(name, version)
        chosen = _pick_table_file(info, file)
        data = self._ctx.blobs.read_bytes(chosen.digest)
        if Path(chosen.path).suffix.lower() == ".csv":
            return pacsv.read_csv(io.BytesIO(data))
        return pq.read_table(io.BytesIO(data))

    def fetch(self, name: str, version: int | None, target: str | Path) -> Path:
        """Copy a version's files (verified) into folder ``target``; return it."""
        info = self.get(name, version)
        root = Path(target)
        for f in info.files:
            self._ctx.blobs.copy_to(f.digest, root / f.path)
        return root

    def _record_lineage(
        self, s: Session, info: DatasetVersionInfo, members: Sequence[Node]
    ) -> None:
        node = Node("dataset_version", info.id)
        edges = [Edge(node, "hadMember", member) for member in members]
        if info.version > 1:
            previous = _find_version(s, info.name, info.version - 1)
            edges.append(Edge(node, "wasDerivedFrom", Node("dataset_version", previous.id)))
        ProvenanceGraph().record(s, edges)

    @property
    def _who(self) -> str:
        return str(self._ctx.principal)

    def _add_blobs(
        self, name: str, refs: builtins.list[tuple[str, BlobRef]], message: str
    ) -> DatasetVersionInfo:
        def add() -> DatasetVersionInfo:
            with self._ctx.mutation("write", Resource("dataset", name), {"op": "add_version"}) as s:
                dataset = s.scalar(select(Dataset).where(Dataset.name == name))
                if dataset is None:
                    raise NotFound("dataset", name, "create it with `genesis data add`")
                return self._new_version(s, dataset, refs, message)

        return retry_conflicts(add)

    def _new_version(
        self, s: Session, dataset: Dataset, refs: builtins.list[tuple[str, BlobRef]], message: str
    ) -> DatasetVersionInfo:
        row = DatasetVersion(
            dataset_id=dataset.id,
            version=_next_version(s, dataset.id),
            message=message,
            created_by=self._who,
        )
        s.add(row)
        s.flush()
        s.add_all(
            DatasetFile(
                version_id=row.id,
                path=logical,
                digest=ref.digest,
                size=ref.size,
                media_type=_media_type(logical),
            )
            for logical, ref in refs
        )
        s.flush()
        return self._version_info(s, row, dataset.name)

    def _version_info(self, s: Session, row: DatasetVersion, name: str) -> DatasetVersionInfo:
        files = s.scalars(
            select(DatasetFile).where(DatasetFile.version_id == row.id).order_by(DatasetFile.path)
        )
        return DatasetVersionInfo(
            id=row.id,
            name=name,
            version=row.version,
            message=row.message,
            files=tuple(FileInfo(f.path, f.digest, f.size, f.media_type) for f in files),
            created_at=row.created_at,
            created_by=row.created_by,
        )


def _check_name(name: str) -> None:
    if not name or "@" in name or "/" in name or name.strip() != name:
        raise InvalidInput(
            "name", f"{name!r} is not a valid dataset name", "use letters, digits, - _ ."
        )


def _collect(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(logical path, real path) of every file under ``paths``; fails before storing anything."""
    if not paths:
        raise InvalidInput("paths", "no files given", "name at least one file or folder")
    found: dict[str, Path] = {}

    def keep(logical: str, real: Path) -> None:
        other = found.setdefault(logical, real)
        if other != real and other.resolve() != real.resolve():
            raise InvalidInput(
                "paths",
                f"two files would both be stored as {logical} ({other}, {real})",
                "rename one, or add their folders instead",
            )

    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise InvalidInput("paths", f"{given} does not exist", "check the path")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                keep(str(Path(path.name) / child.relative_to(path)), child)
        else:
            keep(path.name, path)
    if not found:
        raise InvalidInput("paths", "the folders given hold no files", "add files to them")
    return sorted(found.items())


def _dataset_id(s: Session, name: str) -> int | None:
    return s.scalar(select(Dataset.id).where(Dataset.name == name))


def _next_version(s: Session, dataset_id: int) -> int:
    """One more than the latest version, unique until the transaction ends.

    The write lock (SQLite), or the dataset's row lock (PostgreSQL), makes the other writers
    of the dataset wait until this one commits; they then number theirs after it.
    """
    s.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update(key_share=True))
    latest = s.scalar(
        select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset_id)
    )
    return (latest or 0) + 1


def _find_version(s: Session, name: str, version: int | None) -> DatasetVersion:
    dataset_id = _dataset_id(s, name)
    if dataset_id is None:
        raise NotFound("dataset", name, "`genesis data list` shows the datasets")
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
    if version is None:
        query = query.order_by(DatasetVersion.version.desc()).limit(1)
    else:
        query = query.where(DatasetVersion.version == version)
    row = s.scalar(query)
    if row is None:
        latest = s.scalar(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset_id)
        )
        raise NotFound("dataset version", f"{name}@{version}", f"the latest is {name}@{latest}")
    return row


def _media_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return _TABULAR.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def _pick_table_file(info: DatasetVersionInfo, file: str | None) -> FileInfo:
    if file is not None:
        for f in info.files:
            if f.path == file:
                return f
        raise NotFound("file", f"{file} in {info.ref}", f"it has {[f.path for f in info.files]}")
    tables = [f for f in info.files if Path(f.path).suffix.lower() in _TABULAR]
    if len(tables) != 1:
        raise InvalidInput(
            "file", f"{info.ref} has {len(tables)} tabular files", "name one with file="
        )
    return tables[0]
