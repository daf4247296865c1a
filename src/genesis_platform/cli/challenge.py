"""``genesis challenge add|link|review|show|list``: national challenges."""

from __future__ import annotations

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.governance.registries import ChallengeInfo

app = typer.Typer(
    help="National science and technology challenges and the work linked to them.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Challenge name, e.g. grid-storage."),
    domain: str = typer.Option(..., "--domain", help="Its domain, e.g. 'energy storage'."),
    lead: str = typer.Option(..., "--lead", help="The lead organization (registered)."),
    description: str = typer.Option("", "--description", help="What it is about."),
    json_out: bool = typer.Option(False, "--json", help="Print the challenge as JSON."),
) -> None:
    """Register a challenge (operator admins)."""
    with open_platform() as p:
        info = p.challenges.add(name, domain, lead, description)
    _print(info, json_out, f"added challenge {info.name}")


@app.command("link")
def link(
    name: str = typer.Argument(..., help="Challenge name."),
    ref: str = typer.Argument(
        ..., metavar="KIND:NAME", help="dataset:NAME[@V], model:NAME[@V] or campaign:ID."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the challenge as JSON."),
) -> None:
    """Link a dataset, model or campaign that exists to the challenge (operator admins)."""
    with open_platform() as p:
        info = p.challenges.link(name, ref)
    _print(info, json_out, f"linked {ref} to challenge {info.name}")


@app.command("review")
def review(
    name: str = typer.Argument(..., help="Challenge name."),
    year: int = typer.Option(..., "--year", help="The year reviewed, e.g. 2026."),
    note: str = typer.Option(..., "--note", help="What the review found."),
    json_out: bool = typer.Option(False, "--json", help="Print the challenge as JSON."),
) -> None:
    """Append a yearly review note to the challenge (operator admins)."""
    with open_platform() as p:
        info = p.challenges.review(name, year, note)
    _print(info, json_out, f"added the {year} review of challenge {info.name}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Challenge name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One challenge: domain, lead, linked work and review history."""
    with open_platform() as p:
        info = p.challenges.get(name)
    _print(info, json_out)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every challenge."""
    with open_platform() as p:
        infos = p.challenges.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    print_table(
        "challenges",
        ["name", "domain", "lead", "links", "last review"],
        [
            (
                i.name,
                i.domain,
                i.lead_org,
                len(i.links),
                max((r.year for r in i.reviews), default=None),
            )
            for i in infos
        ],
    )


def _print(info: ChallengeInfo, json_out: bool, done: str = "") -> None:
    if json_out:
        print_json(info.to_dict())
        return
    lines = [done] if done else []
    lines += [f"{info.name}: {info.domain} (lead {info.lead_org})"]
    if info.description:
        lines.append(f"  {info.description}")
    lines += [f"  linked {link}" for link in info.links]
    lines += [f"  review {r.year} by {r.by}: {r.note}" for r in info.reviews]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
