"""``genesis site add|list|show|check|remove``."""

from __future__ import annotations

from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.compute.service import SiteInfo
from genesis_platform.compute.sites import KINDS, site_options_help
from genesis_platform.errors import InvalidInput

app = typer.Typer(help="Compute sites: where tasks and simulations run.", no_args_is_help=True)


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; each value is validated by the site kind later.

    Raises:
        InvalidInput: (field ``--option``) an entry without ``=`` or a repeated key.
    """
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(
                "--option", f"{pair!r} is not KEY=VALUE", "e.g. --option max_workers=4"
            )
        if key in options:
            raise InvalidInput("--option", f"{key!r} is given twice", "give each option once")
        options[key] = value
    return options


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Site name, e.g. hpc or ray-lab."),
    kind: str = typer.Option(..., "--kind", help=f"One of {', '.join(KINDS)}."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="KEY=VALUE, repeatable. " + site_options_help()
    ),
) -> None:
    """Register a compute site (its options are checked now)."""
    with open_platform() as p:
        info = p.sites.add(name, kind, parse_options(option))
    console.print(f"added site {info.name} ({info.kind})", highlight=False, markup=False)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every site, with the status of its last check."""
    with open_platform() as p:
        infos = p.sites.list()
    if json_out:
        print_json([asdict(i) for i in infos])
        return
    print_table(
        "sites",
        ["name", "kind", "status", "capacity", "checked", "options"],
        [
            (
                i.name,
                i.kind,
                i.status,
                i.capacity,
                _when(i),
                " ".join(f"{k}={v}" for k, v in i.options.items()),
            )
            for i in infos
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Site name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A site's kind, options and last status."""
    with open_platform() as p:
        info = p.sites.get(name)
    _print(info, json_out)


@app.command("check")
def check(
    name: str = typer.Argument("local", help="Site name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run a trivial task on the site and record its status (up, degraded, down)."""
    with open_platform() as p, console.status(f"checking {name} ..."):
        info = p.sites.check(name)
    _print(info, json_out)
    if info.status == "down":
        raise typer.Exit(1)


@app.command("remove")
def remove(name: str = typer.Argument(..., help="Site name.")) -> None:
    """Unregister a site (its task records stay)."""
    with open_platform() as p:
        p.sites.remove(name)
    console.print(f"removed site {name}", highlight=False, markup=False)


def _print(info: SiteInfo, json_out: bool) -> None:
    if json_out:
        print_json(asdict(info))
        return
    console.print(f"{info.name} ({info.kind}): {info.status}", highlight=False, markup=False)
    if info.status_reason:
        console.print(f"  {info.status_reason}", highlight=False, markup=False)
    if info.status_at is not None:
        console.print(f"  checked {_when(info)}", highlight=False, markup=False)
    if info.capacity is not None:
        console.print(f"  capacity {info.capacity} free slots", highlight=False, markup=False)
    for key, value in info.config().settings().model_dump().items():
        mark = "" if key in info.options else " (default)"
        console.print(f"  {key} = {value}{mark}", highlight=False, markup=False)


def _when(info: SiteInfo) -> str:
    return "" if info.status_at is None else info.status_at.strftime("%Y-%m-%d %H:%M:%S UTC")
