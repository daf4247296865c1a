"""``genesis station add|list|show|status|abort|remove|refill|reserve|maintenance|windows|...``."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict
from typing import Any

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.cli.site import parse_options
from genesis_platform.errors import InvalidInput
from genesis_platform.labs.drivers import DRIVERS
from genesis_platform.labs.emulators import EMULATORS
from genesis_platform.labs.protocols import StationStatus
from genesis_platform.labs.scheduler import Window
from genesis_platform.labs.service import InventoryRow, StationRecord

app = typer.Typer(help="Lab stations: instruments and robotic cells.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Station name, e.g. flow-cell-1."),
    driver: str = typer.Option(..., "--driver", help=f"One of {', '.join(DRIVERS)}."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="KEY=VALUE, repeatable (see docs/labs.md)."
    ),
    limit: list[str] = typer.Option(
        [], "--limit", help="Safety limit NAME=LOW:HIGH or NAME=A,B (allowed values)."
    ),
    interlock: list[str] = typer.Option(
        [], "--interlock", help='Condition every operation must meet: "T <= 60 if solvent == DMC".'
    ),
    timeout_s: float | None = typer.Option(
        None, "--timeout", help="Abort an operation that runs longer (seconds)."
    ),
) -> None:
    """Register a station with its driver, options and safety policy (checked now)."""
    safety: dict[str, Any] = {}
    if limit:
        safety["limits"] = _limits(limit)
    if interlock:
        safety["interlocks"] = list(interlock)
    if timeout_s is not None:
        safety["timeout_s"] = timeout_s
    with open_platform() as p:
        record = p.stations.add(name, driver, parse_options(option), safety)
    console.print(f"added station {record.name} ({record.driver})", highlight=False, markup=False)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every station: the built-in simulated ones and the registered ones."""
    with open_platform() as p:
        records = p.stations.list()
    if json_out:
        print_json([asdict(r) for r in records])
        return
    print_table(
        "stations",
        ["name", "driver", "options", "safety"],
        [
            (
                r.name,
                r.driver + (" (built in)" if r.builtin else ""),
                " ".join(f"{k}={v}" for k, v in r.options.items()),
                _safety_summary(r),
            )
            for r in records
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Station name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A station's driver, safety policy, parameters and measurements."""
    with open_platform() as p:
        record = p.stations.get(name)
        info = p.stations.describe(name)
    if json_out:
        print_json({**asdict(record), "description": asdict(info)})
        return
    console.print(
        f"[bold]{info.name}[/] ({record.driver}, {info.protocol}, {info.slots} slots)",
        highlight=False,
    )
    console.print(info.description, highlight=False, markup=False)
    for pname, schema in info.parameters.items():
        console.print(f"  parameter {pname}: {dict(schema)}", highlight=False, markup=False)
    for mname, schema in info.measurements.items():
        console.print(f"  measures {mname}: {dict(schema)}", highlight=False, markup=False)
    for cname, schema in info.consumables.items():
        console.print(f"  consumable {cname}: {dict(schema)}", highlight=False, markup=False)
    for line in record.safety_lines():
        console.print(f"  safety {line}", highlight=False, markup=False)


@app.command("status")
def status(
    name: str = typer.Argument(..., help="Station name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """State (idle, busy, error, offline, maintenance), queue and heartbeat."""
    with open_platform() as p:
        now = p.stations.status(name)
    if json_out:
        print_json({"station": name, **asdict(now)})
        return
    _print_status(name, now)


@app.command("abort")
def abort(name: str = typer.Argument(..., help="Station name.")) -> None:
    """Stop the station's current operations and drop its queue, in every process."""
    with open_platform() as p, console.status(f"aborting {name} ..."):
        applied = p.stations.abort(name)
    message = "aborted" if applied else "no process has it open; nothing was running"
    console.print(f"{name}: {message}", highlight=False, markup=False)


@app.command("refill")
def refill(
    name: str = typer.Argument(..., help="Station name."),
    consumable: str | None = typer.Option(None, "--consumable", help="Default: all of them."),
) -> None:
    """Fill the station's consumables (ends an error for an empty reservoir)."""
    with open_platform() as p:
        applied = p.stations.refill(name, consumable)
    message = "refilled" if applied else "no process has it open; it opens full"
    console.print(f"{name}: {message}", highlight=False, markup=False)


@app.command("remove")
def remove(name: str = typer.Argument(..., help="Station name.")) -> None:
    """Unregister a station (its operation records stay)."""
    with open_platform() as p:
        p.stations.remove(name)
    console.print(f"removed station {name}", highlight=False, markup=False)


@app.command("reserve")
def reserve(
    name: str = typer.Argument(..., help="Station name."),
    project: str = typer.Option(..., "--project", help="The project the window belongs to."),
    start: str = typer.Option(..., "--start", help="ISO time, e.g. 2026-12-01T09:00+00:00."),
    end: str = typer.Option(..., "--end", help="ISO time, or a duration from the start: 2h."),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Reserve the station for one project: only its operations run in the window."""
    starts_at = _time(start, "--start")
    with open_platform() as p:
        window = p.stations.reserve(name, project, starts_at, _end(starts_at, end), reason)
    _print_windows([window])


@app.command("maintenance")
def maintenance(
    name: str = typer.Argument(..., help="Station name."),
    start: str = typer.Option("now", "--start", help="ISO time or now."),
    end: str = typer.Option(..., "--end", help="ISO time, or a duration from the start: 2h."),
    reason: str = typer.Option("maintenance", "--reason"),
) -> None:
    """A maintenance window: nothing is sent to the station in it."""
    starts_at = _time(start, "--start")
    with open_platform() as p:
        window = p.stations.maintenance(name, starts_at, _end(starts_at, end), reason)
    _print_windows([window])


@app.command("windows")
def windows(
    name: str = typer.Argument(..., help="Station name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The station's current and coming reservation and maintenance windows."""
    with open_platform() as p:
        found = p.stations.windows(name)
    if json_out:
        print_json([asdict(w) for w in found])
        return
    _print_windows(found)


@app.command("unwindow")
def unwindow(
    window_id: int = typer.Argument(..., help="Window id (genesis station windows)."),
) -> None:
    """Delete a reservation or maintenance window."""
    with open_platform() as p:
        p.stations.cancel_window(window_id)
    console.print(f"deleted window {window_id}", highlight=False, markup=False)


@app.command("operations")
def operations(
    name: str | None = typer.Argument(None, help="Station name (default: all)."),
    project: str | None = typer.Option(None, "--project"),
    limit: int = typer.Option(50, "--limit", min=1),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The newest operations sent to (or refused by) stations."""
    with open_platform() as p:
        found = p.stations.operations(station=name, project=project, limit=limit)
    if json_out:
        print_json([asdict(o) for o in found])
        return
    print_table(
        "operations",
        ["id", "station", "operation", "project", "state", "seconds", "error"],
        [
            (
                o.id,
                o.station,
                o.operation_id,
                o.project,
                o.state,
                f"{o.instrument_seconds:.2f}",
                o.error[:60],
            )
            for o in found
        ],
    )


@app.command("usage")
def usage(
    project: str | None = typer.Option(None, "--project"),
    station: str | None = typer.Option(None, "--station"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Instrument-seconds per project and station."""
    with open_platform() as p:
        totals = p.stations.usage(project=project, station=station)
    rows = [
        {"project": proj, "station": st, "instrument_seconds": round(seconds, 3)}
        for (proj, st), seconds in sorted(totals.items())
    ]
    if json_out:
        print_json(rows)
        return
    print_table(
        "usage", ["project", "station", "instrument_seconds"], [tuple(r.values()) for r in rows]
    )


@app.command("inventory")
def inventory(
    days: float = typer.Option(30.0, "--days", help="The period: this many days to now."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Lab readiness: every station's protocol, capabilities, safety, use and faults."""
    if not (math.isfinite(days) and 0 < days <= _LONGEST_DAYS):
        raise InvalidInput(
            "--days",
            f"must be a number of days > 0 and <= {_LONGEST_DAYS:g}, got {days:g}",
            "e.g. --days 30",
        )
    until = dt.datetime.now(dt.UTC)
    with open_platform() as p, console.status("describing the stations ..."):
        rows = p.stations.inventory(until - dt.timedelta(days=days), until)
    if json_out:
        print_json([asdict(r) for r in rows])
        return
    print_table(
        f"lab readiness, last {days:g} days",
        [
            "station",
            "driver",
            "protocol",
            "capabilities",
            "safety",
            "ops",
            "utilization",
            "uptime",
            "faults",
            "reachable",
        ],
        [_inventory_cells(r) for r in rows],
    )


@app.command("serve-sila")
def serve_sila(
    emulator: str = typer.Option(..., "--emulator", help=f"One of {', '.join(sorted(EMULATORS))}."),
    port: int = typer.Option(
        50052, "--port", min=0, max=65535, help="0: a free one (the first line says which)."
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    latency_s: float = typer.Option(0.5, "--latency", help="Mean operation time, s."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Run a SiLA 2 server around a simulated instrument (until Ctrl-C)."""
    if emulator not in EMULATORS:
        raise InvalidInput(
            "--emulator", f"no emulator {emulator!r}", f"use one of {sorted(EMULATORS)}"
        )
    if not host.strip():
        raise InvalidInput("--host", "is empty", "e.g. --host 127.0.0.1")
    if not (math.isfinite(latency_s) and latency_s >= 0):
        raise InvalidInput(
            "--latency",
            f"must be a number of seconds >= 0, got {latency_s:g}",
            "e.g. --latency 0.5",
        )
    from genesis_platform.labs.sila_server import SilaStationServer, run_sila_server

    def listening(server: SilaStationServer) -> None:
        # Only once it listens: a taken port or a bad host prints the error alone.
        console.print(
            f"SiLA 2 server for {emulator} on {host}:{server.port} (insecure); Ctrl-C stops it",
            highlight=False,
            markup=False,
        )

    run_sila_server(emulator, host=host, port=port, latency_s=latency_s, seed=seed, ready=listening)


def _limits(pairs: list[str]) -> dict[str, str]:
    limits: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise InvalidInput("--limit", f"{pair!r} is not NAME=LOW:HIGH", "e.g. --limit T=20:60")
        limits[key] = value
    return limits


def _safety_summary(record: StationRecord) -> str:
    return "; ".join(record.safety_lines())


def _print_status(name: str, now: StationStatus) -> None:
    line = f"{name}: {now.state.value}"
    if now.reason:
        line += f" ({now.reason})"
    console.print(line, highlight=False, markup=False)
    console.print(
        f"  busy slots {now.busy_slots}, queue {now.queue_length}", highlight=False, markup=False
    )
    if now.heartbeat:
        seen = dt.datetime.fromtimestamp(now.heartbeat, dt.UTC)
        console.print(f"  heartbeat {seen:%Y-%m-%d %H:%M:%S} UTC", highlight=False, markup=False)
    for consumable, left in now.consumables.items():
        console.print(f"  {consumable}: {left:g} left", highlight=False, markup=False)


def _print_windows(found: list[Window]) -> None:
    print_table(
        "windows",
        ["id", "kind", "project", "starts", "ends", "reason"],
        [
            (
                w.id,
                w.kind,
                w.project,
                f"{w.starts_at:%Y-%m-%d %H:%M}",
                f"{w.ends_at:%Y-%m-%d %H:%M}",
                w.reason,
            )
            for w in found
        ],
    )


def _inventory_cells(row: InventoryRow) -> tuple[Any, ...]:
    return (
        row.name,
        row.driver,
        row.protocol,
        ", ".join(row.capabilities),
        "; ".join(row.safety) or "-",
        row.operations,
        f"{100 * row.utilization:.1f}%",
        f"{100 * row.uptime:.1f}%",
        f"{row.faults}" + (f" ({row.last_fault[:40]})" if row.last_fault else ""),
        row.reachable,
    )


_LONGEST_DAYS = 36500.0
"""A century: the longest inventory period, window, and distance of a window from now."""

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd])", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _time(text: str, field: str) -> dt.datetime:
    """``now`` or an ISO time (UTC when it names no zone), within a century of now.

    Raises:
        InvalidInput: on ``field``.
    """
    if text == "now":
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            field, f"{text!r} is not an ISO time", "e.g. 2026-12-01T09:00+00:00"
        ) from None
    value = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return _near(value, text, field)


def _end(starts_at: dt.datetime, text: str) -> dt.datetime:
    """``--end``: an ISO time, or a duration from ``starts_at`` (``90m``, ``2h``, ``1.5d``).

    Raises:
        InvalidInput: on ``--end``.
    """
    duration = _DURATION.fullmatch(text)
    if duration is None:
        return _time(text, "--end")
    seconds = float(duration[1]) * _UNIT_S[duration[2]]
    if seconds > _LONGEST_DAYS * 86400:
        raise InvalidInput(
            "--end", f"{text!r} is longer than {_LONGEST_DAYS:g} days", "give a shorter window"
        )
    return _near(starts_at + dt.timedelta(seconds=seconds), text, "--end")


def _near(value: dt.datetime, text: str, field: str) -> dt.datetime:
    """``value``, unless it is more than a century from now (or cannot be put in UTC)."""
    try:
        distance = abs(value.astimezone(dt.UTC) - dt.datetime.now(dt.UTC))
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        distance = dt.timedelta.max
    if distance > dt.timedelta(days=_LONGEST_DAYS):
        raise InvalidInput(
            field,
            f"{text!r} is more than {_LONGEST_DAYS:g} days from now",
            "give a time within a century of now",
        )
    return value
