"""The root ``genesis`` command and its error handling.

This is the one place where error families become exit codes.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from genesis_platform import __version__
from genesis_platform.cli import (
    agreement,
    allocation,
    asset,
    audit,
    campaign,
    challenge,
    data,
    ledger,
    lineage,
    model,
    org,
    partner,
    policy,
    site,
    station,
    task,
    token,
)
from genesis_platform.cli._common import err_console, exit_code
from genesis_platform.errors import GenesisError

__all__ = ["app", "main"]

app = typer.Typer(
    name="genesis",
    help="Genesis: closed-loop, AI-driven science on compute, data, models and labs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(agreement.app, name="agreement")
app.add_typer(allocation.app, name="allocation")
app.add_typer(asset.app, name="asset")
app.add_typer(audit.app, name="audit")
app.add_typer(campaign.app, name="campaign")
app.add_typer(challenge.app, name="challenge")
app.add_typer(data.app, name="data")
app.add_typer(ledger.app, name="ledger")
app.add_typer(model.app, name="model")
app.add_typer(org.app, name="org")
app.add_typer(policy.app, name="policy")
app.add_typer(org.projects, name="project")
app.add_typer(partner.app, name="partner")
app.add_typer(site.app, name="site")
app.add_typer(station.app, name="station")
app.add_typer(task.app, name="task")
app.add_typer(token.app, name="token")
app.command("lineage")(lineage.lineage)


def _version(value: bool) -> None:
    if value:
        print(f"genesis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Genesis: closed-loop, AI-driven science."""


def main(argv: list[str] | None = None) -> None:
    """Run the ``genesis`` command; exit 2 on bad input, 3 on denied access, 1 on failure.

    Usage errors (exit 2), ``--help`` and Ctrl-C are handled by Typer; Genesis errors are
    printed here as one line and mapped to their exit code.
    """
    try:
        app(args=argv, prog_name="genesis")
    except GenesisError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(exit_code(exc))
