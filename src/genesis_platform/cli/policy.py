"""``genesis policy explain|check|schema``: what the policy decides, and why."""

from __future__ import annotations

import typer

from genesis_platform.cli._common import console, open_platform, print_json
from genesis_platform.config import Settings
from genesis_platform.errors import InvalidInput
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.cedar import CedarPolicy, load_policies, schema_text
from genesis_platform.governance.principal import Principal
from genesis_platform.governance.tokens import ACTIONS

app = typer.Typer(help="Policies: explain a decision, check policy files.", no_args_is_help=True)


@app.command("explain")
def explain(
    principal: str = typer.Argument(..., help="user@org"),
    action: str = typer.Argument(..., help=", ".join(ACTIONS)),
    resource: str = typer.Argument(..., help="KIND:NAME (dataset:spectra) or KIND:* (a list)."),
    purpose: str = typer.Option("research", "--purpose", help="research, commercial, government."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Say whether PRINCIPAL may do ACTION on RESOURCE, and which policies decided."""
    user, _, org = principal.partition("@")
    if not user or not org:
        raise InvalidInput("PRINCIPAL", f"{principal!r} is not user@org", "e.g. ada@argonne")
    if action not in ACTIONS:
        raise InvalidInput("ACTION", f"{action!r} is not one of {', '.join(ACTIONS)}")
    kind, _, name = resource.partition(":")
    if not kind or not name:
        raise InvalidInput("RESOURCE", f"{resource!r} is not KIND:NAME", "e.g. dataset:spectra")
    with open_platform() as p:
        policy = p._ctx.policy
        if not isinstance(policy, CedarPolicy):
            raise InvalidInput("governance", "governance is off here", 'set governance = "on"')
        asked = Principal(user, org, purpose=purpose)
        decision = policy.decide(asked, action, Resource(kind, name))  # type: ignore[arg-type]
    verdict = "allow" if decision.allowed else "deny"
    if json_out:
        print_json(
            {"decision": verdict, "policies": list(decision.policies), "reason": decision.reason}
        )
        return
    console.print(f"[bold]{verdict}[/bold]: {principal} {action} {resource}", highlight=False)
    console.print(f"  decided by: {', '.join(decision.policies)}", highlight=False)
    if decision.reason:
        console.print(f"  {decision.reason}", highlight=False, markup=False)


@app.command("check")
def check() -> None:
    """Parse and validate the default policies and GENESIS_HOME/policies/*.cedar."""
    settings = Settings.load()
    files = load_policies(settings.home)
    for source in files.sources:
        console.print(f"ok  {source}", highlight=False)


@app.command("schema")
def schema() -> None:
    """Print the Cedar schema operators' policies are validated against."""
    print(schema_text())
