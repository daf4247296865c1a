"""The one authorization hook every facade call passes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from genesis_platform.errors import AccessDenied
from genesis_platform.governance.principal import Principal

__all__ = ["Action", "AllowAll", "Decision", "Policy", "Resource", "authorize"]

Action = Literal["read", "write", "run", "share", "export", "administer"]
"""What a principal wants to do."""


@dataclass(frozen=True)
class Resource:
    """What an action is on: a kind (``dataset``, ``model``, ``campaign``, ...) and an id."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one authorization: allowed or not, and which policies decided."""

    allowed: bool
    policies: tuple[str, ...] = ()
    reason: str = ""


class Policy(Protocol):
    """Decides whether a principal may act on a resource (Cedar, later)."""

    def decide(self, principal: Principal, action: Action, resource: Resource) -> Decision:
        """Allow or deny, with the deciding policies."""
        ...


class AllowAll:
    """The embedded default: every action is allowed (single-user platform)."""

    def decide(self, principal: Principal, action: Action, resource: Resource) -> Decision:
        """Allow."""
        return Decision(True, ("allow-all",))


def authorize(policy: Policy, principal: Principal, action: Action, resource: Resource) -> Decision:
    """Ask ``policy``; raise AccessDenied on deny, return the decision on allow.

    A principal whose token's scopes leave ``action`` out is denied before policy is asked.
    """
    if principal.scopes is not None and action not in principal.scopes:
        decision = Decision(
            False,
            ("token-scope",),
            f"the API token's scopes ({', '.join(principal.scopes)}) do not include {action}",
        )
    else:
        decision = policy.decide(principal, action, resource)
    if not decision.allowed:
        raise AccessDenied(
            f"{principal} may not {action} {resource}"
            + (f": {decision.reason}" if decision.reason else ""),
            principal=str(principal),
            action=action,
            resource=str(resource),
            policies=list(decision.policies),
        )
    return decision
