"""``genesis data add|list|show``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.data.refs import parse_ref

app = typer.Typer(help="Versioned datasets.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name."),
    paths: list[Path] = typer.Argument(..., help="Files or folders."),
    description: str = typer.Option("", "--description", help="What the data is."),
    license: str = typer.Option("", "--license", help="SPDX license id, e.g. CC-BY-4.0."),
    json_out: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Create dataset NAME (version 1) from PATHs, or add its next version if it exists."""
    with open_platform() as p:
        existing = {d.name for d in p.datasets.list()}
        if name in existing:
            info = p.datasets.add_version(name, paths, message=description)
        else:
            info = p.datasets.add(name, paths, description=description, license=license)
    if json_out:
        print_json(info.to_dict())
    else:
        console.print(f"added [bold]{info.ref}[/] ({len(info.files)} files)", highlight=False)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every dataset."""
    with open_platform() as p:
        infos = p.datasets.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    print_table(
        "datasets",
        ["name", "versions", "latest", "license", "description"],
        [(i.name, i.versions, i.latest, i.license, i.description) for i in infos],
    )


@app.command("fetch")
def fetch(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Dataset, latest by default."),
    target: Path = typer.Argument(..., help="Folder to write the files into."),
) -> None:
    """Copy a dataset version's files into TARGET, verifying every file's sha256."""
    name, version = parse_ref(ref, "NAME[@VERSION]")
    with open_platform() as p:
        info = p.datasets.get(name, version)
        p.datasets.fetch(name, info.version, target)
    console.print(f"wrote {len(info.files)} files of {info.ref} to {target}", highlight=False)


@app.command("show")
def show(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Dataset, latest by default."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A dataset version and its files."""
    name, version = parse_ref(ref, "NAME[@VERSION]")
    with open_platform() as p:
        info = p.datasets.get(name, version)
    if json_out:
        print_json(info.to_dict())
        return
    console.print(f"[bold]{info.ref}[/] {escape(info.message)}", highlight=False)
    print_table(
        "files",
        ["path", "size", "sha256"],
        [(f.path, f.size, f.digest[:16]) for f in info.files],
    )
