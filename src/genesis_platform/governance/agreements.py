"""Agreements between organizations (``p.agreements``): create, sign, terminate, render.

An agreement names its parties (organizations), what it covers (assets as ``KIND:NAME``, or
every asset of an owner as ``owner:ORG``), its terms and its dates. Its lifecycle::

    draft --sign--> signed (by some parties) --sign--> active (signed by all)
      |                 |                                 |-- past its expiry --> expired
      +-----------------+----------- terminate -----------+----------------> terminated

Decisions (``policies/default.cedar``) let a vetted member of one party read, run or export
a gated asset of another party while an agreement between them is active, started and not
expired, covers the asset and permits the request's purpose. Every change made here is
recorded with :meth:`~genesis_platform.governance.context.ServiceContext.changed` in its
transaction, so decisions follow it as soon as it commits.

Who may do what (decided by the policy): creating an agreement is ``write`` on
``agreement:NAME``, allowed to the members of the creating organization, which owns it;
the parties' members read it; the parties' owners and admins sign and terminate it.

One template per kind ships in ``templates/KIND.toml``: a title, a description, default
terms and a default duration; :func:`agreement_template` reads one.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import retry_conflicts
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AssetRow,
    AuditRecord,
    OrgRow,
    utcnow,
)
from genesis_platform.errors import AccessDenied, GenesisError, InvalidInput, NotFound
from genesis_platform.governance._validate import one_of
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext
from genesis_platform.governance.identity import check_name

__all__ = [
    "COVERABLE",
    "IP_OWNERSHIP",
    "KINDS",
    "TERM_NAMES",
    "USES",
    "AgreementInfo",
    "AgreementParty",
    "AgreementService",
    "AgreementTemplate",
    "AgreementTerms",
    "agreement_template",
    "agreement_templates",
    "render_agreement",
]

KINDS = ("mou", "crada", "data-use", "model-sharing", "license")
"""Kinds of agreement; each has a template of the same name."""
USES = ("research", "commercial", "government")
"""The uses an agreement may permit (a request's declared purpose is one of them)."""
IP_OWNERSHIP = ("owner", "joint", "licensee")
"""Who owns what is made under an agreement."""
COVERABLE = ("dataset", "model", "station", "site", "campaign")
"""Kinds of asset an agreement covers by ``KIND:NAME`` (``owner:ORG`` covers all of them)."""
TERM_NAMES = (
    "permitted_uses",
    "ip_ownership",
    "attribution",
    "redistribution",
    "export_control",
    "royalty_note",
)
"""The terms an agreement carries."""

_IP_MEANING = {
    "owner": "each asset's owner keeps the rights in it and in what is derived from it",
    "joint": "what the parties make under the agreement is owned by them jointly",
    "licensee": "what the receiving party makes from the covered assets is its own",
}
_LIST_HINT = "`genesis agreement list` shows the agreements you may read"
_EXAMPLE_ITEMS = "e.g. ['argonne', 'acme']"


# ---- terms and templates ---------------------------------------------------------------


@dataclass(frozen=True)
class AgreementTerms:
    """What an agreement grants and asks in return.

    Attributes:
        permitted_uses: The purposes access is granted for (``research``, ``commercial``,
            ``government``).
        ip_ownership: ``owner`` (each asset's owner keeps its rights), ``joint`` or
            ``licensee`` (the receiving party owns what it makes).
        attribution: How users must credit the providers.
        redistribution: Whether the parties may pass covered assets on (allows ``export``).
        export_control: Whether the covered assets are export-controlled.
        royalty_note: Royalties or other consideration, in words.
    """

    permitted_uses: tuple[str, ...] = ("research",)
    ip_ownership: str = "owner"
    attribution: str = ""
    redistribution: bool = False
    export_control: bool = False
    royalty_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The terms as stored and as JSON."""
        return {
            "permitted_uses": list(self.permitted_uses),
            "ip_ownership": self.ip_ownership,
            "attribution": self.attribution,
            "redistribution": self.redistribution,
            "export_control": self.export_control,
            "royalty_note": self.royalty_note,
        }

    def merged(
        self, given: Mapping[str, Any] | None, field_prefix: str = "terms"
    ) -> AgreementTerms:
        """These terms with ``given`` ones replacing them, each validated.

        Raises:
            InvalidInput: an unknown term or a bad value (field ``terms.NAME``).
        """
        if given is None:
            return self
        if not isinstance(given, Mapping):
            raise InvalidInput(
                field_prefix,
                "must map term names to values",
                "e.g. {'permitted_uses': ['research']}",
            )
        values = self.to_dict()
        for key, value in given.items():
            where = f"{field_prefix}.{key}"
            if key not in TERM_NAMES:
                raise InvalidInput(where, "is not a term", f"the terms are {', '.join(TERM_NAMES)}")
            values[key] = _term(where, key, value)
        return AgreementTerms(
            permitted_uses=tuple(values["permitted_uses"]),
            ip_ownership=values["ip_ownership"],
            attribution=values["attribution"],
            redistribution=values["redistribution"],
            export_control=values["export_control"],
            royalty_note=values["royalty_note"],
        )


def _term(where: str, key: str, value: Any) -> Any:
    """A validated term value."""
    if key == "permitted_uses":
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise InvalidInput(where, f"{value!r} is not a list of uses", "e.g. ['research']")
        uses = list(value)
        for use in uses:
            if use not in USES:
                raise InvalidInput(where, f"{use!r} is not a use", f"use any of {', '.join(USES)}")
        if not uses:
            raise InvalidInput(where, "permits no use", f"permit one or more of {', '.join(USES)}")
        return [u for u in USES if u in uses]
    if key == "ip_ownership":
        if value not in IP_OWNERSHIP:
            raise InvalidInput(
                where, f"{value!r} is not a kind of IP ownership", f"use {', '.join(IP_OWNERSHIP)}"
            )
        return value
    if key in ("redistribution", "export_control"):
        if not isinstance(value, bool):
            raise InvalidInput(where, f"{value!r} is not true or false", "give a bool")
        return value
    if not isinstance(value, str):
        raise InvalidInput(where, f"{value!r} is not text", "give a string")
    return value.strip()


@dataclass(frozen=True)
class AgreementTemplate:
    """A standard agreement of one kind, shipped with the package.

    Attributes:
        kind: The agreement kind (and the template's name).
        title: The title agreements made from it get unless given one.
        description: What such an agreement is for, in a sentence or two.
        duration_days: How long it runs from its start unless an expiry is given (days).
        terms: The terms it fills in unless given others.
    """

    kind: str
    title: str
    description: str
    duration_days: int
    terms: AgreementTerms

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "duration_days": self.duration_days,
            "terms": self.terms.to_dict(),
        }


@functools.cache
def agreement_template(kind: str) -> AgreementTemplate:
    """The template of ``kind`` (read from ``templates/KIND.toml`` once).

    Raises:
        InvalidInput: (field ``template``) no template of that name.
    """
    _choice("template", kind, KINDS)
    folder = resources.files("genesis_platform.governance") / "templates"
    data = tomllib.loads((folder / f"{kind}.toml").read_text(encoding="utf-8"))
    return AgreementTemplate(
        kind=kind,
        title=str(data["title"]),
        description=str(data["description"]),
        duration_days=int(data["duration_days"]),
        terms=AgreementTerms().merged(data.get("terms", {}), f"templates/{kind}.toml terms"),
    )


def agreement_templates() -> list[AgreementTemplate]:
    """Every shipped template, one per kind."""
    return [agreement_template(kind) for kind in KINDS]


# ---- what get and list return ----------------------------------------------------------


@dataclass(frozen=True)
class AgreementParty:
    """A party to an agreement and its signature, once given."""

    org: str
    signed_by: str = ""
    """``user@org`` of who signed for it."""
    signed_at: dt.datetime | None = None

    @property
    def signed(self) -> bool:
        """Whether this party signed."""
        return self.signed_at is not None


@dataclass(frozen=True)
class AgreementInfo:
    """An agreement as stored.

    Attributes:
        name: Its unique name.
        kind: ``mou``, ``crada``, ``data-use``, ``model-sharing`` or ``license``.
        title: Its title.
        state: The stored state: ``draft``, ``signed`` (by some parties), ``active`` (by
            all) or ``terminated``. :attr:`effective_state` also says ``expired``.
        terms: Its terms.
        parties: The parties, in the order given, with their signatures.
        covers: ``KIND:NAME`` of covered assets and ``owner:ORG`` for all of an owner's.
        starts_at: When it starts to grant access (UTC).
        expires_at: When it stops (UTC).
        created_at: When it was drawn up.
        created_by: ``user@org`` of who drew it up; that organization owns it.
        terminated_at: When it was terminated, if it was.
        termination_reason: Why.
    """

    name: str
    kind: str
    title: str
    state: str
    terms: AgreementTerms
    parties: tuple[AgreementParty, ...]
    covers: tuple[str, ...]
    starts_at: dt.datetime
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    terminated_at: dt.datetime | None = None
    termination_reason: str = ""

    @property
    def owner(self) -> str:
        """The organization that drew it up (and owns it)."""
        return self.created_by.rpartition("@")[2]

    def state_at(self, when: dt.datetime) -> str:
        """The state at ``when``: ``expired`` once past the expiry, unless terminated.

        A draft or partly signed agreement past its expiry is expired too: it can no
        longer be signed.
        """
        if self.state == "terminated":
            return "terminated"
        if when >= self.expires_at:
            return "expired"
        return self.state

    @property
    def effective_state(self) -> str:
        """``draft``, ``signed``, ``active``, ``expired`` or ``terminated``, as of now."""
        return self.state_at(utcnow())

    @property
    def in_force(self) -> bool:
        """Whether it grants access now: active, started and not expired."""
        now = utcnow()
        return self.state_at(now) == "active" and self.starts_at <= now

    @property
    def unsigned(self) -> tuple[str, ...]:
        """The parties that have not signed yet."""
        return tuple(p.org for p in self.parties if not p.signed)

    def to_dict(self) -> dict[str, Any]:
        """As JSON (times in ISO 8601, UTC)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "state": self.state,
            "effective_state": self.effective_state,
            "owner": self.owner,
            "parties": [
                {"org": p.org, "signed_by": p.signed_by, "signed_at": _iso(p.signed_at)}
                for p in self.parties
            ],
            "covers": list(self.covers),
            "terms": self.terms.to_dict(),
            "starts_at": _iso(self.starts_at),
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "terminated_at": _iso(self.terminated_at),
            "termination_reason": self.termination_reason,
        }


# ---- the service -----------------------------------------------------------------------


class AgreementService:
    """Agreements between organizations (``p.agreements``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def templates(self) -> list[AgreementTemplate]:
        """The shipped templates, one per kind."""
        return agreement_templates()

    def create(
        self,
        name: str,
        kind: str,
        parties: Sequence[str],
        *,
        covers: Sequence[str] = (),
        terms: Mapping[str, Any] | None = None,
        title: str = "",
        starts: dt.datetime | dt.date | None = None,
        expires: dt.datetime | dt.date | None = None,
        template: str | None = None,
    ) -> AgreementInfo:
        """Draw up agreement ``name`` between ``parties``, in state ``draft``.

        Args:
            name: A new, unique name (lowercase letters, digits, ``.``, ``_``, ``-``).
            kind: ``mou``, ``crada``, ``data-use``, ``model-sharing`` or ``license``.
            parties: Two or more organizations, the principal's among them.
            covers: ``KIND:NAME`` of assets of the parties (``dataset``, ``model``,
                ``station``, ``site``, ``campaign``), or ``owner:ORG`` for every asset of a
                party.
            terms: Terms to set (see :class:`AgreementTerms`); the others come from the
                template.
            title: Default: the template's.
            starts: When it starts to grant access (default: now). A date means its
                midnight UTC; a time without a zone is UTC.
            expires: When it stops (default: ``starts`` plus the template's duration).
            template: The template that fills what is not given (default: ``kind``'s).

        Raises:
            InvalidInput: a bad field (named), including a taken name, an unknown party or
                covered asset, the principal's organization not among the parties, and an
                expiry not after the start or in the past. Nothing is stored.
            AccessDenied: the principal may not create agreements.
        """
        check_name("name", name)
        _choice("kind", kind, KINDS)
        base = agreement_template(template or kind)
        me = self._ctx.principal
        orgs = _parties(parties, me.org)
        wanted = _covers(covers)
        agreed = base.terms.merged(terms)
        if not isinstance(title, str):
            raise InvalidInput("title", f"{title!r} is not text", "give a string")
        now = utcnow()
        starts_at = now if starts is None else _when("starts", starts)
        expires_at = (
            starts_at + dt.timedelta(days=base.duration_days)
            if expires is None
            else _when("expires", expires)
        )
        if expires_at <= starts_at:
            raise InvalidInput(
                "expires",
                f"{_time(expires_at)} is not after the start, {_time(starts_at)}",
                "give an expiry after the start",
            )
        if expires_at <= now:
            raise InvalidInput(
                "expires", f"{_time(expires_at)} is in the past", "give an expiry in the future"
            )
        detail = {"operation": "create", "kind": kind, "parties": orgs, "covers": wanted}

        def insert() -> None:
            with self._ctx.mutation("write", Resource("agreement", name), detail) as s:
                taken = s.scalar(select(AgreementRow.id).where(AgreementRow.name == name))
                if taken is not None:
                    raise InvalidInput(
                        "name", f"an agreement named {name!r} exists", "choose another name"
                    )
                _check_orgs(s, orgs)
                _check_covers(s, wanted, orgs)
                row = AgreementRow(
                    name=name,
                    kind=kind,
                    title=title.strip() or base.title,
                    state="draft",
                    terms=agreed.to_dict(),
                    covers=wanted,
                    starts_at=starts_at,
                    expires_at=expires_at,
                    created_by=str(me),
                )
                s.add(row)
                s.flush()
                s.add_all(AgreementPartyRow(agreement_id=row.id, org=org) for org in orgs)
                self._ctx.changed(s, "agreement", name)

        # Another writer taking the name meanwhile makes the retry raise InvalidInput.
        retry_conflicts(insert)
        return self.get(name)

    def sign(self, name: str) -> AgreementInfo:
        """Sign agreement ``name`` for the principal's organization.

        It becomes ``signed`` once a party signed, and ``active`` once every party did.

        Raises:
            AccessDenied: the principal's organization is not a party (the message names
                the parties), or the principal may not sign for it.
            InvalidInput: (field ``name``) it was terminated, has expired, or this
                organization signed it already.
            NotFound: no such agreement.
        """
        me = self._ctx.principal
        self._current()
        with _refusals(self._ctx, name, "sign"):
            detail = {"operation": "sign", "org": me.org}
            with self._ctx.mutation("write", Resource("agreement", name), detail) as s:
                row = _locked(s, name)
                parties = _party_rows(s, row.id)
                mine = next((p for p in parties if p.org == me.org), None)
                if mine is None:
                    raise _not_a_party(self._ctx, "sign", name, [p.org for p in parties])
                now = utcnow()
                _check_open(row, now, "signed")
                if mine.signed_at is not None:
                    waiting = [p.org for p in parties if p.signed_at is None]
                    raise InvalidInput(
                        "name",
                        f"{me.org} signed agreement {name} already "
                        f"({mine.signed_by}, {_time(mine.signed_at)})",
                        "nothing to do; "
                        + (f"waiting for {', '.join(waiting)}" if waiting else "it is active"),
                    )
                mine.signed_by, mine.signed_at = str(me), now
                everyone = all(p.signed_at is not None for p in parties)
                row.state = "active" if everyone else "signed"
                self._ctx.changed(s, "agreement", name)
        return self.get(name)

    def terminate(self, name: str, reason: str) -> AgreementInfo:
        """End agreement ``name`` now, for ``reason``; it grants nothing from then on.

        Raises:
            InvalidInput: an empty reason (field ``reason``), or it was terminated already.
            AccessDenied: the principal may not terminate it (a party's owners and admins).
            NotFound: no such agreement.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason", "is empty", "say why, e.g. 'the project ended'")
        reason = reason.strip()
        me = self._ctx.principal
        self._current()
        with _refusals(self._ctx, name, "terminate"):
            detail = {"operation": "terminate", "reason": reason}
            with self._ctx.mutation("write", Resource("agreement", name), detail) as s:
                row = _locked(s, name)
                orgs = [p.org for p in _party_rows(s, row.id)]
                if me.org not in orgs:
                    raise _not_a_party(self._ctx, "terminate", name, orgs)
                if row.state == "terminated":
                    raise InvalidInput(
                        "name",
                        f"agreement {name} was terminated already, {_time(row.terminated_at)}",
                        "nothing to do",
                    )
                row.state, row.terminated_at = "terminated", utcnow()
                self._ctx.changed(s, "agreement", name)
        return self.get(name)

    def get(self, name: str) -> AgreementInfo:
        """One agreement, with its parties and their signatures.

        Raises:
            NotFound: no such agreement.
            AccessDenied: the principal may not read it (members of its parties may).
        """
        with self._ctx.reading(Resource("agreement", name)) as s:
            row = s.scalar(select(AgreementRow).where(AgreementRow.name == name))
            if row is None:
                raise NotFound("agreement", name, _LIST_HINT)
            return _info(s, row, _party_rows(s, row.id))

    def list(self) -> list[AgreementInfo]:
        """The agreements the principal may read, by name."""
        with self._ctx.reading(Resource("agreement", "*")) as s:
            names = s.scalars(select(AgreementRow.name).order_by(AgreementRow.name)).all()
            seen = self._ctx.visible("agreement", names)
            keep = [n for n, ok in zip(names, seen, strict=True) if ok]
            rows = s.scalars(
                select(AgreementRow).where(AgreementRow.name.in_(keep)).order_by(AgreementRow.name)
            ).all()
            parties: dict[int, list[AgreementPartyRow]] = {row.id: [] for row in rows}
            for party in s.scalars(
                select(AgreementPartyRow)
                .where(AgreementPartyRow.agreement_id.in_(list(parties)))
                .order_by(AgreementPartyRow.id)
            ):
                parties[party.agreement_id].append(party)
            return [_info(s, row, parties[row.id]) for row in rows]

    def render(self, name: str) -> str:
        """Agreement ``name``'s parties, coverage, terms, dates and state, as Markdown."""
        return render_agreement(self.get(name))

    def _current(self) -> None:
        """Catch up with other processes' changes before deciding on a signature or an end.

        A decision on an agreement this process has not seen yet would take it for a new
        one, owned by the principal's organization.
        """
        if self._ctx.governance is not None:
            self._ctx.governance.refresh(now=True)


@contextmanager
def _refusals(ctx: ServiceContext, name: str, verb: str) -> Iterator[None]:
    """Re-raise the policy's refusal to sign or terminate as one that says who may."""
    try:
        yield
    except AccessDenied as exc:
        if "parties" in exc.details or "unknown-principal" in exc.details.get("policies", ()):
            raise  # ours, naming the parties already; or one that says who is unknown
        with ctx.db.session(write=False) as s:
            row = s.scalar(select(AgreementRow).where(AgreementRow.name == name))
            orgs = [] if row is None else [p.org for p in _party_rows(s, row.id)]
        me = ctx.principal
        if row is None:
            raise
        if me.org not in orgs:
            raise _not_a_party(ctx, verb, name, orgs, exc.details) from exc
        raise AccessDenied(
            f"{exc}; an owner or admin of {me.org} {verb}s it for {me.org}",
            **{**exc.details, "parties": orgs},
        ) from exc


def _not_a_party(
    ctx: ServiceContext,
    verb: str,
    name: str,
    orgs: Sequence[str],
    details: Mapping[str, Any] | None = None,
) -> GenesisError:
    """The refusal of a non-party: naming the parties only to those who may read it.

    To others it is the refusal of an agreement that does not exist, so they learn neither
    that it exists nor who signed it.
    """
    if not ctx.may("read", Resource("agreement", name)):
        return NotFound("agreement", name, _LIST_HINT)
    who = str(ctx.principal)
    org = ctx.principal.org
    return AccessDenied(
        f"{who} may not {verb} agreement {name}: {org} is not a party to it (its parties are "
        f"{', '.join(orgs)}); an owner or admin of a party {verb}s it",
        **{**(details or {}), "parties": list(orgs)},
    )


# ---- validation ------------------------------------------------------------------------


def _choice(field_name: str, value: Any, allowed: Sequence[str]) -> None:
    one_of(field_name, value, allowed, "`genesis agreement templates` describes each kind")


def _parties(parties: Sequence[str], mine: str) -> list[str]:
    if isinstance(parties, str) or not isinstance(parties, Iterable):
        raise InvalidInput("parties", f"{parties!r} is not a list of organizations", _EXAMPLE_ITEMS)
    orgs: list[str] = []
    for org in parties:
        if not isinstance(org, str):
            raise InvalidInput("parties", f"{org!r} is not an organization name", _EXAMPLE_ITEMS)
        check_name("parties", org)
        if org in orgs:
            raise InvalidInput("parties", f"{org} is listed twice", "list each party once")
        orgs.append(org)
    if mine not in orgs:
        raise InvalidInput(
            "parties",
            f"your organization, {mine}, is not among the parties ({', '.join(orgs) or 'none'})",
            f"add it (--party {mine}): an organization draws up agreements it is a party to",
        )
    if len(orgs) < 2:
        raise InvalidInput(
            "parties", "an agreement needs two or more parties", "add the other organizations"
        )
    return orgs


def _covers(covers: Sequence[str]) -> list[str]:
    example = "e.g. dataset:spectra, or owner:argonne for all of argonne's assets"
    if isinstance(covers, str) or not isinstance(covers, Iterable):
        raise InvalidInput("covers", f"{covers!r} is not a list of KIND:NAME", example)
    items: list[str] = []
    for item in covers:
        kind, sep, name = item.partition(":") if isinstance(item, str) else ("", "", "")
        if not sep or not kind or not name:
            raise InvalidInput("covers", f"{item!r} is not KIND:NAME or owner:ORG", example)
        if kind == "owner":
            check_name("covers", name)
        elif kind not in COVERABLE:
            raise InvalidInput(
                "covers",
                f"{kind!r} is not a kind of asset agreements cover",
                f"use {', '.join(COVERABLE)}, or owner:ORG",
            )
        if item not in items:
            items.append(item)
    return items


def _check_orgs(s: Session, orgs: Sequence[str]) -> None:
    known = set(s.scalars(select(OrgRow.name).where(OrgRow.name.in_(orgs))))
    for org in orgs:
        if org not in known:
            raise InvalidInput(
                "parties", f"no organization named {org!r}", "`genesis org list` shows them"
            )


def _check_covers(s: Session, items: Sequence[str], orgs: Sequence[str]) -> None:
    for item in items:
        kind, _, name = item.partition(":")
        if kind == "owner":
            if name not in orgs:
                raise InvalidInput(
                    "covers",
                    f"{item} covers the assets of {name}, which is not a party",
                    f"cover assets of the parties ({', '.join(orgs)}) or add {name} as a party",
                )
            continue
        owner = s.scalar(
            select(AssetRow.owner_org).where(AssetRow.kind == kind, AssetRow.name == name)
        )
        if owner is None:
            raise InvalidInput(
                "covers", f"no {kind} named {name!r}", f"`genesis {_COMMAND[kind]} list` shows them"
            )
        if owner not in orgs:
            raise InvalidInput(
                "covers",
                f"{item} does not belong to a party ({', '.join(orgs)})",
                "an agreement covers only its parties' assets",
            )


_COMMAND = {
    "dataset": "data",
    "model": "model",
    "station": "station",
    "site": "site",
    "campaign": "campaign",
}


def _when(field_name: str, value: Any) -> dt.datetime:
    """A timezone-aware UTC time from a datetime (naive: UTC) or a date (its midnight UTC)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise InvalidInput(field_name, f"{value!r} is not a date or time", "e.g. date(2027, 1, 31)")


def _check_open(row: AgreementRow, now: dt.datetime, done: str) -> None:
    """Refuse to change a terminated or expired agreement."""
    if row.state == "terminated":
        raise InvalidInput(
            "name",
            f"agreement {row.name} was terminated {_time(row.terminated_at)}; it cannot be {done}",
            "draw up a new agreement",
        )
    if now >= row.expires_at:
        raise InvalidInput(
            "name",
            f"agreement {row.name} expired {_time(row.expires_at)}; it cannot be {done}",
            "draw up a new agreement",
        )


# ---- reading ---------------------------------------------------------------------------


def _locked(s: Session, name: str) -> AgreementRow:
    """The agreement row, locked until the transaction ends, so signatures count one by one.

    On PostgreSQL the row is locked; on SQLite a writing transaction holds the database's
    lock already.
    """
    row = s.scalar(select(AgreementRow).where(AgreementRow.name == name).with_for_update())
    if row is None:
        raise NotFound("agreement", name, _LIST_HINT)
    return row


def _party_rows(s: Session, agreement_id: int) -> list[AgreementPartyRow]:
    return list(
        s.scalars(
            select(AgreementPartyRow)
            .where(AgreementPartyRow.agreement_id == agreement_id)
            .order_by(AgreementPartyRow.id)
        )
    )


def _info(s: Session, row: AgreementRow, parties: Sequence[AgreementPartyRow]) -> AgreementInfo:
    stored: dict[str, Any] = dict(row.terms or {})
    terms = AgreementTerms(
        permitted_uses=tuple(stored.get("permitted_uses", ())),
        ip_ownership=str(stored.get("ip_ownership", "owner")),
        attribution=str(stored.get("attribution", "")),
        redistribution=bool(stored.get("redistribution", False)),
        export_control=bool(stored.get("export_control", False)),
        royalty_note=str(stored.get("royalty_note", "")),
    )
    return AgreementInfo(
        name=row.name,
        kind=row.kind,
        title=row.title,
        state=row.state,
        terms=terms,
        parties=tuple(AgreementParty(p.org, p.signed_by, p.signed_at) for p in parties),
        covers=tuple(str(c) for c in row.covers or ()),
        starts_at=row.starts_at,
        expires_at=row.expires_at,
        created_at=row.created_at,
        created_by=row.created_by,
        terminated_at=row.terminated_at,
        termination_reason=_termination_reason(s, row.name) if row.state == "terminated" else "",
    )


def _termination_reason(s: Session, name: str) -> str:
    """The reason given when ``name`` was terminated: kept in the audit record of it."""
    details = s.scalars(
        select(AuditRecord.detail)
        .where(
            AuditRecord.resource_kind == "agreement",
            AuditRecord.resource_id == name,
            AuditRecord.action == "write",
            AuditRecord.decision == "allow",
        )
        .order_by(AuditRecord.id.desc())
    )
    for detail in details:
        if isinstance(detail, dict) and detail.get("operation") == "terminate":
            return str(detail.get("reason", ""))
    return ""


# ---- rendering -------------------------------------------------------------------------


def render_agreement(info: AgreementInfo, now: dt.datetime | None = None) -> str:
    """An agreement's state, parties, coverage, terms and dates, as Markdown for people."""
    now = now or utcnow()
    t = info.terms
    lines = [
        f"# {info.title}",
        "",
        f"Agreement `{info.name}`, a {info.kind} agreement drawn up by {info.created_by} "
        f"on {_time(info.created_at)}.",
        "",
        f"**State: {info.state_at(now)}**: {_state_sentence(info, now)}",
        "",
        "## Parties",
        "",
    ]
    for p in info.parties:
        signature = f"signed by {p.signed_by}, {_time(p.signed_at)}" if p.signed else "not signed"
        lines.append(f"- {p.org}: {signature}")
    lines += ["", "## Covered assets", ""]
    lines += [f"- {_cover(c)}" for c in info.covers] or ["- none: it grants access to no asset"]
    lines += [
        "",
        "## Terms",
        "",
        f"- Permitted uses: {', '.join(t.permitted_uses) or 'none'}",
        f"- IP ownership: {t.ip_ownership} ({_IP_MEANING.get(t.ip_ownership, '')})",
        f"- Attribution: {t.attribution or 'none required'}",
        "- Redistribution: "
        + (
            "permitted: the parties may pass covered assets on"
            if t.redistribution
            else "not permitted: covered assets stay with the parties"
        ),
        "- Export control: "
        + (
            "the covered assets are export-controlled; only cleared organizations receive them"
            if t.export_control
            else "none"
        ),
        f"- Royalty note: {t.royalty_note or 'none'}",
        "",
        "## Dates",
        "",
        f"- Starts: {_time(info.starts_at)}",
        f"- Expires: {_time(info.expires_at)}",
    ]
    if info.terminated_at is not None:
        why = f": {info.termination_reason}" if info.termination_reason else ""
        lines.append(f"- Terminated: {_time(info.terminated_at)}{why}")
    return "\n".join(lines) + "\n"


def _state_sentence(info: AgreementInfo, now: dt.datetime) -> str:
    state = info.state_at(now)
    if state == "terminated":
        why = f" ({info.termination_reason})" if info.termination_reason else ""
        return f"terminated {_time(info.terminated_at)}{why}; it grants nothing."
    if state == "expired":
        return f"expired {_time(info.expires_at)}; it grants nothing."
    if state == "active" and info.starts_at > now:
        return f"signed by every party; it grants access from {_time(info.starts_at)}."
    if state == "active":
        return f"signed by every party; it grants access until {_time(info.expires_at)}."
    return (
        f"waiting for the signature of {', '.join(info.unsigned)}; "
        "it grants nothing until every party has signed."
    )


def _cover(item: str) -> str:
    kind, _, name = item.partition(":")
    return f"every asset of {name} ({item})" if kind == "owner" else item


def _time(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()
