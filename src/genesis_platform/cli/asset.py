"""``genesis asset show|set|submit|review|synthetic``: governance attributes of assets."""

from __future__ import annotations

from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json
from genesis_platform.errors import InvalidInput
from genesis_platform.governance.assets import AssetInfo

app = typer.Typer(
    help="Owner, access level, classification, export control and review of assets.",
    no_args_is_help=True,
)

_REF_HELP = "KIND:NAME, e.g. dataset:spectra or campaign:3."


def _split(ref: str) -> tuple[str, str]:
    kind, _, name = ref.partition(":")
    if not kind or not name:
        raise InvalidInput("ASSET", f"{ref!r} is not KIND:NAME", "e.g. dataset:spectra")
    return kind, name


@app.command("show")
def show(
    ref: str = typer.Argument(..., help=_REF_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An asset's governance attributes."""
    with open_platform() as p:
        info = p.assets.get(*_split(ref))
    if json_out:
        print_json(asdict(info))
    else:
        _print(info)


@app.command("set")
def set_(
    ref: str = typer.Argument(..., help=_REF_HELP),
    access: str | None = typer.Option(None, "--access", help="public, gated or private."),
    classification: str | None = typer.Option(
        None, "--classification", help="public or controlled."
    ),
    export_controlled: bool | None = typer.Option(
        None, "--export-controlled/--not-export-controlled", help="Export-control flag."
    ),
) -> None:
    """Change an asset's access level, classification or export control (its owner's admins)."""
    with open_platform() as p:
        info = p.assets.set(
            *_split(ref),
            access=access,
            classification=classification,
            export_controlled=export_controlled,
        )
    _print(info)


@app.command("submit")
def submit(
    ref: str = typer.Argument(..., help=_REF_HELP),
    to: str = typer.Option(..., "--to", help="The organization it is submitted to."),
    risk_notes: str = typer.Option("", "--risk-notes"),
    reviewer: str = typer.Option("", "--reviewer", help="user@org who reviews it."),
) -> None:
    """Submit your organization's asset to another; it is pending review there."""
    with open_platform() as p:
        info = p.assets.submit(*_split(ref), to, risk_notes=risk_notes, reviewer=reviewer)
    _print(info)


@app.command("review")
def review(
    ref: str = typer.Argument(..., help=_REF_HELP),
    decision: str = typer.Argument(..., help="approved or rejected."),
    note: str = typer.Option("", "--note"),
) -> None:
    """Approve or reject a submission pending review."""
    with open_platform() as p:
        info = p.assets.review(*_split(ref), decision, note=note)
    _print(info)


@app.command("synthetic")
def synthetic(
    dataset: str,
    derived_from: str = typer.Option(..., "--from", help="model:NAME or campaign:ID."),
) -> None:
    """Label a dataset synthetic, made by a model or campaign."""
    with open_platform() as p:
        info = p.assets.label_synthetic(dataset, derived_from)
    _print(info)


def _print(a: AssetInfo) -> None:
    lines = [
        f"[bold]{a.kind}:{a.name}[/bold]",
        f"owner:             {a.owner}" + (f" (project {a.project})" if a.project else ""),
        f"access:            {a.access}",
        f"classification:    {a.classification}",
        f"export-controlled: {'yes' if a.export_controlled else 'no'}",
        f"review:            {a.review}"
        + (
            f" (submitted by {a.submitted_by}, reviewer {a.reviewer or 'owner admins'})"
            if a.review != "none"
            else ""
        ),
    ]
    if a.risk_notes:
        lines.append(f"risk notes:        {a.risk_notes}")
    if a.decision_note:
        lines.append(f"decision:          {a.decision_note}")
    if a.synthetic:
        lines.append(f"synthetic:         yes, from {a.derived_from}")
    console.print("\n".join(lines), highlight=False)
