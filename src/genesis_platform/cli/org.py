"""``genesis org ...`` and ``genesis project ...``: organizations, members and projects."""

from __future__ import annotations

from dataclasses import asdict

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.governance.identity import OrgInfo, ProjectInfo

app = typer.Typer(help="Organizations and their members (roles, vetting).", no_args_is_help=True)
projects = typer.Typer(
    help="Projects, with members from several organizations.", no_args_is_help=True
)


@app.command("add")
def add(
    name: str,
    display_name: str = typer.Option("", "--display-name", help="A longer name."),
    export_cleared: bool = typer.Option(
        False, "--export-cleared", help="Cleared for export-controlled assets."
    ),
) -> None:
    """Register an organization (operator admins)."""
    with open_platform() as p:
        org = p.orgs.create(name, display_name=display_name, export_cleared=export_cleared)
    console.print(f"organization {org.name} registered", highlight=False)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every organization."""
    with open_platform() as p:
        orgs = p.orgs.list()
    if json_out:
        print_json([asdict(o) for o in orgs])
        return
    print_table(
        "organizations",
        ["name", "display name", "members", "export cleared"],
        [(o.name, o.display_name, len(o.members), "yes" if o.export_cleared else "") for o in orgs],
    )


@app.command("show")
def show(name: str, json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """An organization and its members."""
    with open_platform() as p:
        org = p.orgs.get(name)
    if json_out:
        print_json(asdict(org))
        return
    _print_org(org)


@app.command("add-member")
def add_member(
    org: str,
    user: str,
    role: str = typer.Option("member", "--role", help="owner, admin, member or viewer."),
    vetting: str = typer.Option("pending", "--vetting", help="pending, vetted or revoked."),
) -> None:
    """Add a member to an organization (its owners and admins)."""
    with open_platform() as p:
        m = p.orgs.add_member(org, user, role=role, vetting=vetting)
    console.print(f"{m.principal} added as {m.role} ({m.vetting})", highlight=False)


@app.command("set-role")
def set_role(org: str, user: str, role: str) -> None:
    """Change a member's role."""
    with open_platform() as p:
        m = p.orgs.set_role(org, user, role)
    console.print(f"{m.principal} is now {m.role}", highlight=False)


@app.command("vet")
def vet(
    org: str, user: str, status: str = typer.Argument(..., help="vetted, pending or revoked.")
) -> None:
    """Set a member's vetting status (operator admins)."""
    with open_platform() as p:
        m = p.orgs.vet(org, user, status)
    console.print(f"{m.principal} is {m.vetting}", highlight=False)


@app.command("remove-member")
def remove_member(org: str, user: str) -> None:
    """Remove a member from an organization and its projects."""
    with open_platform() as p:
        p.orgs.remove_member(org, user)
    console.print(f"{user}@{org} removed", highlight=False)


@app.command("clear-export")
def clear_export(
    org: str, revoke: bool = typer.Option(False, "--revoke", help="Withdraw the clearance.")
) -> None:
    """Clear an organization for export-controlled assets (operator admins)."""
    with open_platform() as p:
        info = p.orgs.clear_for_export(org, not revoke)
    state = "cleared" if info.export_cleared else "not cleared"
    console.print(f"{org} is {state} for export-controlled assets", highlight=False)


def _print_org(org: OrgInfo) -> None:
    cleared = "yes" if org.export_cleared else "no"
    console.print(
        f"[bold]{org.name}[/bold] ({org.display_name}); export cleared: {cleared}", highlight=False
    )
    print_table(
        "members",
        ["member", "role", "vetting", "projects"],
        [(m.principal, m.role, m.vetting, ", ".join(m.projects)) for m in org.members],
    )


@projects.command("add")
def project_add(
    name: str,
    org: str | None = typer.Option(None, "--org", help="Lead organization (default: yours)."),
    description: str = typer.Option("", "--description"),
) -> None:
    """Create a project led by an organization (its admins); you become its first member."""
    with open_platform() as p:
        info = p.projects.create(name, org=org, description=description)
    console.print(f"project {info.name} created, led by {info.org}", highlight=False)


@projects.command("add-member")
def project_add_member(
    project: str, member: str = typer.Argument(..., help="user@org, a member of that org.")
) -> None:
    """Add a member of any organization to a project."""
    with open_platform() as p:
        info = p.projects.add_member(project, member)
    console.print(f"{project}: {', '.join(info.members)}", highlight=False)


@projects.command("remove-member")
def project_remove_member(project: str, member: str) -> None:
    """Take a member out of a project."""
    with open_platform() as p:
        info = p.projects.remove_member(project, member)
    console.print(f"{project}: {', '.join(info.members) or 'no members'}", highlight=False)


@projects.command("list")
def project_list(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """The projects you may see."""
    with open_platform() as p:
        infos = p.projects.list()
    if json_out:
        print_json([asdict(i) for i in infos])
        return
    print_table("projects", ["name", "lead org", "members"], [_project_row(i) for i in infos])


@projects.command("show")
def project_show(name: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """One project and its members."""
    with open_platform() as p:
        info = p.projects.get(name)
    if json_out:
        print_json(asdict(info))
        return
    print_table("project", ["name", "lead org", "members"], [_project_row(info)])


def _project_row(i: ProjectInfo) -> tuple[str, str, str]:
    return (i.name, i.org, ", ".join(i.members))
