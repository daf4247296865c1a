"""Sites: named places that run tasks, each a ``{kind, options}`` config and an executor.

A site's kind picks its executor and the options it takes:

=========================== ================================================================
kind                        options (all optional)
=========================== ================================================================
``local``                   ``max_workers`` (default: the CPUs this process may use)
``ray``                     ``address`` (``auto``, ``ray://host:port`` or ``host:port``; none:
                            start a local Ray), ``num_cpus`` (for a local Ray),
                            ``max_workers`` (tasks in flight, default the cluster's CPUs),
                            ``bundle`` (send short tasks in bundles while Ray has enough
                            queued, see :mod:`~genesis_platform.compute.ray`; default true)
``slurm`` ``pbs`` ``lsf``   ``work_dir`` (a folder on the file system the compute nodes share;
``flux``                    default ``$GENESIS_HOME/sites/NAME``), ``poll_interval_s`` (status
                            polling, default 1 s; PSI/J's own default of 30 s makes every job
                            take 30 s), ``queue``, ``account``, ``python`` (the interpreter
                            on the compute nodes, default this one), ``max_jobs`` (default 100)
``slurm`` ... ``flux``,     ``pilot`` (true: run tasks in pilot jobs that each host a worker
pilot mode                  pool, see :mod:`~genesis_platform.compute.pilot`; default false, one
                            job per task), ``pilot_min`` (pilots kept when idle, default 0),
                            ``pilot_max`` (default 1), ``pilot_workers`` (per pilot; default one
                            per CPU of a whole node), ``pilot_idle_timeout_s`` (default 60 s),
                            ``pilot_walltime_s`` (each pilot job's, default 3600 s),
                            ``pilot_address`` (this machine's name or address as the compute
                            nodes reach it; default its host name); ``max_jobs`` is unused
every kind                  ``retries`` (resubmissions after a transient failure such as a
                            node failure or preemption, never after the task's own error;
                            default 2), ``retry_backoff_s`` (first wait, doubled each time;
                            default 1 s), ``check_timeout_s`` (default 120 s),
                            ``default_walltime_s`` (the walltime of tasks that give none, and
                            what an allocation check counts them at; default none)
=========================== ================================================================

Options are validated with pydantic when the site is added, from Python values or from the
CLI's ``key=value`` strings, and stored as the validated JSON that :meth:`SiteConfig.to_dict`
returns and :meth:`SiteConfig.from_dict` reads back unchanged. The built-in ``local`` site
always exists and is not stored.

Packages add site kinds through the ``genesis_platform.executors`` entry-point group: an
entry point ``NAME = "package.module:factory"`` names a callable
``factory(site_name, options, home) -> Executor``. Such a site takes the common options
above, checked here, and any others, which are passed to the factory for it to check.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from genesis_platform._options import import_extra
from genesis_platform._options import validate_options as _validate
from genesis_platform.compute.protocols import Executor
from genesis_platform.errors import InvalidInput

__all__ = [
    "BATCH_KINDS",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "LOCAL_SITE",
    "SiteConfig",
    "SiteKind",
    "open_executor",
    "plugin_kinds",
    "site_options_help",
]

SiteKind = Literal["local", "ray", "slurm", "pbs", "lsf", "flux"]
KINDS: tuple[str, ...] = get_args(SiteKind)
BATCH_KINDS = ("slurm", "pbs", "lsf", "flux")
LOCAL_SITE = "local"
"""The name of the built-in site: this machine's process pool."""
ENTRY_POINT_GROUP = "genesis_platform.executors"
"""Where packages add site kinds: ``NAME = "package.module:factory"``."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class _Options(BaseModel):
    """Options every kind takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(2, ge=0, le=100)
    retry_backoff_s: float = Field(1.0, ge=0.0, le=3600.0)
    check_timeout_s: float = Field(120.0, gt=0.0)
    default_walltime_s: float | None = Field(None, gt=0.0, allow_inf_nan=False)


class LocalOptions(_Options):
    """Options of a ``local`` site."""

    max_workers: int | None = Field(None, ge=1)


class RayOptions(_Options):
    """Options of a ``ray`` site."""

    address: str | None = Field(None, pattern=r"^(auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")
    num_cpus: int | None = Field(None, ge=1)
    max_workers: int | None = Field(None, ge=1)
    bundle: bool = True


class BatchOptions(_Options):
    """Options of a batch site (``slurm``, ``pbs``, ``lsf``, ``flux``)."""

    work_dir: str | None = None
    poll_interval_s: float = Field(1.0, gt=0.0, le=600.0)
    queue: str | None = None
    account: str | None = None
    python: str = sys.executable
    max_jobs: int = Field(100, ge=1)
    pilot: bool = False
    pilot_max: int = Field(1, ge=1)
    pilot_min: int = Field(0, ge=0)  # after pilot_max: its check reads pilot_max
    pilot_workers: int | None = Field(None, ge=1)
    pilot_idle_timeout_s: float = Field(60.0, gt=0.0, allow_inf_nan=False)
    pilot_walltime_s: float = Field(3600.0, ge=10.0, allow_inf_nan=False)
    pilot_address: str | None = Field(None, pattern=r"^[^\s:/]+$")

    @field_validator("pilot_min")
    @classmethod
    def _at_most_pilot_max(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("pilot_max")
        if most is not None and value > most:
            raise ValueError(f"must not be more than pilot_max ({most})")
        return value


class PluginOptions(_Options):
    """Options of a kind that a plugin adds: the common ones here, the rest the plugin's."""

    model_config = ConfigDict(extra="allow", frozen=True)


_OPTION_MODELS: dict[str, type[_Options]] = {
    "local": LocalOptions,
    "ray": RayOptions,
    **{kind: BatchOptions for kind in BATCH_KINDS},
}


def plugin_kinds() -> dict[str, EntryPoint]:
    """Site kinds added through the ``genesis_platform.executors`` entry points.

    The built-in kinds cannot be replaced.
    """
    return {
        entry.name: entry
        for entry in entry_points(group=ENTRY_POINT_GROUP)
        if entry.name not in _OPTION_MODELS
    }


def _options_model(kind: str) -> type[_Options]:
    model = _OPTION_MODELS.get(kind)
    if model is not None:
        return model
    if kind in plugin_kinds():
        return PluginOptions
    known = [*KINDS, *sorted(plugin_kinds())]
    raise InvalidInput("kind", f"unknown site kind {kind!r}", f"use one of {known}")


@dataclass(frozen=True)
class SiteConfig:
    """A site's name, kind and validated options.

    Build it with :meth:`create` (which validates); ``options`` holds only the options given,
    with their validated values.
    """

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, kind: str, options: Mapping[str, Any] | None = None) -> SiteConfig:
        """Validate ``name``, ``kind`` and ``options``.

        Raises:
            InvalidInput: naming the field (``name``, ``kind``, ``options.<key>``) and the fix.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                "name",
                f"{name!r} is not a site name",
                "use lower-case letters, digits, - and _, starting with a letter, e.g. hpc-1",
            )
        parsed = validate_options(kind, options or {})
        return cls(name, kind, parsed.model_dump(mode="json", exclude_unset=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SiteConfig:
        """Read :meth:`to_dict`'s form back (validating it again)."""
        return cls.create(data["name"], data["kind"], data.get("options") or {})

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "kind", "options"}``, JSON-serializable."""
        return {"name": self.name, "kind": self.kind, "options": dict(self.options)}

    def settings(self) -> Any:
        """The options with every default filled in (a pydantic model of the kind)."""
        return validate_options(self.kind, self.options)


def validate_options(kind: str, options: Mapping[str, Any]) -> _Options:
    """Options of ``kind`` validated; strings (``"2"``, ``"true"``) are converted.

    Raises:
        InvalidInput: (field ``options.<key>``) an unknown option or a bad value.
    """
    return _validate(_options_model(kind), options, f"a {kind} site", _FIXES)


_FIXES = {
    "address": "use auto, ray://HOST:PORT or HOST:PORT; leave it out to start a local Ray",
    "pilot_address": "a host name or IP address the compute nodes reach, e.g. login1",
}


def site_options_help() -> str:
    """One line per kind: its options and their defaults."""
    lines = []
    for model in dict.fromkeys(_OPTION_MODELS.values()):
        kinds = [k for k, m in _OPTION_MODELS.items() if m is model]
        names = ", ".join(f"{k}={v.default}" for k, v in model.model_fields.items())
        lines.append(f"{'|'.join(kinds)}: {names}")
    return "\n".join(lines)


def open_executor(config: SiteConfig, home: Path) -> Executor:
    """Start (or connect) the executor of site ``config``.

    Raises:
        InvalidInput: the site's extra is not installed (field ``kind``).
        ExecutorError: the backend cannot be reached.
    """
    settings = config.settings()
    if config.kind not in _OPTION_MODELS:
        return _open_plugin(config, settings, home)
    if config.kind == "local":
        from genesis_platform.compute.local import LocalExecutor

        return LocalExecutor(max_workers=settings.max_workers)
    if config.kind == "ray":
        module = _import_extra("genesis_platform.compute.ray", "ray")
        return module.RayExecutor(  # type: ignore[no-any-return]
            address=settings.address,
            num_cpus=settings.num_cpus,
            max_workers=settings.max_workers,
            bundle=settings.bundle,
        )
    work_dir = settings.work_dir or str(home / "sites" / config.name)
    if settings.pilot:
        pilot = _import_extra("genesis_platform.compute.pilot", "hpc")
        return pilot.PilotExecutor(  # type: ignore[no-any-return]
            config.kind,
            work_dir=work_dir,
            pilot_min=settings.pilot_min,
            pilot_max=settings.pilot_max,
            pilot_workers=settings.pilot_workers,
            pilot_idle_timeout_s=settings.pilot_idle_timeout_s,
            pilot_walltime_s=settings.pilot_walltime_s,
            pilot_address=settings.pilot_address,
            poll_interval_s=settings.poll_interval_s,
            queue=settings.queue,
            account=settings.account,
            python=settings.python,
        )
    module = _import_extra("genesis_platform.compute.psij", "hpc")
    return module.PsijExecutor(  # type: ignore[no-any-return]
        config.kind,
        work_dir=work_dir,
        poll_interval_s=settings.poll_interval_s,
        queue=settings.queue,
        account=settings.account,
        python=settings.python,
        max_jobs=settings.max_jobs,
    )


def _open_plugin(config: SiteConfig, settings: _Options, home: Path) -> Executor:
    """Call the plugin's factory: ``factory(name, options, home) -> Executor``.

    ``options`` holds the site's options other than the common ones (``retries`` ...).
    """
    factory = plugin_kinds()[config.kind].load()
    own = dict(settings.model_extra or {})
    executor = factory(config.name, own, home)
    if not isinstance(executor, Executor):
        raise InvalidInput(
            "kind",
            f"the {config.kind!r} plugin made a {type(executor).__name__}, not an Executor",
            "its factory must return an object with submit, cancel, attach, capacity, shutdown",
        )
    return executor


def _import_extra(module: str, extra: str) -> Any:
    return import_extra(module, extra, "kind")
