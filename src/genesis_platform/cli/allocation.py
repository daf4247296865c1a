"""``genesis allocation grant|show|list``: what projects may use of sites and stations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.errors import InvalidInput
from genesis_platform.governance.allocations import AllocationInfo, format_hours

app = typer.Typer(
    help="Allocations: node-, core- and instrument-hours granted to projects.",
    no_args_is_help=True,
)


@app.command("grant")
def grant(
    project: str = typer.Argument(..., help="The project, e.g. battery-lab."),
    site: str | None = typer.Option(None, "--site", help="A compute site (node- or core-hours)."),
    station: str | None = typer.Option(None, "--station", help="A lab station (instrument-hours)."),
    unit: str = typer.Option(
        ..., "--unit", help="node-hours or core-hours on a site; instrument-hours on a station."
    ),
    amount: float = typer.Option(..., "--amount", help="How many, more than 0."),
    starts: str | None = typer.Option(None, "--starts", help="YYYY-MM-DD (UTC); default today."),
    ends: str | None = typer.Option(
        None, "--ends", help="YYYY-MM-DD (UTC); default a year after the start."
    ),
) -> None:
    """Grant a project hours on a site or station (again: change the amount or dates)."""
    start = None if starts is None else _day("--starts", starts)
    end = None if ends is None else _day("--ends", ends)
    with open_platform() as p:
        info = p.allocations.grant(
            project, site=site, station=station, unit=unit, amount=amount, starts=start, ends=end
        )
    console.print(
        f"granted {info.project} {format_hours(info.amount)} {info.unit} "
        f"on {info.kind} {info.resource} "
        f"from {_date(info.starts_at)} until {_date(info.ends_at)} "
        f"({format_hours(info.used)} used, {format_hours(info.remaining)} left)",
        highlight=False,
        markup=False,
    )


@app.command("show")
def show(
    project: str = typer.Argument(..., help="The project."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """A project's use against its grants, per site and station."""
    with open_platform() as p:
        infos = p.allocations.show(project)
    if not json_out and not infos:
        console.print(
            f"no allocations of project {project} that you may see (a project without "
            "allocations is not limited; those of projects you are not in are not shown)",
            highlight=False,
            markup=False,
        )
        return
    _print(f"allocations of {project}", infos, json_out, with_project=False)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every project's allocations."""
    with open_platform() as p:
        infos = p.allocations.list()
    _print("allocations", infos, json_out, with_project=True)


def _print(title: str, infos: Sequence[AllocationInfo], json_out: bool, with_project: bool) -> None:
    if json_out:
        print_json([_jsonable(i) for i in infos])
        return
    columns = ["resource", "unit", "granted", "used", "left", "until", "state"]
    rows = [
        [
            f"{i.kind} {i.resource}",
            i.unit,
            format_hours(i.amount),
            format_hours(i.used),
            format_hours(i.remaining),
            _date(i.ends_at),
            f"from {_date(i.starts_at)}" if i.state == "not started" else i.state,
        ]
        for i in infos
    ]
    if with_project:
        columns = ["project", *columns]
        rows = [[i.project, *row] for i, row in zip(infos, rows, strict=True)]
    print_table(title, columns, rows)


def _jsonable(info: AllocationInfo) -> dict[str, Any]:
    return {**asdict(info), "active": info.active}


def _day(option: str, text: str) -> dt.datetime:
    """``YYYY-MM-DD`` as its midnight UTC (or an ISO time, UTC unless it says otherwise)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(option, f"{text!r} is not a date", "e.g. 2027-01-01") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _date(when: dt.datetime) -> str:
    if (when.hour, when.minute) == (0, 0):
        return f"{when:%Y-%m-%d}"
    return f"{when:%Y-%m-%d %H:%M}"
