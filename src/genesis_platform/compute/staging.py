"""Input and output files of tasks: staged in from datasets, kept as blobs afterwards.

A task may name **inputs** (a folder of its working directory -> a dataset version,
``{"data": "electrolyte-screen@2"}``) and **outputs** (glob patterns relative to its working
directory, ``["results/*.csv"]``). Before the task is submitted, each input version's files
are copied (verified) into their folder of the task's working directory, a fresh folder under
the site's file area (``$GENESIS_HOME/tasks`` for ``local`` and ``ray``; the ``work_dir`` of a
batch site, which its compute nodes share) unless the task gives its own ``cwd``. When the
task has completed, the files its outputs match are stored as blobs and listed on the task's
record (path, sha256, size); with ``register_outputs: NAME`` they also become the next
version of dataset ``NAME``, which records that it ``wasGeneratedBy`` the task.

Staging needs a file system the platform and the site's workers share; a remote Ray cluster
has none (use a batch site, or run the staging inside the task).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from genesis_platform.data.refs import parse_ref
from genesis_platform.data.service import DatasetService, DatasetVersionInfo
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.storage.blobs import BlobStore

__all__ = [
    "TaskFiles",
    "collect_outputs",
    "register_outputs",
    "stage_inputs",
    "working_directory",
]

_PATTERN_FIX = "give a path relative to the task's working directory, e.g. results/*.csv"


@dataclass(frozen=True)
class TaskFiles:
    """What a task reads from datasets and what it leaves behind.

    Attributes:
        inputs: Folder (relative to the working directory, ``.`` for itself) -> dataset
            reference ``NAME`` or ``NAME@VERSION``.
        outputs: Glob patterns of files to keep, relative to the working directory.
        register: Dataset to add the kept files to as its next version, or None.
    """

    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    register: str | None = None

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, which :meth:`from_dict` reads back."""
        return {
            "inputs": dict(self.inputs),
            "outputs": list(self.outputs),
            "register": self.register,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskFiles:
        """Read :meth:`to_dict`'s form back."""
        return cls(
            dict(data.get("inputs") or {}), tuple(data.get("outputs") or ()), data.get("register")
        )

    @classmethod
    def create(
        cls,
        inputs: Mapping[str, str] | None,
        outputs: Sequence[str] | None,
        register: str | None,
    ) -> TaskFiles:
        """Validate the three arguments of a task submission.

        Raises:
            InvalidInput: naming ``inputs.<folder>``, ``outputs[i]`` or ``register_outputs``.
        """
        for folder, ref in (inputs or {}).items():
            _check_relative(folder, f"inputs.{folder}")
            if not isinstance(ref, str):
                raise InvalidInput(f"inputs.{folder}", "must be a dataset NAME or NAME@VERSION")
            parse_ref(ref, f"inputs.{folder}")
        patterns = tuple(outputs or ())
        for i, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not pattern:
                raise InvalidInput(
                    f"outputs[{i}]", "must be a non-empty glob pattern", _PATTERN_FIX
                )
            _check_relative(pattern, f"outputs[{i}]")
        if register is not None and not patterns:
            raise InvalidInput(
                "register_outputs", "there are no outputs to register", "name outputs too"
            )
        return cls(dict(inputs or {}), patterns, register)


def _check_relative(path: str, field_name: str) -> None:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise InvalidInput(
            field_name, f"{path!r} leaves the task's working directory", _PATTERN_FIX
        )


def working_directory(area: Path) -> Path:
    """A new, empty working directory for one task under ``area``."""
    folder = area / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def stage_inputs(files: TaskFiles, datasets: DatasetService, folder: Path) -> list[str]:
    """Copy every input version into its folder under ``folder``; return their refs.

    Raises:
        InvalidInput: (field ``inputs.<folder>``) a dataset or version that does not exist.
    """
    used = []
    for target, ref in files.inputs.items():
        name, version = parse_ref(ref, f"inputs.{target}")
        try:
            info = datasets.get(name, version)
        except NotFound as exc:
            raise InvalidInput(f"inputs.{target}", str(exc), "`genesis data list`") from None
        datasets.fetch(name, info.version, folder / target)
        used.append(info.ref)
    return used


def collect_outputs(
    files: TaskFiles, folder: Path, blobs: BlobStore
) -> tuple[dict[str, Path], list[dict[str, object]]]:
    """The files under ``folder`` that the output patterns match, stored as blobs.

    Returns:
        Logical path (relative to ``folder``) -> the file; and the record of each
        (``path``, ``digest``, ``size``).
    """
    found: dict[str, Path] = {}
    for pattern in files.outputs:
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                found[path.relative_to(folder).as_posix()] = path
    kept = []
    for logical, path in sorted(found.items()):
        ref = blobs.put_file(path)
        kept.append({"path": logical, "digest": ref.digest, "size": ref.size})
    return found, kept


def register_outputs(
    files: TaskFiles, found: Mapping[str, Path], datasets: DatasetService, task_id: int
) -> DatasetVersionInfo | None:
    """Add ``found`` as the next version of ``files.register`` (None when nothing matched)."""
    if files.register is None or not found:
        return None
    return datasets.add_files(files.register, found, message=f"outputs of task {task_id}")
