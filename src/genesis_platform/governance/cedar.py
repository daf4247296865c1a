"""Policy decisions by Cedar (``cedarpy``), over the governance state.

:class:`CedarPolicy` is the platform's :class:`~genesis_platform.governance.authorize.Policy`:
it turns a principal, an action and a resource into a Cedar request, with the entities the
request needs (the member, the organizations, the asset, the agreements between the
principal's organization and the owner), and evaluates the default policy set
(``policies/default.cedar``) plus the operator's own (``GENESIS_HOME/policies/*.cedar``),
both validated against ``policies/schema.cedarschema`` when loaded.

Speed: parsing is what costs in ``cedarpy``, so the policy set and schema are parsed once,
and the entities of the whole state are parsed into one handle that requests reuse. Objects
changed since that handle was built (and objects a request makes up, like an asset about to
be created) are sent as a small per-request entity list instead, which is slower but always
current; the handle is rebuilt in the background once enough is stale (see
:meth:`_Entities._worth_rebuilding`: ``cedarpy`` parses while holding the interpreter).

Cedar has no "there exists an agreement such that ...": a gated asset is asked about once per
agreement the two organizations share (in one batch), with that agreement in the context,
and access is allowed when any of those requests is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from genesis_platform.errors import ConfigError
from genesis_platform.governance.authorize import Action, Decision, Resource
from genesis_platform.governance.principal import Principal
from genesis_platform.governance.state import (
    ASSET_KINDS,
    AgreementFacts,
    AssetFacts,
    GovernanceState,
    MemberFacts,
)

__all__ = [
    "DECISION_TTL_S",
    "CedarPolicy",
    "PolicyFiles",
    "load_policies",
    "schema_text",
]

_STORED_KINDS = frozenset({*ASSET_KINDS, "agreement", "project"})
"""Kinds of objects the governance state holds."""

_COLLECTIONS = frozenset(
    {
        "task",
        "audit",
        "org",
        "project",
        "agreement",
        "token",
        "allocation",
        "ledger",
        "challenge",
        "partner",
    }
)
"""Kinds listed as a whole besides the assets (``org:*``, ...)."""
_NOBODY = ""
"""The owner of agreements: no organization (their parties act on them, not an owner)."""
_SMALL_HANDLE = 5_000
_STALE_HANDLE_S = 300.0
DECISION_TTL_S = 1.0
"""How long a decision is reused while the governance state does not change."""
_DECISIONS_KEPT = 50_000
_NS = "Genesis"
Resolver = Callable[[str], AssetFacts | None]


@dataclass(frozen=True)
class PolicyFiles:
    """A parsed, validated policy set and the schema it was checked against."""

    policies: cedarpy.PolicySet
    schema: cedarpy.Schema
    text: str
    sources: tuple[str, ...]


def _package_text(name: str) -> str:
    return (resources.files("genesis_platform.governance") / "policies" / name).read_text()


def schema_text() -> str:
    """The Cedar schema policies are validated against (for operators writing policies)."""
    return _package_text("schema.cedarschema")


def load_policies(home: Path | None = None) -> PolicyFiles:
    """The default policy set plus ``home/policies/*.cedar``, validated against the schema.

    Raises:
        ConfigError: a policy file does not parse or does not validate; it names the file.
    """
    schema_text = _package_text("schema.cedarschema")
    schema = cedarpy.Schema.from_str(schema_text)
    parts = [("default.cedar", _package_text("default.cedar"))]
    folder = home / "policies" if home else None
    if folder and folder.is_dir():
        parts += [(str(f), f.read_text()) for f in sorted(folder.glob("*.cedar"))]
    for source, text in parts:
        _validate(source, text, schema)
    text = "\n".join(t for _, t in parts)
    return PolicyFiles(cedarpy.PolicySet.from_str(text), schema, text, tuple(s for s, _ in parts))


def _validate(source: str, text: str, schema: cedarpy.Schema) -> None:
    try:
        cedarpy.PolicySet.from_str(text)
    except ValueError as exc:
        raise ConfigError(
            f"policy file {source} does not parse: {exc}; fix the Cedar syntax "
            "(https://docs.cedarpolicy.com/policies/syntax-policy.html)",
            file=source,
        ) from exc
    result = cedarpy.validate_policies(text, schema)
    if not result.validation_passed:
        problems = "; ".join(str(e) for e in result.errors)
        raise ConfigError(
            f"policy file {source} does not match Genesis's Cedar schema: {problems}; "
            "see `genesis policy schema` for the entities and attributes policies may use",
            file=source,
        )


def _uid(kind: str, id_: str) -> dict[str, str]:
    return {"type": f"{_NS}::{kind}", "id": id_}


def _ref(kind: str, id_: str) -> dict[str, dict[str, str]]:
    return {"__entity": _uid(kind, id_)}


class _Entities:
    """Cedar entity JSON for the state's objects, and the reusable handle of all of them."""

    def __init__(self, state: GovernanceState, operator: str) -> None:
        self.state = state
        self.operator = operator
        self._handle: cedarpy.Entities | None = None
        self._handle_generation = -1
        self._handle_keys: frozenset[str] = frozenset()
        self._changed_at_build = 0
        self._built_at = 0.0
        self._building = False
        self._lock = threading.Lock()

    # entity JSON -----------------------------------------------------------------------

    def org(self, org: str) -> dict[str, Any]:
        return {
            "uid": _uid("Org", org),
            "attrs": {"exportCleared": self.state.export_cleared(org)},
            "parents": [],
        }

    def user(self, org: str, user: str, role: str, vetting: str, projects: Iterable[str]) -> Any:
        return {
            "uid": _uid("User", f"{user}@{org}"),
            "attrs": {
                "org": _ref("Org", org),
                "role": role,
                "vetting": vetting,
                "projects": sorted(projects),
            },
            "parents": [_uid("Org", org)],
        }

    def asset(self, a: AssetFacts) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "kind": a.kind,
            "owner": _ref("Org", a.owner),
            "project": a.project,
            "access": a.access,
            "classification": a.classification,
            "exportControlled": a.export_controlled,
            "review": a.review,
            "sharedWith": [_ref("Org", o) for o in sorted(a.shared_with)],
        }
        if a.submitter:
            attrs["submitter"] = _ref("User", a.submitter)
        if a.reviewer:
            attrs["reviewer"] = _ref("User", a.reviewer)
        return {"uid": _uid("Asset", a.key), "attrs": attrs, "parents": []}

    def collection(self, kind: str) -> dict[str, Any]:
        return {
            "uid": _uid("Collection", kind),
            "attrs": {"owner": _ref("Org", self.operator)},
            "parents": [],
        }

    def agreement(self, g: AgreementFacts) -> dict[str, Any]:
        return {
            "uid": _uid("Agreement", g.name),
            "attrs": {
                "kind": g.kind,
                "state": g.state,
                "parties": [_ref("Org", o) for o in sorted(g.parties)],
                "signedBy": [_ref("Org", o) for o in sorted(g.signed_by)],
                "uses": sorted(g.uses),
                "covers": [_ref("Asset", c) for c in sorted(g.covers)],
                "coversOwners": [_ref("Org", o) for o in sorted(g.covers_owners)],
                "redistribution": g.redistribution,
                "exportControl": g.export_control,
                "startsAt": g.starts_at,
                "expiresAt": g.expires_at,
            },
            "parents": [],
        }

    # the handle ------------------------------------------------------------------------

    def handle_for(self, keys: Sequence[str]) -> cedarpy.Entities | None:
        """The shared handle when it holds every one of ``keys`` as they are now, else None.

        A miss starts a rebuild in the background.
        """
        handle = self._handle
        fresh = handle is not None and all(
            k in self._handle_keys and self.state.changed_keys.get(k, -1) <= self._handle_generation
            for k in keys
        )
        if fresh:
            return handle
        # Rebuild when stored objects changed; objects made up per request never are in it.
        if self._worth_rebuilding():
            self._rebuild_soon()
        return None

    def _worth_rebuilding(self) -> bool:
        """Whether stale entities justify a rebuild, which holds the interpreter meanwhile.

        ``cedarpy`` parses under the GIL (about a second per 25,000 entities here), so a
        small handle is rebuilt at the first change, a large one only once 2% of what it
        holds changed or it is five minutes stale; requests touching changed objects are
        answered from per-request entities until then.
        """
        if self._handle is None:
            return True
        stale = self.state.change_count - self._changed_at_build
        if self.state.generation <= self._handle_generation or stale <= 0:
            return False
        size = len(self._handle_keys)
        old = time.monotonic() - self._built_at > _STALE_HANDLE_S
        return size < _SMALL_HANDLE or stale * 50 >= size or old

    def _rebuild_soon(self) -> None:
        with self._lock:
            if self._building:
                return
            self._building = True
        threading.Thread(target=self._rebuild, name="genesis-cedar-entities", daemon=True).start()

    def _rebuild(self) -> None:
        try:
            with self.state.lock:  # a consistent whole, stamped with its generation
                generation, changed = self.state.generation, self.state.change_count
                entities, keys = self._everything()
            handle = cedarpy.Entities.from_json_str(json.dumps(entities))
            with self._lock:
                self._handle, self._handle_keys = handle, frozenset(keys)
                self._handle_generation, self._changed_at_build = generation, changed
                self._built_at = time.monotonic()
        finally:
            with self._lock:
                self._building = False

    def build_now(self) -> None:
        """Build the shared handle on this thread (benchmarks and tests)."""
        with self._lock:
            self._building = True
        self._rebuild()

    def _everything(self) -> tuple[list[dict[str, Any]], list[str]]:
        s = self.state
        entities: list[dict[str, Any]] = []
        keys: list[str] = []
        for org in s.orgs():
            entities.append(self.org(org))
            keys.append(f"org/{org}")
        for m in s.all_members():
            entities.append(self.user(m.org, m.user, m.role, m.vetting, m.projects))
            keys.append(f"member/{m.org}/{m.user}")
        for a in s.all_assets():
            entities.append(self.asset(a))
            keys.append(f"asset/{a.key}")
        for g in s.all_agreements():
            entities.append(self.agreement(g))
            keys.append(f"agreement/{g.name}")
        for kind in sorted({*ASSET_KINDS, *_COLLECTIONS}):
            entities.append(self.collection(kind))
            keys.append(f"collection/{kind}")
        return entities, keys


class CedarPolicy:
    """Decides with Cedar over the governance state (the platform's policy when governed).

    Args:
        state: The governance state.
        files: The parsed policy set and schema (:func:`load_policies`).
        operator: The organization that runs the platform (its admins administer it).
    """

    def __init__(self, state: GovernanceState, files: PolicyFiles, operator: str) -> None:
        self.state = state
        self.files = files
        self.operator = operator
        self.resolvers: dict[str, Resolver] = {}
        """Per resource kind, a function that finds the attributes of objects not in
        ``assets`` (tasks, ...); registered by the services that own them."""
        self.entities = _Entities(state, operator)
        self._decisions: dict[tuple[str, ...], tuple[Decision, float, int]] = {}

    # the Policy protocol ---------------------------------------------------------------

    def decide(self, principal: Principal, action: Action, resource: Resource) -> Decision:
        """Allow or deny ``action`` on ``resource`` for ``principal``, with the policies.

        A decision is reused for up to :data:`DECISION_TTL_S` while nothing it read changed
        (any governance change clears them all), and never past the start or expiry of an
        agreement it considered.
        """
        self.state.refresh()
        key = (
            principal.name,
            principal.org,
            principal.project or "",
            principal.purpose,
            action,
            resource.kind,
            resource.id,
        )
        clock = time.monotonic()
        cached = self._decisions.get(key)
        if cached is not None and cached[1] > clock and cached[2] == self.state.generation:
            return cached[0]
        generation = self.state.generation
        member = self.state.member(principal.org, principal.name)
        if member is None:
            return _unknown(principal)
        target, made_up = self._target(principal, resource)
        if made_up and resource.kind in _STORED_KINDS:
            # Unknown here: maybe created by another process since the last look.
            self.state.refresh(now=True)
            generation = self.state.generation
            target, made_up = self._target(principal, resource)
        agreements = self._agreements(principal, target)
        requests, keys = self._requests(principal, member, action, resource, target, agreements)
        entities: cedarpy.Entities | list[dict[str, Any]] | None = self.entities.handle_for(keys)
        if entities is None:
            entities = self._slice(principal, member, target, agreements)
        decision = _decision(self._evaluate(requests, entities))
        if len(self._decisions) >= _DECISIONS_KEPT:
            self._decisions.clear()
        self._decisions[key] = (decision, _valid_until(clock, agreements), generation)
        return decision

    # building requests -----------------------------------------------------------------

    def _target(self, principal: Principal, resource: Resource) -> tuple[AssetFacts | str, bool]:
        """The resource's attributes (a collection's kind for ``KIND:*``), and if made up.

        Made up: the state holds no such object (yet), so :meth:`_made_up` supposed them.
        """
        kind, name = resource.kind, resource.id
        if name == "*":
            return kind, False
        resolver = self.resolvers.get(kind)
        found = self._stored(kind, name) or (resolver(name) if resolver else None)
        if found is not None:
            return found, False
        return self._made_up(principal, resource), True

    def _stored(self, kind: str, name: str) -> AssetFacts | None:
        """The attributes of an object the state holds: an asset, agreement or project."""
        if kind == "agreement":
            g = self.state.agreement(name)  # its parties' members read it, their admins act
            return None if g is None else AssetFacts(kind, name, _NOBODY, shared_with=g.parties)
        if kind == "project":
            p = self.state.project(name)
            return (
                None if p is None else AssetFacts(kind, name, p[0], project=name, shared_with=p[1])
            )
        return self.state.asset(kind, name)

    def _made_up(self, principal: Principal, resource: Resource) -> AssetFacts:
        """An object the state does not hold: one about to be created is its creator's org's."""
        kind, name = resource.kind, resource.id
        if kind in ASSET_KINDS or kind in ("token", "agreement"):  # a member's own, or new
            return AssetFacts(kind, name, principal.org, principal.project or "")
        if kind == "org":
            return AssetFacts(kind, name, name, access="public")
        return AssetFacts(kind, name, self.operator)  # audit, a name no project has, ...

    def _agreements(self, principal: Principal, target: AssetFacts | str) -> list[AgreementFacts]:
        if isinstance(target, str) or target.owner == principal.org or target.access != "gated":
            return []
        return self.state.agreements_between(principal.org, target.owner)

    def _requests(
        self,
        principal: Principal,
        member: MemberFacts,
        action: Action,
        resource: Resource,
        target: AssetFacts | str,
        agreements: list[AgreementFacts],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        keys = [f"member/{principal.org}/{principal.name}", f"org/{principal.org}"]
        if isinstance(target, str):
            resource_uid = _uid("Collection", target)
            keys.append(f"collection/{target}")
        else:
            resource_uid = _uid("Asset", target.key)
            stored = self.state.asset(target.kind, target.name) is target
            keys.append(f"asset/{target.key}" if stored else f"not-shared/{target.key}")
            keys.append(f"org/{target.owner}")
        context: dict[str, Any] = {
            "now": int(time.time()),
            "purpose": principal.purpose,
            "operator": _ref("Org", self.operator),
        }
        base = {
            "principal": _uid("User", f"{principal.name}@{principal.org}"),
            "action": _uid("Action", action),
            "resource": resource_uid,
        }
        if not agreements:
            return [{**base, "context": context}], keys
        requests = []
        for g in agreements:
            keys.append(f"agreement/{g.name}")
            requests.append(
                {**base, "context": {**context, "agreement": _ref("Agreement", g.name)}}
            )
        return requests, keys

    def _slice(
        self,
        principal: Principal,
        member: MemberFacts,
        target: AssetFacts | str,
        agreements: list[AgreementFacts],
    ) -> list[dict[str, Any]]:
        """Every entity one request needs, as they are now."""
        e = self.entities
        entities = [
            e.org(principal.org),
            e.user(principal.org, principal.name, member.role, member.vetting, member.projects),
        ]
        if isinstance(target, str):
            entities.append(e.collection(target))
        else:
            entities.append(e.asset(target))
            if target.owner != principal.org:
                entities.append(e.org(target.owner))
        entities += [e.agreement(g) for g in agreements]
        return entities

    def _evaluate(
        self, requests: list[dict[str, Any]], entities: cedarpy.Entities | list[dict[str, Any]]
    ) -> list[cedarpy.AuthzResult]:
        policies = self.files.policies
        if len(requests) == 1:
            return [cedarpy.is_authorized(requests[0], policies, entities)]
        return cedarpy.is_authorized_batch(requests, policies, entities)


def _valid_until(clock: float, agreements: Sequence[AgreementFacts]) -> float:
    """Monotonic time until which a decision holds: the TTL, cut at agreement boundaries."""
    until = clock + DECISION_TTL_S
    now = time.time()
    for g in agreements:
        for boundary in (g.starts_at, g.expires_at):
            if boundary > now:
                until = min(until, clock + (boundary - now))
    return until


def _unknown(principal: Principal) -> Decision:
    return Decision(
        False,
        ("unknown-principal",),
        f"unknown principal: {principal.name} is not a member of organization "
        f"{principal.org!r}; an admin adds them with "
        f"`genesis org add-member {principal.org} {principal.name}`",
    )


def _decision(results: list[cedarpy.AuthzResult]) -> Decision:
    """Allowed when any request is; the deciding policies of that one (or of the denial)."""
    for result in results:
        if result.allowed:
            return Decision(True, _names(result))
    result = results[0]
    names = _names(result)
    if names:
        return Decision(False, names, "forbidden by " + ", ".join(names))
    errors = list(result.diagnostics.errors)
    reason = "no policy permits it" + (f" ({'; '.join(map(str, errors))})" if errors else "")
    return Decision(False, ("default-deny",), reason)


def _names(result: cedarpy.AuthzResult) -> tuple[str, ...]:
    ids = result.diagnostics.id_annotations_by_reason or {}
    return tuple(sorted(ids.get(r, r) for r in result.diagnostics.reasons))
