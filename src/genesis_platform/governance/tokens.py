"""API tokens: shown once, stored as a SHA-256, with expiry, revocation and scopes.

A token reads ``gen_<id>_<secret>``: ``id`` is public (it names the token in lists and
audit records), ``secret`` is 32 random bytes, URL-safe. Only the SHA-256 of the whole token
is stored, so a copy of the catalog does not yield usable tokens. Scopes are the actions the
token may be used for (``read``, ``write``, ``run``, ``share``, ``export``, ``administer``);
policy still decides each request, the scopes only narrow it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from sqlalchemy import select, update

from genesis_platform.catalog.database import Database
from genesis_platform.catalog.tables import ApiTokenRow, MemberRow, utcnow
from genesis_platform.errors import AccessDenied, InvalidInput, NotFound
from genesis_platform.governance.authorize import Action, Resource
from genesis_platform.governance.context import ServiceContext
from genesis_platform.governance.principal import Principal

__all__ = ["ACTIONS", "IssuedToken", "TokenInfo", "TokenService", "authenticate"]

ACTIONS: tuple[str, ...] = get_args(Action)
"""Every action, and so every scope a token may have."""
_PREFIX = "gen_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret."""

    token_id: str
    principal: str
    scopes: tuple[str, ...]
    note: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    @property
    def state(self) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "active"


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` is shown this once and never stored."""

    secret: str
    info: TokenInfo


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    """API tokens of the members of organizations (``p.tokens``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(
        self,
        *,
        member: str | None = None,
        scopes: Sequence[str] = ACTIONS,
        days: float = 90,
        note: str = "",
    ) -> IssuedToken:
        """Issue a token for ``member`` (``user@org``; default: the principal).

        A token for someone else is the operator admins' to issue (an organization's admin
        could otherwise act as a vetted colleague); a token issued with a token gets no
        scope that token lacks.

        Raises:
            InvalidInput: unknown scope, days not positive, not a member.
        """
        me = self._ctx.principal
        user, org = (me.name, me.org) if member is None else _split(member)
        bad = [s for s in scopes if s not in ACTIONS]
        if bad or not scopes:
            raise InvalidInput(
                "scopes", f"{bad[0] if bad else 'none'} is not a scope", f"use {', '.join(ACTIONS)}"
            )
        if not days > 0:
            raise InvalidInput("days", f"{days} is not a positive number of days", "e.g. 90")
        if me.scopes is not None and not set(scopes) <= set(me.scopes):
            raise InvalidInput(
                "scopes",
                f"a token limited to {', '.join(me.scopes)} cannot issue one for "
                f"{', '.join(s for s in scopes if s not in me.scopes)}",
                "ask for those scopes only, or issue it with a wider token",
            )
        if (user, org) != (me.name, me.org):  # acting as someone else: the operator only
            self._ctx.authorize("administer", Resource("org", "*"))
        token_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        row = ApiTokenRow(
            token_id=token_id,
            secret_hash=_digest(secret),
            org=org,
            user=user,
            scopes=list(dict.fromkeys(scopes)),
            note=note,
            expires_at=utcnow() + dt.timedelta(days=days),
        )
        with self._ctx.mutation(
            "write", Resource("token", token_id), {"for": f"{user}@{org}"}
        ) as s:
            if (
                s.scalar(select(MemberRow.id).where(MemberRow.org == org, MemberRow.user == user))
                is None
            ):
                raise InvalidInput(
                    "member",
                    f"{user}@{org} is not a member",
                    f"genesis org add-member {org} {user}",
                )
            s.add(row)
            s.flush()
            info = _info(row)
        return IssuedToken(secret, info)

    def list(self, member: str | None = None) -> list[TokenInfo]:
        """The principal's tokens (or ``member``'s: their organization's admins)."""
        me = self._ctx.principal
        user, org = (me.name, me.org) if member is None else _split(member)
        if (user, org) != (me.name, me.org):
            self._ctx.authorize("administer", Resource("org", org))
        with self._ctx.reading(Resource("token", "*")) as s:
            rows = s.scalars(
                select(ApiTokenRow)
                .where(ApiTokenRow.org == org, ApiTokenRow.user == user)
                .order_by(ApiTokenRow.id)
            ).all()
            return [_info(r) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token now (its owner, or their organization's admins)."""
        with self._ctx.db.session(write=False) as s:
            row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.token_id == token_id))
        if row is None:
            raise NotFound("token", token_id, "`genesis token list` shows your tokens")
        me = self._ctx.principal
        if (row.user, row.org) != (me.name, me.org):
            self._ctx.authorize("administer", Resource("org", row.org))
        with self._ctx.mutation("write", Resource("token", token_id), {"revoke": True}) as s:
            s.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.token_id == token_id, ApiTokenRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return _info(
                s.scalars(select(ApiTokenRow).where(ApiTokenRow.token_id == token_id)).one()
            )


def authenticate(db: Database, token: str) -> Principal:
    """The principal a token stands for, with its scopes.

    Raises:
        AccessDenied: a malformed, unknown, expired or revoked token, or one whose member is
            gone; the message says which (never echoing the secret).
    """
    token_id = token[len(_PREFIX) :].partition("_")[0] if token.startswith(_PREFIX) else ""
    if not token_id:
        raise AccessDenied("not a Genesis API token (they start with 'gen_')")
    with db.session(write=False) as s:
        row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.token_id == token_id))
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(token)):
        raise AccessDenied(
            f"unknown API token gen_{token_id}_…; create one with `genesis token create`"
        )
    if row.revoked_at is not None:
        raise AccessDenied(
            f"API token {token_id} was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC"
        )
    if row.expires_at <= utcnow():
        raise AccessDenied(
            f"API token {token_id} expired on {row.expires_at:%Y-%m-%d %H:%M} UTC; create a new one"
        )
    with db.session() as s:
        member = s.scalar(
            select(MemberRow).where(MemberRow.org == row.org, MemberRow.user == row.user)
        )
        if member is None:
            raise AccessDenied(f"API token {token_id}: {row.user}@{row.org} is no longer a member")
        s.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=utcnow()))
    return Principal(row.user, row.org, scopes=tuple(row.scopes))


def _split(member: str) -> tuple[str, str]:
    user, _, org = member.partition("@")
    if not user or not org:
        raise InvalidInput("member", f"{member!r} is not user@org", "e.g. ada@argonne")
    return user, org


def _info(r: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        r.token_id,
        f"{r.user}@{r.org}",
        tuple(r.scopes),
        r.note,
        r.created_at,
        r.expires_at,
        r.revoked_at,
        r.last_used_at,
    )
