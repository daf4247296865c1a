"""``genesis model list|show``."""

from __future__ import annotations

import typer
from rich.markup import escape

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.data.refs import parse_ref

app = typer.Typer(help="Versioned models.", no_args_is_help=True)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every model."""
    with open_platform() as p:
        infos = p.models.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    print_table(
        "models",
        ["name", "versions", "latest", "framework"],
        [(i.name, i.versions, i.latest, i.framework) for i in infos],
    )


@app.command("show")
def show(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Model, latest by default."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A model version: framework, metrics, what it was trained on."""
    name, version = parse_ref(ref, "NAME[@VERSION]")
    with open_platform() as p:
        info = p.models.get(name, version)
    if json_out:
        print_json(info.to_dict())
        return
    console.print(f"[bold]{info.ref}[/] framework={info.framework}", highlight=False)
    console.print(f"  trained on: {info.trained_on or '—'}", highlight=False)
    console.print(f"  metrics: {escape(str(dict(info.metrics)))}", highlight=False)
    console.print(f"  artifact: sha256 {info.digest} ({info.size} bytes)", highlight=False)
