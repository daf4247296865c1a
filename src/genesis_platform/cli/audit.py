"""``genesis audit list|verify``."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.errors import InvalidInput

app = typer.Typer(
    help="The audit log: who did what, and whether it was changed.", no_args_is_help=True
)


@app.command("list")
def list_(
    who: str | None = typer.Option(None, "--who", help="A principal, e.g. user:alice."),
    resource: str | None = typer.Option(None, "--resource", help="KIND or KIND:ID."),
    action: str | None = typer.Option(None, "--action", help="read, write, run, ..."),
    since: str | None = typer.Option(None, "--since", help="ISO time, e.g. 2026-11-24T09:00Z."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """The newest audit records first."""
    after = None if since is None else _time(since)
    with open_platform() as p:
        records = p.audit.list(who=who, resource=resource, action=action, since=after, limit=limit)
    if json_out:
        print_json([asdict(r) for r in records])
        return
    print_table(
        "audit",
        ["id", "at", "who", "action", "resource", "decision"],
        [
            (r.id, f"{r.at:%Y-%m-%d %H:%M:%S}", r.principal, r.action, r.resource, r.decision)
            for r in records
        ],
    )


@app.command("verify")
def verify(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check the audit log's hash chain; exit 1 and name the first bad record if broken."""
    with open_platform() as p, console.status("verifying the audit chain ..."):
        result = p.audit.verify()
    if json_out:
        print_json(asdict(result))
    elif result.ok:
        console.print(f"audit log intact: {result.records} records", highlight=False)
    else:
        console.print(f"audit log BROKEN: {result.problem}", highlight=False, markup=False)
    if not result.ok:
        raise typer.Exit(1)


def _time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "--since", f"{text!r} is not an ISO time", "e.g. 2026-11-24T09:00Z"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
