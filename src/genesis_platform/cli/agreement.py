"""``genesis agreement new|list|show|sign|terminate|templates``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.errors import InvalidInput
from genesis_platform.governance.agreements import (
    IP_OWNERSHIP,
    KINDS,
    USES,
    AgreementInfo,
    agreement_templates,
)

app = typer.Typer(
    help="Agreements between organizations: data use, model sharing, CRADAs, licenses, MOUs.",
    no_args_is_help=True,
)


@app.command("new")
def new(
    name: str = typer.Argument(..., help="A new agreement name, e.g. argonne-acme-spectra."),
    template: str = typer.Option(
        ..., "--template", help=f"The kind, whose template fills the rest: {', '.join(KINDS)}."
    ),
    party: list[str] = typer.Option(
        [], "--party", help="A party organization, repeatable; yours must be one of them."
    ),
    cover: list[str] = typer.Option(
        [], "--cover", help="A covered asset KIND:NAME, or owner:ORG for all of ORG's; repeatable."
    ),
    use: list[str] = typer.Option(
        [], "--use", help=f"A permitted use ({', '.join(USES)}), repeatable; default: template's."
    ),
    title: str = typer.Option("", "--title", help="Default: the template's."),
    starts: str | None = typer.Option(None, "--starts", help="YYYY-MM-DD (UTC); default: now."),
    expires: str | None = typer.Option(
        None, "--expires", help="YYYY-MM-DD (UTC); default: the template's duration from the start."
    ),
    days: int | None = typer.Option(None, "--days", help="Runs this many days from the start."),
    ip_ownership: str | None = typer.Option(
        None, "--ip-ownership", help=f"One of {', '.join(IP_OWNERSHIP)}."
    ),
    attribution: str | None = typer.Option(None, "--attribution", help="How to credit providers."),
    redistribution: bool | None = typer.Option(
        None, "--redistribution/--no-redistribution", help="May parties pass covered assets on?"
    ),
    export_control: bool | None = typer.Option(
        None, "--export-control/--no-export-control", help="Are covered assets export-controlled?"
    ),
    royalty_note: str | None = typer.Option(None, "--royalty-note", help="Royalties, in words."),
) -> None:
    """Draw up an agreement from a template (a draft until every party signs)."""
    if template not in KINDS:
        raise InvalidInput(
            "--template", f"{template!r} is not a template", f"use {', '.join(KINDS)}"
        )
    terms: dict[str, Any] = {
        key: value
        for key, value in (
            ("permitted_uses", list(use) or None),
            ("ip_ownership", ip_ownership),
            ("attribution", attribution),
            ("redistribution", redistribution),
            ("export_control", export_control),
            ("royalty_note", royalty_note),
        )
        if value is not None
    }
    starts_at = None if starts is None else _date(starts, "--starts")
    expires_at = None if expires is None else _date(expires, "--expires")
    if days is not None:
        if expires is not None:
            raise InvalidInput("--days", "is given with --expires", "give one of them")
        if days <= 0:
            raise InvalidInput("--days", f"must be 1 or more, got {days}", "e.g. --days 365")
        starts_at = starts_at or dt.datetime.now(dt.UTC)
        expires_at = starts_at + dt.timedelta(days=days)
    with open_platform() as p:
        try:
            info = p.agreements.create(
                name,
                template,
                party,
                covers=cover,
                terms=terms,
                title=title,
                starts=starts_at,
                expires=expires_at,
            )
        except InvalidInput as exc:  # name the option that was given, not the argument
            by_days = exc.field == "expires" and days is not None
            option = "--days" if by_days else _OPTIONS.get(exc.field)
            if option is None:
                raise
            raise InvalidInput(option, exc.problem, exc.fix) from None
    _say(
        f"drew up agreement {info.name} ({info.kind}) between {', '.join(_orgs(info))}: "
        f"draft until every party signs it (genesis agreement sign {info.name})"
    )


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """The agreements you may read (those your organization is a party to)."""
    with open_platform() as p:
        infos = p.agreements.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    print_table(
        "agreements",
        ["name", "kind", "state", "parties", "covers", "expires"],
        [
            (
                i.name,
                i.kind,
                i.effective_state,
                ", ".join(p.org + (" (signed)" if p.signed else "") for p in i.parties),
                ", ".join(i.covers),
                f"{i.expires_at:%Y-%m-%d}",
            )
            for i in infos
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Agreement name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An agreement's terms, parties, signatures, coverage and dates (Markdown)."""
    with open_platform() as p:
        if json_out:
            print_json(p.agreements.get(name).to_dict())
            return
        text = p.agreements.render(name)
    console.print(text, highlight=False, markup=False, soft_wrap=True, end="")


@app.command("sign")
def sign(name: str = typer.Argument(..., help="Agreement name.")) -> None:
    """Sign an agreement for your organization (it is active once every party signed)."""
    with open_platform() as p:
        info = p.agreements.sign(name)
    me = p.principal
    state = "active" if info.state == "active" else f"waiting for {', '.join(info.unsigned)}"
    _say(f"{me.org} signed agreement {info.name} ({me}); it is {state}")


@app.command("terminate")
def terminate(
    name: str = typer.Argument(..., help="Agreement name."),
    reason: str = typer.Option(..., "--reason", help="Why, e.g. 'the project ended'."),
) -> None:
    """End an agreement now: it grants nothing from then on."""
    with open_platform() as p:
        info = p.agreements.terminate(name, reason)
    _say(f"terminated agreement {info.name}: {info.termination_reason}")


@app.command("templates")
def templates(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """The standard agreements that ship with Genesis, one per kind."""
    found = agreement_templates()
    if json_out:
        print_json([t.to_dict() for t in found])
        return
    print_table(
        "agreement templates",
        ["kind", "title", "days", "uses", "ip", "description"],
        [
            (
                t.kind,
                t.title,
                t.duration_days,
                ", ".join(t.terms.permitted_uses),
                t.terms.ip_ownership,
                t.description,
            )
            for t in found
        ],
    )


_OPTIONS = {
    "parties": "--party",
    "covers": "--cover",
    "title": "--title",
    "starts": "--starts",
    "expires": "--expires",
    "terms.permitted_uses": "--use",
    "terms.ip_ownership": "--ip-ownership",
    "terms.attribution": "--attribution",
    "terms.royalty_note": "--royalty-note",
}
"""The options that give :meth:`AgreementService.create`'s arguments."""


def _date(text: str, field: str) -> dt.date | dt.datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO time (UTC when it names no zone)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, f"{text!r} is not a date", "e.g. 2027-06-30") from None


def _orgs(info: AgreementInfo) -> list[str]:
    return [p.org for p in info.parties]


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)
