"""``genesis partner add|contribute|show|list``: partner organizations."""

from __future__ import annotations

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.governance.registries import PartnerInfo

app = typer.Typer(
    help="Partner organizations: their MOU, what they contribute, the agreements in force.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    org: str = typer.Argument(..., help="A registered organization."),
    mou: str = typer.Option("", "--mou", help="The agreement (MOU) it signed, if recorded."),
    note: str = typer.Option("", "--note", help="Free text."),
    json_out: bool = typer.Option(False, "--json", help="Print the partner as JSON."),
) -> None:
    """Register an organization as a partner (operator admins)."""
    with open_platform() as p:
        info = p.partners.add(org, mou, note)
    _print(info, json_out, f"added partner {info.org}")


@app.command("contribute")
def contribute(
    org: str = typer.Argument(..., help="The partner organization."),
    ref: str = typer.Argument(
        ..., metavar="KIND:NAME", help="site:NAME, station:NAME, dataset:NAME or model:NAME."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the partner as JSON."),
) -> None:
    """Record a site, station, dataset or model that exists as the partner's (operator admins)."""
    with open_platform() as p:
        info = p.partners.contribute(org, ref)
    _print(info, json_out, f"{info.org} contributes {ref}")


@app.command("show")
def show(
    org: str = typer.Argument(..., help="The partner organization."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One partner: MOU, contributions and the agreements in force."""
    with open_platform() as p:
        info = p.partners.get(org)
    _print(info, json_out)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every partner."""
    with open_platform() as p:
        infos = p.partners.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    print_table(
        "partners",
        ["org", "mou", "contributes", "agreements in force"],
        [(i.org, i.mou, ", ".join(i.contributes), ", ".join(i.agreements)) for i in infos],
    )


def _print(info: PartnerInfo, json_out: bool, done: str = "") -> None:
    if json_out:
        print_json(info.to_dict())
        return
    lines = [done] if done else []
    lines.append(f"{info.org}: MOU {info.mou or '-'}")
    lines += [f"  contributes {item}" for item in info.contributes]
    lines += [f"  agreement in force {name}" for name in info.agreements]
    if info.note:
        lines.append(f"  note {info.note}")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
