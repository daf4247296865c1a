"""The lab readiness inventory: every station, what it is, how it is kept safe, how used.

``genesis station inventory [--json]`` answers the program's review of robotic
laboratories: per station its driver and protocol, capabilities, declared safety features,
and over a period (default the last 30 days) its operations, instrument-seconds,
utilization (instrument time over the period times its slots), uptime (the share of the
period outside maintenance windows) and faults (operations that failed or timed out, with
the newest message), plus the operations its safety policy refused.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from genesis_platform.catalog.tables import StationOperationRow
from genesis_platform.errors import GenesisError
from genesis_platform.governance import Resource, ServiceContext

if TYPE_CHECKING:
    from genesis_platform.labs.service import InventoryRow, StationRecord, StationService

__all__ = ["inventory_rows"]

_FAULT_STATES = ("failed", "timed_out")
_RAN_STATES = ("completed", "failed", "timed_out", "aborted")


def inventory_rows(
    service: StationService, ctx: ServiceContext, since: dt.datetime, until: dt.datetime
) -> list[InventoryRow]:
    """One :class:`InventoryRow` per station, by name, for the period ``[since, until)``."""
    period_s = max((until - since).total_seconds(), 1e-9)
    counts = _operation_counts(ctx, since, until)
    rows = []
    for record in service.list():
        rows.append(_row(service, record, counts.get(record.name, {}), since, until, period_s))
    return rows


def _row(
    service: StationService,
    record: StationRecord,
    counts: dict[str, float | str],
    since: dt.datetime,
    until: dt.datetime,
    period_s: float,
) -> InventoryRow:
    from genesis_platform.labs.service import InventoryRow

    protocol, capabilities, slots, reachable = _description(service, record)
    maintenance_s = _covered_seconds(
        [
            (max(w.starts_at, since), min(w.ends_at, until))
            for w in service.windows(record.name, include_past=True)
            if w.kind == "maintenance"
        ]
    )
    seconds = float(counts.get("seconds", 0.0))
    return InventoryRow(
        name=record.name,
        driver=record.driver,
        protocol=protocol,
        capabilities=capabilities,
        safety=tuple(record.safety_lines()),
        operations=int(counts.get("ran", 0)),
        instrument_seconds=seconds,
        utilization=seconds / (period_s * slots),
        uptime=max(0.0, 1.0 - maintenance_s / period_s),
        faults=int(counts.get("faults", 0)),
        last_fault=str(counts.get("last_fault", "")),
        refused=int(counts.get("refused", 0)),
        reachable=reachable,
        slots=slots,
    )


def _covered_seconds(spans: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Seconds covered by the union of ``spans`` (overlaps counted once)."""
    total, reach = 0.0, None
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += (end - start).total_seconds()
            reach = end if reach is None else max(reach, end)
    return total


def _description(
    service: StationService, record: StationRecord
) -> tuple[str, tuple[str, ...], int, str]:
    """Protocol, capabilities, slots and reachability, from the driver when it answers."""
    try:
        info = service.describe_quietly(record)
    except GenesisError as exc:
        fallback = {"simulated": "simulated", "sila2": "SiLA 2", "bluesky": "Bluesky"}
        return fallback.get(record.driver, record.driver), (), 1, f"no: {exc}"
    return info.protocol, tuple(info.capabilities), max(1, info.slots), "yes"


def _operation_counts(
    ctx: ServiceContext, since: dt.datetime, until: dt.datetime
) -> dict[str, dict[str, float | str]]:
    """Per station: operations that ran, their seconds, faults, refusals, the last fault."""
    op = StationOperationRow
    in_period = (op.submitted_at >= since) & (op.submitted_at < until)
    out: dict[str, dict[str, float | str]] = {}
    with ctx.reading(Resource("station", "*")) as s:
        query = select(op.station, op.state, func.count(op.id), func.sum(op.instrument_seconds))
        sent = op.started_at.is_not(None)  # handed to the driver (not aborted while queued)
        for station, state, count, seconds in s.execute(
            query.where(in_period, sent | (op.state == "refused")).group_by(op.station, op.state)
        ):
            entry = out.setdefault(station, {})
            if state in _RAN_STATES:
                entry["ran"] = float(entry.get("ran", 0)) + count
                entry["seconds"] = float(entry.get("seconds", 0.0)) + float(seconds or 0.0)
            if state in _FAULT_STATES:
                entry["faults"] = float(entry.get("faults", 0)) + count
            if state == "refused":
                entry["refused"] = count
        for station, error in s.execute(
            select(op.station, op.error)
            .where(in_period, op.state.in_(_FAULT_STATES))
            .order_by(op.id.desc())
        ):
            out.setdefault(station, {}).setdefault("last_fault", error)
    return out
