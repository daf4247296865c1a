"""``genesis station list|show``."""

from __future__ import annotations

from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table

app = typer.Typer(help="Lab stations.", no_args_is_help=True)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every station campaigns can use."""
    with open_platform() as p:
        infos = p.stations.list()
    if json_out:
        print_json([asdict(i) for i in infos])
        return
    print_table(
        "stations",
        ["name", "driver", "slots", "parameters", "measures"],
        [
            (i.name, i.driver, i.slots, ", ".join(i.parameters), ", ".join(i.measurements))
            for i in infos
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Station name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A station's description, parameters and measurements."""
    with open_platform() as p:
        info = p.stations.get(name)
    if json_out:
        print_json(asdict(info))
        return
    console.print(f"[bold]{info.name}[/] ({info.driver}, {info.slots} slots)", highlight=False)
    console.print(info.description, highlight=False, markup=False)
    for pname, schema in info.parameters.items():
        console.print(f"  parameter {pname}: {dict(schema)}", highlight=False, markup=False)
    for mname, schema in info.measurements.items():
        console.print(f"  measures {mname}: {dict(schema)}", highlight=False, markup=False)
