"""Allocations (``p.allocations``): what each project may use of each site and station.

An operator grants a project an amount of one unit on one site (``node-hours``,
``core-hours``) or station (``instrument-hours``), from a start to an end date. A project
that has no allocation on a resource is not limited there; one that has is:

- **refused before anything runs** when a submission could exceed what is left: a task's
  worst case (``nodes x cores x walltime`` core-hours, ``nodes x walltime`` node-hours) must
  fit in what remains, less what the project's tasks still running in this process may use
  (their *holds*); a station operation is refused once nothing is left. Outside the
  allocation's dates everything is refused. The error,
  :class:`~genesis_platform.errors.AllocationExceeded`, says what remains.
- **charged as work finishes**: the usage the compute and lab layers record (core-seconds,
  nodes x wall-seconds, instrument-seconds; divided by 3,600) is added to ``used`` of the
  matching active allocation by the batched writers of task and operation records, in the
  transaction that writes the final record: one UPDATE per allocation per batch.

Which (project, resource) pairs have allocations is cached in memory (read again at most
every :data:`REFRESH_S` seconds, and at once after a grant here), so submissions and
records of projects without any allocation cost a dictionary look-up, and nothing else.

Granting is ``administer`` on ``allocation:PROJECT`` (the operator's); reading is ``read`` on
``allocation:*``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update

from genesis_platform.catalog.tables import AllocationRow, utcnow
from genesis_platform.errors import AllocationExceeded, InvalidInput, NotFound
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext

__all__ = [
    "REFRESH_S",
    "UNITS",
    "AllocationInfo",
    "AllocationService",
    "Charge",
    "Hold",
    "format_hours",
    "task_needs",
]

UNITS: Mapping[str, tuple[str, ...]] = {
    "site": ("node-hours", "core-hours"),
    "station": ("instrument-hours",),
}
"""The units an allocation of each kind of resource is granted in."""
REFRESH_S = 1.0
"""How stale the cache of which projects have allocations may get (another process's grant)."""
DEFAULT_TERM = dt.timedelta(days=365)
"""How long a new allocation lasts when the grant gives no end."""

_TIMES = " \N{MULTIPLICATION SIGN} "
_ALLOCATIONS = cast(Table, AllocationRow.__table__)
_Key = tuple[str, str, str]  # project, kind, resource
_CHARGE = (
    update(_ALLOCATIONS)
    .where(
        _ALLOCATIONS.c.project == bindparam("p"),
        _ALLOCATIONS.c.resource_kind == bindparam("k"),
        _ALLOCATIONS.c.resource == bindparam("r"),
        _ALLOCATIONS.c.unit == bindparam("u"),
        _ALLOCATIONS.c.starts_at <= bindparam("now"),
        _ALLOCATIONS.c.ends_at > bindparam("now"),
    )
    .values(used=_ALLOCATIONS.c.used + bindparam("hours"))
)


@dataclass(frozen=True)
class AllocationInfo:
    """One allocation: the grant, what was used, what remains, and when it applies.

    Attributes:
        project: The project it is for.
        kind: ``site`` or ``station``.
        resource: The site's or station's name.
        unit: ``node-hours``, ``core-hours`` or ``instrument-hours``.
        amount: What was granted, in ``unit``.
        used: What the project's finished tasks or operations were charged, in ``unit``
            (may pass ``amount`` by what the last ones used beyond their estimate).
        remaining: ``amount - used``, at least 0.
        starts_at: When it starts applying (UTC).
        ends_at: When it stops (UTC).
        state: ``active``, ``expired`` or ``not started``, now.
        created_by: Who granted it first.
    """

    project: str
    kind: str
    resource: str
    unit: str
    amount: float
    used: float
    remaining: float
    starts_at: dt.datetime
    ends_at: dt.datetime
    state: str
    created_by: str = ""

    @property
    def active(self) -> bool:
        """Whether it applies now."""
        return self.state == "active"


@dataclass(frozen=True)
class Hold:
    """What a task admitted here may use at most, held until its final record is written."""

    project: str
    kind: str
    resource: str
    needs: Mapping[str, float]


@dataclass(frozen=True)
class Charge:
    """Usage to add to a project's allocations on one resource, with the hold it ends.

    Attributes:
        project: The project.
        kind: ``site`` or ``station``.
        resource: The site's or station's name.
        used: Hours used by unit (only units the project has allocations in).
        hold: The hold of the task it charges, released once the charge is written.
    """

    project: str
    kind: str
    resource: str
    used: Mapping[str, float] = field(default_factory=dict)
    hold: Hold | None = None


class AllocationService:
    """The allocations of one platform, and the checks and charges the other layers make.

    Args:
        ctx: The platform's service context.
        exists: Whether a resource exists: ``exists("site", "hpc")``; the platform passes
            one that knows the built-in sites and stations.
    """

    def __init__(self, ctx: ServiceContext, exists: Callable[[str, str], bool]) -> None:
        self._ctx = ctx
        self._exists = exists
        self._lock = threading.Lock()
        self._limits: dict[_Key, frozenset[str]] = {}
        self._allocated: frozenset[tuple[str, str]] = frozenset()
        """``(kind, resource)`` of every site and station with any allocation."""
        self._read_at = -math.inf
        self._grants = 0  # grants made here: a cache read that began before one is stale
        self._held: dict[tuple[str, str, str, str], float] = defaultdict(float)

    # -- granting and reading -----------------------------------------------------------

    def grant(
        self,
        project: str,
        *,
        site: str | None = None,
        station: str | None = None,
        unit: str,
        amount: float,
        starts: dt.datetime | dt.date | None = None,
        ends: dt.datetime | dt.date | None = None,
    ) -> AllocationInfo:
        """Grant ``project`` ``amount`` ``unit`` on ``site`` or ``station``.

        Granting again on the same site or station in the same unit changes the amount and
        the dates given (the others stay) and keeps what was used.

        Args:
            project: The project.
            site: A compute site (``node-hours`` or ``core-hours``), or
            station: a lab station (``instrument-hours``).
            unit: ``node-hours``, ``core-hours`` or ``instrument-hours``.
            amount: How many, more than 0.
            starts: When it starts applying (a date means its midnight UTC); default today.
            ends: When it stops; default a year after the start.

        Raises:
            InvalidInput: a bad project name, neither or both of site and station, a unit
                that does not fit the kind, an amount that is not more than 0, a naive time,
                or an end not after the start (naming the field); nothing is stored.
            NotFound: no such site or station.
            AccessDenied: the principal may not grant allocations (operators only).
        """
        project = _project(project)
        kind, resource = _target(site, station)
        if unit not in UNITS[kind]:
            raise InvalidInput(
                "unit",
                f"{unit!r} is not a unit of a {kind} allocation",
                f"use {' or '.join(UNITS[kind])}",
            )
        amount = _amount(amount)
        start = None if starts is None else _time("starts", starts)
        end = None if ends is None else _time("ends", ends)
        target = Resource("allocation", project)
        self._ctx.authorize("administer", target)  # before looking the resource up
        if not self._exists(kind, resource):
            raise NotFound(kind, resource, f"`genesis {kind} list` shows them")
        detail = {"op": "grant", kind: resource, "unit": unit, "amount": amount}
        with self._ctx.mutation("administer", target, detail) as s:
            row = s.scalar(
                select(AllocationRow).where(
                    AllocationRow.project == project,
                    AllocationRow.resource_kind == kind,
                    AllocationRow.resource == resource,
                    AllocationRow.unit == unit,
                )
            )
            if row is None:
                start = start or _midnight(utcnow())
                row = AllocationRow(
                    project=project,
                    resource_kind=kind,
                    resource=resource,
                    unit=unit,
                    used=0.0,
                    created_by=str(self._ctx.principal),
                )
                s.add(row)
            start = start or row.starts_at
            end = end or row.ends_at or start + DEFAULT_TERM
            if end <= start:
                raise InvalidInput(
                    "ends",
                    f"{_day(end)} is not after the start, {_day(start)}",
                    "give an end after the start",
                )
            if ends is not None and end <= utcnow():
                raise InvalidInput("ends", f"{_day(end)} is past", "give an end in the future")
            row.amount, row.starts_at, row.ends_at = amount, start, end
            s.flush()
            info = _info(row, utcnow())
        with self._lock:
            self._grants += 1
            self._read_at = -math.inf  # read the cache again: a grant may limit a project
        return info

    def show(self, project: str) -> builtins.list[AllocationInfo]:
        """``project``'s allocations: grant, used, remaining, dates, state (by resource)."""
        return self._read(AllocationRow.project == project)

    def list(self) -> builtins.list[AllocationInfo]:
        """The allocations of every project the principal may read, by project and resource."""
        return self._read()

    def remaining(self, project: str, kind: str, resource: str) -> dict[str, float]:
        """What ``project`` may still use of ``resource``, by unit.

        An allocation that is not active counts 0. An empty answer means the project has
        no allocation there: it is not limited.
        """
        return {
            a.unit: a.remaining if a.active else 0.0
            for a in self.show(project)
            if a.kind == kind and a.resource == resource
        }

    # -- checking (before tasks are stored and operations queued) -------------------------

    def limited(self, project: str, kind: str, resource: str) -> frozenset[str]:
        """The units ``project`` has allocations in on ``resource`` (empty: not limited).

        A site or station with allocations serves only projects allocated there: for any
        other project (or none) this raises AllocationExceeded, so naming another project
        is no way around a limit.

        From the cache: a dictionary look-up, and a read of the allocations' keys at most
        every :data:`REFRESH_S` seconds.
        """
        units = self._units(project, kind, resource)
        if not units and (kind, resource) in self._allocated:
            raise _unallocated(project, kind, resource)
        return units

    def _units(self, project: str, kind: str, resource: str) -> frozenset[str]:
        """The units ``project`` has allocations in on ``resource`` (for charging: no error)."""
        if time.monotonic() - self._read_at >= REFRESH_S:
            self._refresh()
        return self._limits.get((project, kind, resource), frozenset())

    def check(
        self,
        project: str,
        kind: str,
        resource: str,
        *,
        needs: Mapping[str, float] | None = None,
        what: Mapping[str, str] | None = None,
    ) -> None:
        """Raise AllocationExceeded unless ``project`` may use ``needs`` of ``resource``.

        Args:
            project: The project.
            kind: ``site`` or ``station``.
            resource: The site's or station's name.
            needs: Hours by unit the submission may use at most; a unit not given is only
                refused once nothing is left of it.
            what: For the message, how each unit's need was reckoned
                (``"4 cores x 30 min walltime"``).

        Raises:
            AllocationExceeded: the project has an allocation there and it is not active,
                or what is left (less what tasks running here hold) is less than ``needs``
                (or nothing is left).
        """
        if self.limited(project, kind, resource):
            with self._lock:
                self._admit(project, kind, resource, needs or {}, what or {})

    def hold(
        self,
        project: str,
        kind: str,
        resource: str,
        needs: Mapping[str, float],
        what: Mapping[str, str] | None = None,
    ) -> Hold | None:
        """:meth:`check`, then hold ``needs`` until the work's charge is written.

        Returns:
            The hold (pass it to :meth:`charge` or :meth:`release`), or None when the
            project is not limited there.
        """
        units = self.limited(project, kind, resource)
        if not units:
            return None
        held = Hold(project, kind, resource, {u: h for u, h in needs.items() if u in units})
        with self._lock:
            self._admit(project, kind, resource, needs, what or {})
            self._keep(held)
        return held

    def renew(
        self,
        hold: Hold,
        used: Mapping[str, float],
        needs: Mapping[str, float],
        what: Mapping[str, str] | None = None,
    ) -> tuple[Charge, Hold]:
        """Hold ``needs`` for the next attempt of work whose last attempt used ``used``.

        In one step, ``hold`` shrinks to ``used`` (what that attempt's charge, not yet
        written, will add), and the next attempt is admitted against what is left then.

        Returns:
            The finished attempt's charge (holding what it used until it is written), and
            the next attempt's hold.

        Raises:
            AllocationExceeded: the next attempt does not fit; ``hold`` is kept as it was.
        """
        units = self._units(hold.project, hold.kind, hold.resource)  # as granted now
        spent = Hold(
            hold.project,
            hold.kind,
            hold.resource,
            {u: max(0.0, h) for u, h in used.items() if u in units and math.isfinite(h)},
        )
        following = Hold(
            hold.project, hold.kind, hold.resource, {u: h for u, h in needs.items() if u in units}
        )
        with self._lock:
            self._drop(hold)
            self._keep(spent)
            try:
                self._admit(hold.project, hold.kind, hold.resource, needs, what or {})
            except BaseException:
                self._drop(spent)
                self._keep(hold)
                raise
            self._keep(following)
        used_here = {u: h for u, h in spent.needs.items() if h > 0}
        return Charge(hold.project, hold.kind, hold.resource, used_here, spent), following

    def release(self, hold: Hold | None) -> None:
        """Give back what a hold kept (the work never ran, or its charge was written)."""
        if hold is None:
            return
        with self._lock:
            self._drop(hold)

    def _keep(self, hold: Hold) -> None:
        """Count ``hold`` as held; call holding the lock."""
        for unit, hours in hold.needs.items():
            self._held[(hold.project, hold.kind, hold.resource, unit)] += hours

    def _drop(self, hold: Hold) -> None:
        """Stop counting ``hold``; call holding the lock."""
        for unit, hours in hold.needs.items():
            key = (hold.project, hold.kind, hold.resource, unit)
            left = self._held[key] - hours
            if left <= 1e-12:
                del self._held[key]
            else:
                self._held[key] = left

    # -- charging (the record writers of tasks and operations) ---------------------------

    def charge(
        self,
        project: str,
        kind: str,
        resource: str,
        used: Mapping[str, float],
        hold: Hold | None = None,
    ) -> Charge | None:
        """The charge of finished work, or None when there is nothing to write or release.

        Args:
            project: The project the work counted for.
            kind: ``site`` or ``station``.
            resource: Where it ran.
            used: Hours used by unit.
            hold: The hold it was admitted with.
        """
        units = self._units(project, kind, resource)
        hours = {u: h for u, h in used.items() if u in units and h > 0 and math.isfinite(h)}
        if not hours and hold is None:
            return None
        return Charge(project, kind, resource, hours, hold)

    def charge_task(
        self,
        project: str,
        site: str,
        usage: Mapping[str, Any] | None,
        nodes: int,
        hold: Hold | None = None,
    ) -> Charge | None:
        """:meth:`charge` of a finished task from its recorded usage.

        ``core_seconds / 3600`` core-hours and ``nodes x wall_seconds / 3600`` node-hours.
        """
        if hold is None and not self._units(project, "site", site):
            return None  # the common case: a project without allocations here
        return self.charge(project, "site", site, task_hours(usage, nodes), hold)

    def charge_operation(self, project: str, station: str, seconds: float) -> Charge | None:
        """:meth:`charge` of a finished station operation: its instrument-seconds / 3600."""
        if not self._units(project, "station", station):
            return None
        return self.charge(project, "station", station, {"instrument-hours": seconds / 3600.0})

    def apply(self, connection: Connection, charges: Sequence[Charge]) -> None:
        """Add ``charges`` to the active allocations, in ``connection``'s transaction.

        One UPDATE per allocation, however many charges name it, in a fixed order (so
        writers in several processes lock allocations in the same order). Call it before
        the transaction appends to the audit log, as a grant changes its allocation before
        its audit record; call :meth:`settle` once the transaction has committed.
        """
        totals: dict[tuple[str, str, str, str], float] = defaultdict(float)
        for c in charges:
            for unit, hours in c.used.items():
                totals[(c.project, c.kind, c.resource, unit)] += hours
        if not totals:
            return
        now = utcnow()
        connection.execute(
            _CHARGE,
            [
                {"p": p, "k": k, "r": r, "u": u, "now": now, "hours": hours}
                for (p, k, r, u), hours in sorted(totals.items())
            ],
        )

    def settle(self, charges: Sequence[Charge]) -> None:
        """Release the holds of ``charges``, whose transaction committed."""
        for c in charges:
            self.release(c.hold)

    # -- internals -----------------------------------------------------------------------

    def _read(self, *where: Any) -> builtins.list[AllocationInfo]:
        query = select(AllocationRow).where(*where)
        query = query.order_by(
            AllocationRow.project,
            AllocationRow.resource_kind,
            AllocationRow.resource,
            AllocationRow.unit,
        )
        now = utcnow()
        with self._ctx.reading(Resource("allocation", "*")) as s:
            infos = [_info(row, now) for row in s.scalars(query)]
        projects = sorted({i.project for i in infos})
        seen = dict(zip(projects, self._ctx.visible("project", projects), strict=True))
        return [i for i in infos if seen[i.project]]  # only the projects one may read

    def _refresh(self) -> None:
        read_at, grants = time.monotonic(), self._grants
        columns = (
            AllocationRow.project,
            AllocationRow.resource_kind,
            AllocationRow.resource,
            AllocationRow.unit,
        )
        with self._ctx.db.session(write=False) as s:
            rows = s.execute(select(*columns)).all()
        limits: dict[_Key, set[str]] = defaultdict(set)
        for project, kind, resource, unit in rows:
            limits[(project, kind, resource)].add(unit)
        with self._lock:
            self._limits = {key: frozenset(units) for key, units in limits.items()}
            self._allocated = frozenset((kind, resource) for _, kind, resource in limits)
            if grants == self._grants:
                self._read_at = read_at

    def _admit(
        self,
        project: str,
        kind: str,
        resource: str,
        needs: Mapping[str, float],
        what: Mapping[str, str],
    ) -> None:
        """Raise AllocationExceeded unless ``needs`` fits; call holding the lock."""
        now = utcnow()
        with self._ctx.db.session(write=False) as s:
            rows = s.scalars(
                select(AllocationRow).where(
                    AllocationRow.project == project,
                    AllocationRow.resource_kind == kind,
                    AllocationRow.resource == resource,
                )
            ).all()
            allocations = [_info(row, now) for row in rows]
        for a in allocations:
            held = self._held.get((project, kind, resource, a.unit), 0.0)
            left = a.amount - a.used - held
            need = needs.get(a.unit)
            fits = left > 0 if need is None else need <= left
            if a.active and fits:
                continue
            raise _refusal(a, left, held, need, what.get(a.unit, ""))


def _refusal(
    a: AllocationInfo, left: float, held: float, need: float | None, how: str
) -> AllocationExceeded:
    """Why allocation ``a`` refuses work that needs ``need`` (None: unknown) with ``left``."""
    where = f"{a.kind} {a.resource}"
    remaining = max(0.0, left) if a.active else 0.0
    bounded = need is None or math.isfinite(need)

    def refusal(message: str, field: str = "allocation") -> AllocationExceeded:
        return AllocationExceeded(
            message,
            project=a.project,
            kind=a.kind,
            resource=a.resource,
            unit=a.unit,
            remaining=remaining,
            needs=need if bounded else None,
            field=field,
        )

    if not a.active:
        when = (
            f"ended on {_day(a.ends_at)}"
            if a.state == "expired"
            else f"starts on {_day(a.starts_at)}"
        )
        return refusal(
            f"project {a.project}'s allocation of {format_hours(a.amount)} {a.unit} "
            f"on {where} {when}; "
            "ask an operator for a new one with `genesis allocation grant`"
        )
    if not bounded:
        return refusal(
            f"project {a.project} has an allocation of {format_hours(a.amount)} {a.unit} "
            f"on {where}, "
            "and this task gives no walltime, so what it may use cannot be bounded; give it "
            "one (resources.walltime_s) or set the site's default_walltime_s option",
            "resources.walltime_s",
        )
    message = (
        f"project {a.project} has {format_hours(remaining)} of {format_hours(a.amount)} "
        f"{a.unit} left on "
        f"{where} until {_day(a.ends_at)}"
    )
    if held > 0:
        message += f" ({format_hours(held)} more held by its tasks running here)"
    if need is not None:
        work = "task" if a.kind == "site" else "operation"
        message += f"; this {work} asks for up to {format_hours(need)} {a.unit}"
        message += f" ({how})" if how else ""
    return refusal(message + "; ask an operator for more with `genesis allocation grant`")


def task_hours(usage: Mapping[str, Any] | None, nodes: int) -> dict[str, float]:
    """What a task's recorded ``usage`` counts for, in hours by unit.

    ``core_seconds / 3600`` core-hours and ``nodes x wall_seconds / 3600`` node-hours.
    """
    usage = usage or {}
    return {
        "core-hours": _seconds(usage.get("core_seconds")) / 3600.0,
        "node-hours": nodes * _seconds(usage.get("wall_seconds")) / 3600.0,
    }


def task_needs(
    nodes: int, cores: int, walltime_s: float | None, walltime_note: str = "walltime"
) -> tuple[dict[str, float], dict[str, str]]:
    """The most a task may use, by unit, and how each was reckoned (for messages).

    ``nodes x cores x walltime`` core-hours and ``nodes x walltime`` node-hours; without a
    walltime, infinite (such a task is refused where its project is limited).
    """
    if walltime_s is None:
        return {"core-hours": math.inf, "node-hours": math.inf}, {}
    hours = walltime_s / 3600.0
    wall = f"{_duration(walltime_s)} {walltime_note}"
    node_part = [f"{nodes} nodes"] if nodes > 1 else []
    return (
        {"core-hours": nodes * cores * hours, "node-hours": nodes * hours},
        {
            "core-hours": _TIMES.join([*node_part, _plural(cores, "core"), wall]),
            "node-hours": _TIMES.join([_plural(nodes, "node"), wall]),
        },
    )


def _info(row: AllocationRow, now: dt.datetime) -> AllocationInfo:
    state = "active"
    if now >= row.ends_at:
        state = "expired"
    elif now < row.starts_at:
        state = "not started"
    return AllocationInfo(
        project=row.project,
        kind=row.resource_kind,
        resource=row.resource,
        unit=row.unit,
        amount=row.amount,
        used=row.used,
        remaining=max(0.0, row.amount - row.used),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        state=state,
        created_by=row.created_by,
    )


def _project(project: Any) -> str:
    if not isinstance(project, str) or not project.strip():
        raise InvalidInput("project", "a project name is needed", "e.g. battery-lab")
    if project != project.strip() or any(c.isspace() for c in project) or len(project) > 200:
        raise InvalidInput(
            "project",
            f"{project!r} is not a project name",
            "use up to 200 letters, digits, '.', '_' and '-', without spaces",
        )
    return project


def _target(site: str | None, station: str | None) -> tuple[str, str]:
    if (site is None) == (station is None):
        raise InvalidInput(
            "site", "give either a site or a station", "e.g. --site hpc or --station xrd"
        )
    kind, name = ("site", site) if site is not None else ("station", station)
    if not isinstance(name, str) or not name:
        raise InvalidInput(kind, "must be a name", f"`genesis {kind} list` shows them")
    return kind, name


def _amount(amount: Any) -> float:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidInput("amount", f"{amount!r} is not a number", "e.g. --amount 1000")
    if not math.isfinite(amount) or amount <= 0:
        raise InvalidInput("amount", f"must be more than 0, got {amount!r}", "e.g. --amount 1000")
    return float(amount)


def _time(label: str, value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidInput(label, "has no time zone", "give e.g. 2027-01-01T00:00+00:00")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise InvalidInput(label, f"{value!r} is not a date or time", "e.g. 2027-01-01")


def _midnight(when: dt.datetime) -> dt.datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


def format_hours(value: float) -> str:
    """Hours for people: four significant digits, thousands separated, no exponent."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _day(when: dt.datetime) -> str:
    if (when.hour, when.minute, when.second) == (0, 0, 0):
        return f"{when:%Y-%m-%d}"
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _unallocated(project: str, kind: str, resource: str) -> AllocationExceeded:
    named = f"project {project}" if project else "work without a project"
    return AllocationExceeded(
        f"{kind} {resource} is allocated to projects, and {named} has no allocation on it; "
        "run it in a project that has one (campaign `project:`, `project=`), or ask an "
        "operator for one with `genesis allocation grant`",
        project=project,
        kind=kind,
        resource=resource,
        unit="",
        remaining=0.0,
    )
