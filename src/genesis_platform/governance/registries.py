"""Mission registries: national challenges (``p.challenges``) and partners (``p.partners``).

A **challenge** is a national science and technology challenge: its domain, its lead
organization, the datasets, models and campaigns linked to it, and a history of yearly
review notes. A **partner** is an organization in partnership with the operator: the MOU
it signed, the resources it contributes (sites, stations, datasets, models) and the
agreements in force for it.

Both registries are the operator's: changing them is ``administer`` on
``challenge:NAME`` / ``partner:ORG`` (the operator organization's owners and admins);
anyone may read them (``read`` on ``challenge:*`` / ``partner:*``). What they link to is
checked to exist when it is linked, through the services that own it, and links to assets
the reader may not read are left out of what is shown, so a registry never leaks an
asset's name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    ChallengeRow,
    OrgRow,
    PartnerRow,
    utcnow,
)
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext

__all__ = [
    "CHALLENGE_LINKS",
    "PARTNER_CONTRIBUTIONS",
    "ChallengeInfo",
    "ChallengeService",
    "Finder",
    "PartnerInfo",
    "PartnerService",
    "Review",
]

Finder = Callable[[str], object]
"""Looks an asset up by name (``NAME``, ``NAME@VERSION`` or a campaign id); raises
NotFound when it does not exist (the owning service's ``get``)."""

CHALLENGE_LINKS = ("dataset", "model", "campaign")
"""What a challenge links to."""
PARTNER_CONTRIBUTIONS = ("site", "station", "dataset", "model")
"""What a partner contributes."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")
_FIRST_YEAR = 1950


@dataclass(frozen=True)
class Review:
    """One yearly review note of a challenge."""

    year: int
    note: str
    by: str
    at: dt.datetime


@dataclass(frozen=True)
class ChallengeInfo:
    """A national challenge as the reader may see it.

    Attributes:
        links: ``KIND:NAME`` of the linked datasets, models and campaigns (those the reader
            may read).
        reviews: The yearly review notes, by year, then as written.
    """

    name: str
    domain: str
    lead_org: str
    description: str
    links: tuple[str, ...]
    reviews: tuple[Review, ...]
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["links"] = list(self.links)
        out["reviews"] = [{**asdict(r), "at": r.at.isoformat()} for r in self.reviews]
        out["created_at"] = self.created_at.isoformat()
        return out


@dataclass(frozen=True)
class PartnerInfo:
    """A partner organization as the reader may see it.

    Attributes:
        mou: The MOU (or partnership agreement) it signed ('' if none is recorded).
        contributes: ``KIND:NAME`` of the sites, stations, datasets and models it
            contributes (those the reader may read).
        agreements: The agreements in force for it (active, started, not expired) that the
            reader may read.
    """

    org: str
    mou: str
    contributes: tuple[str, ...]
    agreements: tuple[str, ...]
    note: str
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["contributes"] = list(self.contributes)
        out["agreements"] = list(self.agreements)
        out["created_at"] = self.created_at.isoformat()
        return out


class ChallengeService:
    """National science and technology challenges (``p.challenges``).

    Args:
        ctx: The platform's service context.
        finders: Per kind (``dataset``, ``model``, ``campaign``), the lookup that checks a
            linked asset exists.
    """

    def __init__(self, ctx: ServiceContext, finders: Mapping[str, Finder]) -> None:
        self._ctx = ctx
        self._finders = finders

    def add(self, name: str, domain: str, lead_org: str, description: str = "") -> ChallengeInfo:
        """Register a challenge led by ``lead_org`` (the operator's admins).

        Raises:
            InvalidInput: a bad or taken name, an empty domain, or no such organization.
        """
        _check_name("name", name, "e.g. grid-storage-2030")
        if not domain.strip():
            raise InvalidInput("domain", "is empty", "e.g. energy storage")
        detail = {"op": "add", "domain": domain, "lead_org": lead_org}
        with self._ctx.mutation("administer", Resource("challenge", name), detail) as s:
            if _challenge(s, name) is not None:
                raise InvalidInput("name", f"challenge {name!r} exists", "choose another name")
            _require_org(s, "lead_org", lead_org)
            s.add(
                ChallengeRow(
                    name=name, domain=domain.strip(), lead_org=lead_org, description=description
                )
            )
        return self.get(name)

    def link(self, name: str, ref: str) -> ChallengeInfo:
        """Link a dataset, model or campaign (``KIND:NAME``; a campaign by id) that exists.

        Linking what is linked already changes nothing.

        Raises:
            InvalidInput: ``ref`` is not ``KIND:NAME`` of a linkable kind.
            NotFound: no such challenge, or no such asset.
        """
        resource = Resource("challenge", name)
        self._ctx.authorize("administer", resource)
        link = _parse("link", ref, CHALLENGE_LINKS)
        with self._ctx.reading(Resource("challenge", "*")) as s:
            row = _require_challenge(s, name)
            if link in row.links:
                return self._info(row)
        _look_up(self._finders, "link", link)
        with self._ctx.mutation("administer", resource, {"op": "link", "link": link}) as s:
            row = _require_challenge(s, name)
            if link not in row.links:
                row.links = [*row.links, link]
        return self.get(name)

    def review(self, name: str, year: int, note: str) -> ChallengeInfo:
        """Append a yearly review note (the year it reviews, and what it found).

        Raises:
            InvalidInput: a year outside 1950 to next year, or an empty note.
            NotFound: no such challenge.
        """
        this_year = utcnow().year
        if isinstance(year, bool) or not isinstance(year, int):
            raise InvalidInput("year", f"{year!r} is not a year", f"e.g. {this_year}")
        if not _FIRST_YEAR <= year <= this_year + 1:
            raise InvalidInput(
                "year", f"{year} is not a review year", f"use {_FIRST_YEAR} to {this_year + 1}"
            )
        if not note.strip():
            raise InvalidInput("note", "is empty", "say what the review found")
        entry = {"year": year, "note": note, "by": str(self._ctx.principal)}
        with self._ctx.mutation(
            "administer", Resource("challenge", name), {"op": "review", "year": year}
        ) as s:
            row = _require_challenge(s, name)
            row.reviews = [*row.reviews, {**entry, "at": utcnow().isoformat()}]
        return self.get(name)

    def get(self, name: str) -> ChallengeInfo:
        """One challenge.

        Raises:
            NotFound: no such challenge.
        """
        with self._ctx.reading(Resource("challenge", "*")) as s:
            return self._info(_require_challenge(s, name))

    def list(self) -> list[ChallengeInfo]:
        """Every challenge, by name."""
        with self._ctx.reading(Resource("challenge", "*")) as s:
            return [
                self._info(r) for r in s.scalars(select(ChallengeRow).order_by(ChallengeRow.name))
            ]

    def _info(self, r: ChallengeRow) -> ChallengeInfo:
        reviews = sorted((_review(v) for v in r.reviews or ()), key=lambda v: (v.year, v.at))
        return ChallengeInfo(
            r.name,
            r.domain,
            r.lead_org,
            r.description,
            _readable(self._ctx, r.links),
            tuple(reviews),
            r.created_at,
        )


class PartnerService:
    """Partner organizations, their MOUs and what they contribute (``p.partners``).

    Args:
        ctx: The platform's service context.
        finders: Per kind (``site``, ``station``, ``dataset``, ``model``), the lookup that
            checks a contributed resource exists.
    """

    def __init__(self, ctx: ServiceContext, finders: Mapping[str, Finder]) -> None:
        self._ctx = ctx
        self._finders = finders

    def add(self, org: str, mou: str = "", note: str = "") -> PartnerInfo:
        """Register organization ``org`` as a partner, under agreement ``mou`` if given.

        Raises:
            InvalidInput: already a partner, or ``mou`` names no agreement ``org`` is a
                party to.
            NotFound: no such organization.
        """
        with self._ctx.mutation(
            "administer", Resource("partner", org), {"op": "add", "mou": mou}
        ) as s:
            if s.scalar(select(OrgRow.id).where(OrgRow.name == org)) is None:
                raise NotFound("organization", org, "register it first: `genesis org create`")
            if _partner(s, org) is not None:
                raise InvalidInput("org", f"{org} is a partner already", "`genesis partner show`")
            if mou:
                _check_mou(s, org, mou)
            s.add(PartnerRow(org=org, mou=mou, note=note))
        return self.get(org)

    def contribute(self, org: str, ref: str) -> PartnerInfo:
        """Record that ``org`` contributes a site, station, dataset or model (``KIND:NAME``).

        Recording what is recorded already changes nothing.

        Raises:
            InvalidInput: ``ref`` is not ``KIND:NAME`` of a kind partners contribute.
            NotFound: no such partner, or no such resource.
        """
        resource = Resource("partner", org)
        self._ctx.authorize("administer", resource)
        item = _parse("contribution", ref, PARTNER_CONTRIBUTIONS)
        with self._ctx.reading(Resource("partner", "*")) as s:
            row = _require_partner(s, org)
            if item in row.contributes:
                return self._info(s, row)
        _look_up(self._finders, "contribution", item)
        with self._ctx.mutation("administer", resource, {"op": "contribute", "item": item}) as s:
            row = _require_partner(s, org)
            if item not in row.contributes:
                row.contributes = [*row.contributes, item]
        return self.get(org)

    def get(self, org: str) -> PartnerInfo:
        """One partner.

        Raises:
            NotFound: ``org`` is not a partner.
        """
        with self._ctx.reading(Resource("partner", "*")) as s:
            return self._info(s, _require_partner(s, org))

    def list(self) -> list[PartnerInfo]:
        """Every partner, by organization."""
        with self._ctx.reading(Resource("partner", "*")) as s:
            rows = s.scalars(select(PartnerRow).order_by(PartnerRow.org)).all()
            return [self._info(s, r) for r in rows]

    def _info(self, s: Session, r: PartnerRow) -> PartnerInfo:
        now = utcnow()
        in_force = s.scalars(
            select(AgreementRow.name)
            .join(AgreementPartyRow, AgreementPartyRow.agreement_id == AgreementRow.id)
            .where(
                AgreementPartyRow.org == r.org,
                AgreementRow.state == "active",
                AgreementRow.starts_at <= now,
                AgreementRow.expires_at > now,
            )
            .order_by(AgreementRow.name)
        ).all()
        agreements = _visible(self._ctx, "agreement", in_force)
        mou = r.mou if r.mou and _visible(self._ctx, "agreement", [r.mou]) else ""
        return PartnerInfo(
            r.org, mou, _readable(self._ctx, r.contributes), agreements, r.note, r.created_at
        )


# ---- checks -------------------------------------------------------------------------


def _check_name(field: str, name: str, example: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(
            field,
            f"{name!r} is not a valid name",
            f"use lowercase letters, digits, '.', '_' and '-' ({example})",
        )


def _require_org(s: Session, field: str, org: str) -> None:
    if s.scalar(select(OrgRow.id).where(OrgRow.name == org)) is None:
        raise InvalidInput(
            field, f"no organization is named {org!r}", "`genesis org list` shows them"
        )


def _check_mou(s: Session, org: str, mou: str) -> None:
    """``mou`` is an MOU or CRADA ``org`` is a party to, not terminated."""
    found = s.scalar(select(AgreementRow).where(AgreementRow.name == mou))
    party = found is not None and s.scalar(
        select(AgreementPartyRow.id).where(
            AgreementPartyRow.agreement_id == found.id, AgreementPartyRow.org == org
        )
    )
    if found is None or not party:
        raise InvalidInput(
            "mou", f"{org} is a party to no agreement named {mou!r}", "name an MOU it signed"
        )
    if found.kind not in ("mou", "crada") or found.state == "terminated":
        raise InvalidInput(
            "mou",
            f"agreement {mou!r} is a {found.state} {found.kind}",
            "name an MOU (or CRADA) that is not terminated",
        )


def _parse(field: str, ref: str, kinds: Sequence[str]) -> str:
    """``ref`` as ``KIND:NAME`` with a kind of ``kinds`` (lowercased), the name as given."""
    kind, sep, name = ref.strip().partition(":")
    kind = kind.lower()
    if not sep or not name or kind not in kinds:
        raise InvalidInput(
            field,
            f"{ref!r} is not KIND:NAME with KIND one of {', '.join(kinds)}",
            f"e.g. {kinds[0]}:NAME",
        )
    return f"{kind}:{name}"


def _look_up(finders: Mapping[str, Finder], field: str, ref: str) -> None:
    """Raise NotFound unless the asset ``ref`` (``KIND:NAME``) exists."""
    kind, _, name = ref.partition(":")
    try:
        finders[kind](name)
    except InvalidInput as exc:  # a malformed name or version, as the owning service says
        raise InvalidInput(field, f"{ref!r}: {exc.problem}", exc.fix) from None


def _visible(ctx: ServiceContext, kind: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n, ok in zip(names, ctx.visible(kind, names), strict=True) if ok)


def _readable(ctx: ServiceContext, refs: Sequence[Any]) -> tuple[str, ...]:
    """The ``KIND:NAME`` refs whose asset the principal may read, in order."""
    out = []
    for ref in refs:
        kind, _, name = str(ref).partition(":")
        if ctx.visible(kind, [name.partition("@")[0]])[0]:
            out.append(str(ref))
    return tuple(out)


# ---- rows ---------------------------------------------------------------------------


def _challenge(s: Session, name: str) -> ChallengeRow | None:
    return s.scalar(select(ChallengeRow).where(ChallengeRow.name == name))


def _require_challenge(s: Session, name: str) -> ChallengeRow:
    row = _challenge(s, name)
    if row is None:
        raise NotFound("challenge", name, "`genesis challenge list` shows them")
    return row


def _partner(s: Session, org: str) -> PartnerRow | None:
    return s.scalar(select(PartnerRow).where(PartnerRow.org == org))


def _require_partner(s: Session, org: str) -> PartnerRow:
    row = _partner(s, org)
    if row is None:
        raise NotFound("partner", org, "`genesis partner list` shows them")
    return row


def _review(v: Mapping[str, Any]) -> Review:
    return Review(
        int(v["year"]), str(v["note"]), str(v.get("by", "")), dt.datetime.fromisoformat(v["at"])
    )
