"""``genesis lineage model|dataset NAME[@VERSION]``."""

from __future__ import annotations

import typer

from genesis_platform.cli._common import console, open_platform, print_json
from genesis_platform.data.refs import parse_ref
from genesis_platform.errors import InvalidInput


def lineage(
    kind: str = typer.Argument(..., metavar="model|dataset", help="What to trace."),
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Latest version by default."),
    json_out: bool = typer.Option(False, "--json", help="Print the tree as JSON."),
) -> None:
    """Print the chain a model or dataset version came from, back to the trials."""
    if kind not in ("model", "dataset"):
        raise InvalidInput("KIND", f"{kind!r} has no lineage", "use model or dataset")
    name, version = parse_ref(ref, "NAME[@VERSION]")
    with open_platform() as p:
        if json_out:
            print_json(p.lineage.tree(kind, name, version))
        else:
            console.print(
                p.lineage.text(kind, name, version), highlight=False, markup=False, soft_wrap=True
            )
