"""Asset attributes: owner, access level, classification, export control, review, synthetic.

Every dataset, model, station, site and campaign gets attributes when it is created: owned
by its creator's organization, ``private``, classification ``public``, not export-controlled.
Its owner's admins change them (``share`` for the access level, ``administer`` for the rest).

An external partner's submission: a member of organization B submits B's dataset to
organization A (:meth:`AssetService.submit`); it becomes A's, ``pending`` review, readable
only by its submitter, A's owners and admins and a named reviewer until one of them decides
(:meth:`AssetService.review`). A synthetic dataset is labelled with the model or campaign
that produced it (:meth:`AssetService.label_synthetic`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import AssetRow, Campaign, MemberRow, Model, OrgRow
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance._validate import one_of
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext
from genesis_platform.governance.state import ASSET_KINDS

__all__ = ["ACCESS", "CLASSIFICATION", "AssetInfo", "AssetService"]

ACCESS = ("public", "gated", "private")
CLASSIFICATION = ("public", "controlled")
DECISIONS = ("approved", "rejected")


@dataclass(frozen=True)
class AssetInfo:
    """An asset's governance attributes."""

    kind: str
    name: str
    owner: str
    project: str
    access: str
    classification: str
    export_controlled: bool
    review: str
    submitted_by: str
    reviewer: str
    risk_notes: str
    decision_note: str
    synthetic: bool
    derived_from: str
    created_at: dt.datetime


class AssetService:
    """Governance attributes of assets (``p.assets``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def get(self, kind: str, name: str) -> AssetInfo:
        """The attributes of ``kind`` ``name``.

        Raises:
            NotFound: no such asset (or one created before governance, never registered).
        """
        one_of("kind", kind, ASSET_KINDS)
        with self._ctx.reading(Resource(kind, name)) as s:
            return _info(_require(s, kind, name))

    def set(
        self,
        kind: str,
        name: str,
        *,
        access: str | None = None,
        classification: str | None = None,
        export_controlled: bool | None = None,
    ) -> AssetInfo:
        """Change the access level (needs ``share``), classification or export control."""
        one_of("kind", kind, ASSET_KINDS)
        if access is not None:
            one_of("access", access, ACCESS)
            self._ctx.authorize("share", Resource(kind, name))
        if classification is not None:
            one_of("classification", classification, CLASSIFICATION)
        detail = {
            k: v
            for k, v in (
                ("access", access),
                ("classification", classification),
                ("export_controlled", export_controlled),
            )
            if v is not None
        }
        with self._ctx.mutation("administer", Resource(kind, name), detail) as s:
            row = _require(s, kind, name)
            for key, value in detail.items():
                setattr(row, key, value)
            self._ctx.changed(s, "asset", f"{kind}:{name}")
            return _info(row)

    def submit(
        self, kind: str, name: str, to: str, *, risk_notes: str = "", reviewer: str = ""
    ) -> AssetInfo:
        """Submit one of the principal's organization's assets to organization ``to``.

        It becomes ``to``'s, pending review: only its submitter, ``to``'s owners and admins
        and ``reviewer`` (``user@org``) may read it until :meth:`review` decides.
        """
        one_of("kind", kind, ASSET_KINDS)
        with self._ctx.mutation("share", Resource(kind, name), {"submit_to": to}) as s:
            row = _require(s, kind, name)
            if s.scalar(select(OrgRow.id).where(OrgRow.name == to)) is None:
                raise NotFound("organization", to, "`genesis org list` shows them")
            if to == row.owner_org:
                raise InvalidInput("to", f"{name} already belongs to {to}", "submit to another org")
            if reviewer:
                _check_reviewer(s, reviewer, to, str(self._ctx.principal))
            row.owner_org, row.review = to, "pending"
            row.submitted_by = str(self._ctx.principal)
            row.reviewer, row.risk_notes = reviewer, risk_notes
            self._ctx.changed(s, "asset", f"{kind}:{name}")
            return _info(row)

    def review(self, kind: str, name: str, decision: str, *, note: str = "") -> AssetInfo:
        """Approve or reject a pending submission (the owner's admins or its reviewer)."""
        one_of("decision", decision, DECISIONS)
        info = self.get(kind, name)
        if info.review != "pending":
            raise InvalidInput(
                "decision", f"{kind} {name} is not pending review (it is {info.review})"
            )
        me = str(self._ctx.principal)
        if info.submitted_by == me:
            raise InvalidInput("decision", "a submission is not reviewed by its submitter")
        with self._ctx.mutation("administer", Resource(kind, name), {"review": decision}) as s:
            row = _require(s, kind, name)
            row.review, row.decision_note = decision, note
            row.reviewer = row.reviewer or me
            self._ctx.changed(s, "asset", f"{kind}:{name}")
            return _info(row)

    def label_synthetic(self, name: str, derived_from: str) -> AssetInfo:
        """Label dataset ``name`` synthetic, made by ``model:NAME`` or ``campaign:ID``."""
        kind, _, ref = derived_from.partition(":")
        with self._ctx.mutation(
            "write", Resource("dataset", name), {"synthetic": derived_from}
        ) as s:
            row = _require(s, "dataset", name)
            if not _source_exists(s, kind, ref):
                raise InvalidInput(
                    "derived_from",
                    f"{derived_from!r} names no model or campaign",
                    "use model:NAME or campaign:ID of one that exists",
                )
            row.synthetic, row.derived_from = True, derived_from
            return _info(row)


def _check_reviewer(s: Session, reviewer: str, org: str, submitter: str) -> None:
    """A reviewer is a member of the receiving organization, and not the submitter."""
    user, _, reviewer_org = reviewer.partition("@")
    known = s.scalar(
        select(MemberRow.id).where(MemberRow.org == reviewer_org, MemberRow.user == user)
    )
    if reviewer_org != org or known is None:
        raise InvalidInput(
            "reviewer", f"{reviewer} is not a member of {org}", f"name a member of {org}"
        )
    if reviewer == submitter:
        raise InvalidInput("reviewer", "a submitter cannot review their own submission")


def _source_exists(s: Session, kind: str, ref: str) -> bool:
    if kind == "model":
        return s.scalar(select(Model.id).where(Model.name == ref)) is not None
    if kind == "campaign" and ref.isdigit():
        return s.get(Campaign, int(ref)) is not None
    return False


def _require(s: Session, kind: str, name: str) -> AssetRow:
    row = s.scalar(select(AssetRow).where(AssetRow.kind == kind, AssetRow.name == name))
    if row is None:
        raise NotFound(f"{kind}", name, f"`genesis {_cli(kind)} list` shows them")
    return row


def _cli(kind: str) -> str:
    return {"dataset": "data"}.get(kind, kind)


def _info(r: AssetRow) -> AssetInfo:
    return AssetInfo(
        r.kind,
        r.name,
        r.owner_org,
        r.project,
        r.access,
        r.classification,
        r.export_controlled,
        r.review,
        r.submitted_by,
        r.reviewer,
        r.risk_notes,
        r.decision_note,
        r.synthetic,
        r.derived_from,
        r.created_at,
    )
