"""``genesis ledger list|show|set``: the IP ledger of campaign outputs."""

from __future__ import annotations

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.governance.ledger import COMMERCIALIZATION, OWNERSHIP, LedgerEntry

app = typer.Typer(
    help="The IP ledger: who owns each campaign output, and how far it is commercialized.",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    campaign: int | None = typer.Option(None, "--campaign", help="Only this campaign's outputs."),
    project: str | None = typer.Option(None, "--project", help="Only this project's outputs."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """The entries of the campaigns you may read, oldest first."""
    with open_platform() as p:
        entries = p.ledger.entries(campaign=campaign, project=project)
    if json_out:
        print_json([e.to_dict() for e in entries])
        return
    print_table(
        "IP ledger",
        [
            "id",
            "kind",
            "output",
            "campaign",
            "project",
            "partners",
            "agreement",
            "ownership",
            "commercialization",
        ],
        [
            (
                e.id,
                e.output_kind,
                e.output,
                e.campaign_id,
                e.project,
                ", ".join(e.partners),
                e.agreement,
                e.ownership,
                e.commercialization,
            )
            for e in entries
        ],
    )


@app.command("record")
def record(
    campaign: int = typer.Argument(..., metavar="CAMPAIGN", help="The campaign's id."),
) -> None:
    """Write a campaign's missing ledger entries (done when it finishes; safe to repeat)."""
    with open_platform() as p:
        p.campaigns.record_outputs(campaign)
        entries = p.ledger.entries(campaign)
    console.print(f"campaign {campaign}: {len(entries)} ledger entries", highlight=False)


@app.command("show")
def show(
    entry_id: int = typer.Argument(..., metavar="ID", help="Entry id (`genesis ledger list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One entry."""
    with open_platform() as p:
        entry = p.ledger.get(entry_id)
    _print(entry, json_out)


@app.command("set")
def set_(
    entry_id: int = typer.Argument(..., metavar="ID", help="Entry id (`genesis ledger list`)."),
    commercialization: str | None = typer.Option(
        None, "--commercialization", help=f"One of {', '.join(COMMERCIALIZATION)}."
    ),
    ownership: str | None = typer.Option(
        None, "--ownership", help=f"One of {', '.join(OWNERSHIP)}."
    ),
    agreement: str | None = typer.Option(
        None, "--agreement", help="The governing agreement ('' for none)."
    ),
    partner: list[str] | None = typer.Option(
        None, "--partner", help="A contributing organization; repeat for each (replaces them)."
    ),
    note: str | None = typer.Option(None, "--note", help="Free text."),
    json_out: bool = typer.Option(False, "--json", help="Print the entry as JSON."),
) -> None:
    """Change an entry (admins of the organization that owns the campaign; audited)."""
    with open_platform() as p:
        entry = p.ledger.update(
            entry_id,
            commercialization=commercialization,
            ownership=ownership,
            agreement=agreement,
            partners=partner or None,
            note=note,
        )
    _print(entry, json_out)


def _print(e: LedgerEntry, json_out: bool) -> None:
    if json_out:
        print_json(e.to_dict())
        return
    lines = [
        f"ledger entry {e.id}: {e.output_kind} {e.output}",
        f"  campaign           {e.campaign_id}",
        f"  project            {e.project or '-'}",
        f"  owner              {e.owner_org}",
        f"  partners           {', '.join(e.partners)}",
        f"  agreement          {e.agreement or '-'}",
        f"  ownership          {e.ownership}",
        f"  commercialization  {e.commercialization}",
        f"  updated            {e.updated_at:%Y-%m-%d %H:%M:%S}",
    ]
    if e.note:
        lines.append(f"  note               {e.note}")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
