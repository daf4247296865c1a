"""Helpers for governance tests: set attributes and agreements straight in the catalog."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update

from genesis_platform import Platform
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AssetRow,
    GovernanceChange,
    utcnow,
)
from genesis_platform.governance import Principal, Resource
from genesis_platform.governance.authorize import Action, Decision


def set_asset(p: Platform, kind: str, name: str, **values: Any) -> None:
    """Change an asset's stored attributes (``owner_org``, ``access``, ...) directly."""
    with p._db.session() as s:
        s.execute(
            update(AssetRow).where(AssetRow.kind == kind, AssetRow.name == name).values(**values)
        )
        s.add(GovernanceChange(kind="asset", key=f"{kind}:{name}"))
    assert p._ctx.governance is not None
    p._ctx.governance.refresh(now=True)


def agree(
    p: Platform,
    name: str,
    parties: Sequence[str],
    covers: Sequence[str],
    *,
    kind: str = "data-use",
    uses: Sequence[str] = ("research",),
    signed: Sequence[str] | None = None,
    state: str = "active",
    redistribution: bool = False,
    export_control: bool = False,
    starts: dt.datetime | None = None,
    expires: dt.datetime | None = None,
) -> None:
    """Store an agreement as the agreements service would leave it."""
    now = utcnow()
    signers = parties if signed is None else signed
    with p._db.session() as s:
        row = AgreementRow(
            name=name,
            kind=kind,
            state=state,
            terms={
                "permitted_uses": list(uses),
                "redistribution": redistribution,
                "export_control": export_control,
            },
            covers=list(covers),
            starts_at=starts or now - dt.timedelta(days=1),
            expires_at=expires or now + dt.timedelta(days=30),
            created_by=f"someone@{parties[0]}",
        )
        s.add(row)
        s.flush()
        for org in parties:
            s.add(
                AgreementPartyRow(
                    agreement_id=row.id,
                    org=org,
                    signed_by=f"someone@{org}" if org in signers else "",
                    signed_at=now if org in signers else None,
                )
            )
        s.add(GovernanceChange(kind="agreement", key=name))
    assert p._ctx.governance is not None
    p._ctx.governance.refresh(now=True)


def decide(p: Platform, who: str, action: Action, resource: str, **extra: Any) -> Decision:
    """The policy's decision for ``who`` (``user@org``) on ``KIND:NAME``."""
    user, _, org = who.partition("@")
    kind, _, name = resource.partition(":")
    return p._ctx.policy.decide(Principal(user, org, **extra), action, Resource(kind, name))
