"""The site service (``p.sites``): register, check and open compute sites.

Sites are stored in the catalog as their :class:`~genesis_platform.compute.sites.SiteConfig`
plus the last status a check recorded. The built-in ``local`` site always exists; it can be
checked but not removed or redefined. Executors are opened on first use and shared by
everything in the process that runs tasks on the site (tasks, campaigns), until
:meth:`SiteService.close`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from genesis_platform.catalog.tables import SiteRow, TaskRow, utcnow
from genesis_platform.compute.protocols import Executor, TaskResult, TaskSpec
from genesis_platform.compute.sites import LOCAL_SITE, SiteConfig, open_executor
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.state import AssetFacts

__all__ = ["SiteInfo", "SiteService", "SiteStatus"]

SiteStatus = str
"""One of the DOE IRI resource states: ``up``, ``degraded``, ``down``, ``unknown``."""

PROBE = "genesis_platform.compute.probe:ping"
"""The callable a site check runs."""

_DEGRADED_FRACTION = 0.5
"""A check that succeeds after more than this fraction of its timeout marks the site degraded."""


@dataclass(frozen=True)
class SiteInfo:
    """A site as the catalog knows it.

    Attributes:
        name: The site's name.
        kind: ``local``, ``ray``, ``slurm``, ``pbs``, ``lsf`` or ``flux``.
        options: The options given when it was added.
        status: ``up``, ``degraded``, ``down`` or ``unknown`` (never checked).
        status_reason: Why, in words.
        status_at: When the status was recorded.
        capacity: Free slots at the last check (None before one).
        builtin: True for the built-in ``local`` site.
    """

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    status: SiteStatus = "unknown"
    status_reason: str = ""
    status_at: dt.datetime | None = None
    capacity: int | None = None
    builtin: bool = False

    def config(self) -> SiteConfig:
        """The site's ``{kind, options}`` config."""
        return SiteConfig(self.name, self.kind, dict(self.options))


class SiteService:
    """The compute sites of one platform."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        ctx.resolve("site", self._builtin_facts)
        self._executors: dict[str, Executor] = {}
        self._configs: dict[str, SiteConfig] = {}
        self._lock = threading.Lock()

    def add(self, name: str, kind: str, options: Mapping[str, Any] | None = None) -> SiteInfo:
        """Register site ``name`` of ``kind`` with ``options`` (validated first).

        Raises:
            InvalidInput: a bad name, kind or option (naming it), or the name is taken.
        """
        config = SiteConfig.create(name, kind, options)
        if name == LOCAL_SITE:
            raise InvalidInput("name", "'local' is the built-in site", "choose another name")
        with self._ctx.mutation("administer", Resource("site", name), config.to_dict()) as s:
            if s.scalar(select(SiteRow.id).where(SiteRow.name == name)) is not None:
                raise InvalidInput(
                    "name",
                    f"a site named {name!r} exists",
                    f"remove it first (genesis site remove {name}) or choose another name",
                )
            s.add(
                SiteRow(
                    name=name,
                    kind=config.kind,
                    options=dict(config.options),
                    created_by=str(self._ctx.principal),
                )
            )
            self._ctx.register_asset(s, "site", name)
        return self.get(name)

    def _builtin_facts(self, name: str) -> AssetFacts | None:
        """The built-in site is the operator's: it runs on the platform's own machine."""
        return AssetFacts("site", name, self._ctx.operator) if name == LOCAL_SITE else None

    def list(self) -> list[SiteInfo]:
        """The built-in ``local`` site, then every registered site by name."""
        with self._ctx.reading(Resource("site", "*")) as s:
            rows = s.scalars(select(SiteRow).order_by(SiteRow.name)).all()
            seen = self._ctx.visible("site", [row.name for row in rows])
            infos = [
                _info(row)
                for row, ok in zip(rows, seen, strict=True)
                if ok and row.name != LOCAL_SITE
            ]
            local = next((_info(row) for row in rows if row.name == LOCAL_SITE), None)
        if not self._ctx.visible("site", [LOCAL_SITE])[0]:
            return infos  # the built-in site is the operator's
        return [local or _builtin_local(), *infos]

    def get(self, name: str) -> SiteInfo:
        """One site.

        Raises:
            NotFound: no site of that name.
        """
        with self._ctx.reading(Resource("site", name)) as s:
            row = s.scalar(select(SiteRow).where(SiteRow.name == name))
            if row is not None:
                return _info(row)
        if name == LOCAL_SITE:
            return _builtin_local()
        raise NotFound("site", name, "`genesis site list` shows the sites")

    def config(self, name: str) -> SiteConfig:
        """Site ``name``'s config, read once per service (tasks ask for it on every submit).

        Raises:
            NotFound: no site of that name.
        """
        with self._lock:
            config = self._configs.get(name)
        if config is None:
            config = self.get(name).config()
            with self._lock:
                self._configs[name] = config
        return config

    def remove(self, name: str) -> None:
        """Unregister site ``name``; its task records stay.

        Raises:
            InvalidInput: the site is the built-in one, or tasks on it are still running.
            NotFound: no site of that name.
        """
        if name == LOCAL_SITE:
            raise InvalidInput("name", "the built-in site 'local' cannot be removed")
        self.get(name)
        with self._ctx.mutation("administer", Resource("site", name)) as s:
            running = s.scalars(
                select(TaskRow.id)
                .where(TaskRow.site == name, TaskRow.state.in_(("new", "queued", "active")))
                .limit(5)
            ).all()
            if running:
                raise InvalidInput(
                    "name",
                    f"tasks {list(running)} on site {name!r} have not finished",
                    "wait for them or cancel them (genesis task cancel ID)",
                )
            row = s.scalar(select(SiteRow).where(SiteRow.name == name))
            if row is not None:
                s.delete(row)
            self._ctx.forget_asset(s, "site", name)
        with self._lock:
            executor = self._executors.pop(name, None)
            self._configs.pop(name, None)
        if executor is not None:
            executor.shutdown(wait=False)

    def check(self, name: str) -> SiteInfo:
        """Run a trivial task on site ``name`` and record its status, reason and capacity.

        ``up``: the task ran. ``degraded``: it ran, but took more than half the site's
        ``check_timeout_s``. ``down``: the site could not be reached or the task failed or
        timed out.
        """
        info = self.get(name)
        timeout = info.config().settings().check_timeout_s
        status, reason, capacity = _probe(lambda: self.executor(name), timeout)
        with self._ctx.mutation("administer", Resource("site", name), {"status": status}) as s:
            row = s.scalar(select(SiteRow).where(SiteRow.name == name))
            if row is None:  # the built-in site is stored at its first check
                row = SiteRow(name=name, kind="local", created_by=str(self._ctx.principal))
                s.add(row)
            row.status, row.status_reason, row.capacity = status, reason, capacity
            row.status_at = utcnow()
        return self.get(name)

    def executor(self, name: str) -> Executor:
        """The executor of site ``name``, opened on first use and kept until :meth:`close`.

        Raises:
            NotFound: no site of that name.
            ExecutorError: the site's backend cannot be reached.
        """
        with self._lock:
            executor = self._executors.get(name)
        if executor is not None:
            return executor
        self._ctx.authorize("run", Resource("site", name))
        opened = open_executor(self.config(name), self._ctx.home)
        with self._lock:
            executor = self._executors.setdefault(name, opened)
        if executor is not opened:
            opened.shutdown(wait=False)
        return executor

    def close(self, wait: bool = False) -> None:
        """Shut down every executor this service opened."""
        with self._lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.shutdown(wait=wait)


def _probe(open_site: Callable[[], Executor], timeout: float) -> tuple[SiteStatus, str, int | None]:
    """Open the site and run the check task, all within ``timeout`` seconds."""
    start = time.monotonic()
    outcome: Future[tuple[Executor, TaskResult]] = Future()
    submitted: list[Future[TaskResult]] = []

    def run() -> None:
        try:
            executor = open_site()
            submitted.append(executor.submit(TaskSpec(function=PROBE, name="site check")))
            outcome.set_result((executor, submitted[0].result()))
        except BaseException as exc:  # any failure of the site means it is down
            outcome.set_exception(exc)

    # A daemon thread: a backend that hangs while connecting must not keep the process alive.
    threading.Thread(target=run, name="genesis-site-check", daemon=True).start()
    try:
        executor, result = outcome.result(timeout=timeout)
    except TimeoutError:
        for check in submitted:
            check.cancel()  # leave no check job behind in a batch queue
        return "down", f"no answer within the check timeout of {timeout:g} s", None
    except Exception as exc:
        return "down", f"{type(exc).__name__}: {exc}", None
    elapsed = time.monotonic() - start
    host = result.output.get("host", "?") if isinstance(result.output, dict) else "?"
    reason = f"check task ran on {host} in {elapsed:.2f} s"
    if elapsed > _DEGRADED_FRACTION * timeout:
        return "degraded", reason + f", over half the {timeout:g} s timeout", executor.capacity()
    return "up", reason, executor.capacity()


def _info(row: SiteRow) -> SiteInfo:
    return SiteInfo(
        name=row.name,
        kind=row.kind,
        options=dict(row.options),
        status=row.status,
        status_reason=row.status_reason,
        status_at=row.status_at,
        capacity=row.capacity,
        builtin=row.name == LOCAL_SITE,
    )


def _builtin_local() -> SiteInfo:
    return SiteInfo(name=LOCAL_SITE, kind="local", builtin=True)
