"""``genesis token create|list|revoke``: API tokens."""

from __future__ import annotations

from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.governance.tokens import ACTIONS

app = typer.Typer(help="API tokens (shown once, stored as a hash).", no_args_is_help=True)


@app.command("create")
def create(
    member: str | None = typer.Option(None, "--for", help="user@org (default: you)."),
    scope: list[str] = typer.Option(
        list(ACTIONS), "--scope", help="An action the token may be used for (repeat)."
    ),
    days: float = typer.Option(90, "--days", help="Days until it expires."),
    note: str = typer.Option("", "--note", help="What it is for."),
) -> None:
    """Issue a token; its secret is printed once (use it as GENESIS_TOKEN or a bearer token)."""
    with open_platform() as p:
        issued = p.tokens.create(member=member, scopes=scope, days=days, note=note)
    info = issued.info
    console.print(
        f"token {info.token_id} for {info.principal}, scopes {', '.join(info.scopes)}, "
        f"expires {info.expires_at:%Y-%m-%d}. Its secret, shown only now:",
        highlight=False,
    )
    print(issued.secret)


@app.command("list")
def list_(
    member: str | None = typer.Option(None, "--for", help="user@org (default: you)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """Tokens (never their secrets)."""
    with open_platform() as p:
        tokens = p.tokens.list(member)
    if json_out:
        print_json([{**asdict(t), "state": t.state} for t in tokens])
        return
    print_table(
        "tokens",
        ["id", "principal", "scopes", "state", "expires", "note"],
        [
            (
                t.token_id,
                t.principal,
                ",".join(t.scopes),
                t.state,
                f"{t.expires_at:%Y-%m-%d}",
                t.note,
            )
            for t in tokens
        ],
    )


@app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke a token now."""
    with open_platform() as p:
        info = p.tokens.revoke(token_id)
    console.print(f"token {info.token_id} revoked", highlight=False)
