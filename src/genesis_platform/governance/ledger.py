"""The IP ledger (``p.ledger``): who owns each output of an AI-directed campaign.

When a campaign finishes, each of its outputs gets one entry: every version of its
observation dataset, every version of its surrogate model, and its best candidates (the
best trial, or with several objectives the trials on the Pareto front). An entry names the
project, the contributing partners (the organizations of the project's members, else the
owner alone), the governing agreement (none until one is set), the IP ownership
(``owner``, ``joint``, ``licensee``) and the commercialization status (``none``,
``disclosed``, ``licensed``).

The entries of a campaign are written in one transaction when its loop ends, never per
trial; a resumed campaign that finishes again adds only the outputs that are new, and
edited entries keep their edits.

Changing an entry is ``administer`` on the campaign that produced it: its owner
organization's owners and admins (and the operator's) may, nobody else; every change is
in the audit log, under ``campaign:ID``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AssetRow,
    Campaign,
    Dataset,
    DatasetVersion,
    IpLedgerRow,
    Model,
    ModelVersion,
    OrgRow,
    ProjectMemberRow,
    utcnow,
)
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance._validate import one_of
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext

__all__ = [
    "COMMERCIALIZATION",
    "OUTPUT_KINDS",
    "OWNERSHIP",
    "Candidate",
    "LedgerEntry",
    "LedgerService",
    "candidate_name",
]

OUTPUT_KINDS = ("dataset", "model", "candidate")
"""What a campaign outputs: observation dataset versions, surrogate versions, candidates."""
OWNERSHIP = ("owner", "joint", "licensee")
"""Who holds the IP: the owner organization, the partners jointly, or a licensee."""
COMMERCIALIZATION = ("none", "disclosed", "licensed")
"""How far an output is on its way to use: not at all, invention disclosed, licensed."""

_HINT = "`genesis ledger list` shows the entries"


@dataclass(frozen=True)
class Candidate:
    """One of the best trials a campaign found, as the campaign layer picked it.

    Attributes:
        trial: The trial's number within its campaign (1, 2, ...).
        params: The parameters it ran with.
        values: What it measured (objectives and other metrics).
    """

    trial: int
    params: Mapping[str, Any]
    values: Mapping[str, float]


@dataclass(frozen=True)
class LedgerEntry:
    """One output of a campaign and who owns it.

    Attributes:
        id: The entry's id (``genesis ledger show ID``).
        output_kind: ``dataset``, ``model`` or ``candidate``.
        output: ``NAME@VERSION`` of a dataset or model version; ``NAME-ID/trial-N`` of a
            candidate (trial ``N`` of campaign ``ID`` named ``NAME``).
        campaign_id: The campaign that produced it.
        project: The campaign's project ('' without one).
        owner_org: The organization that owns the campaign.
        partners: The contributing organizations, the owner first.
        agreement: The governing agreement ('' until one is set).
        ownership: ``owner``, ``joint`` or ``licensee``.
        commercialization: ``none``, ``disclosed`` or ``licensed``.
        note: Free text (a candidate's entry starts with what it measured).
    """

    id: int
    output_kind: str
    output: str
    campaign_id: int | None
    project: str
    owner_org: str
    partners: tuple[str, ...]
    agreement: str
    ownership: str
    commercialization: str
    note: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["partners"] = list(self.partners)
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        return out


def candidate_name(campaign_name: str, campaign_id: int, trial: int) -> str:
    """The ledger's name of trial ``trial`` of a campaign as a candidate."""
    return f"{campaign_name}-{campaign_id}/trial-{trial}"


@dataclass(frozen=True)
class _Output:
    kind: str
    name: str
    note: str = ""


class LedgerService:
    """The IP ledger of one platform (``p.ledger``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    # ---- written by the campaign layer -----------------------------------------------

    def record_campaign(
        self, campaign_id: int, candidates: Sequence[Candidate] = ()
    ) -> list[LedgerEntry]:
        """Give a finished campaign's outputs their entries; return the new ones.

        The outputs are every version of the campaign's observation dataset and surrogate
        model (as its catalog row links them) and ``candidates``. Outputs that already
        have an entry are left as they are, so calling this again adds only new outputs.
        The campaign service calls it each time a run of the loop ends (``write`` on the
        campaign), under the campaign's lock.
        """
        resource = Resource("campaign", str(campaign_id))
        with self._ctx.reading(resource) as s:
            outputs = _outputs(s, campaign_id, candidates)
            have = _recorded(s, campaign_id)
        new = [f"{o.kind}:{o.name}" for o in outputs if (o.kind, o.name) not in have]
        if not new:
            return []
        with self._ctx.mutation("write", resource, {"op": "ledger", "outputs": new}) as s:
            have = _recorded(s, campaign_id)
            owner, project = self._owner(s, campaign_id)
            partners = _partners(s, project, owner)
            rows = [
                IpLedgerRow(
                    output_kind=o.kind,
                    output=o.name,
                    campaign_id=campaign_id,
                    project=project,
                    owner_org=owner,
                    partners=list(partners),
                    note=o.note,
                )
                for o in outputs
                if (o.kind, o.name) not in have
            ]
            s.add_all(rows)
            s.flush()
            return [_entry(r) for r in rows]

    # ---- reading ----------------------------------------------------------------------

    def entries(self, campaign: int | None = None, project: str | None = None) -> list[LedgerEntry]:
        """The entries, oldest first, of one campaign and/or one project.

        Only entries of campaigns the principal may read are listed.

        Raises:
            NotFound: ``campaign`` does not exist.
        """
        target = Resource("campaign", "*" if campaign is None else str(campaign))
        with self._ctx.reading(target) as s:
            if campaign is not None and s.get(Campaign, campaign) is None:
                raise NotFound("campaign", campaign, "`genesis campaign list` shows them")
            query = select(IpLedgerRow).order_by(IpLedgerRow.id)
            if campaign is not None:
                query = query.where(IpLedgerRow.campaign_id == campaign)
            if project is not None:
                query = query.where(IpLedgerRow.project == project)
            found = [_entry(r) for r in s.scalars(query)]
        if campaign is not None:
            return found
        assets = {_asset_of(e.campaign_id, e.output_kind, e.output) for e in found}
        readable = {a for a in assets if self._ctx.visible(a.kind, [a.id])[0]}
        return [e for e in found if _asset_of(e.campaign_id, e.output_kind, e.output) in readable]

    def get(self, entry_id: int) -> LedgerEntry:
        """One entry (``read`` on the campaign that produced it).

        Raises:
            NotFound: no entry has this id.
        """
        with self._ctx.reading(self._asset(entry_id)) as s:
            return _entry(s.get_one(IpLedgerRow, entry_id))

    # ---- changing ---------------------------------------------------------------------

    def update(
        self,
        entry_id: int,
        *,
        commercialization: str | None = None,
        ownership: str | None = None,
        agreement: str | None = None,
        partners: Sequence[str] | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Change an entry (the owner organization's owners and admins, or the operator's).

        Args:
            entry_id: Which entry.
            commercialization: ``none``, ``disclosed`` or ``licensed`` (``licensed`` needs a
                governing agreement).
            ownership: ``owner``, ``joint`` or ``licensee`` (``licensee`` needs a governing
                agreement).
            agreement: The governing agreement: one the owner organization is a party to,
                or '' for none.
            partners: The contributing organizations (registered ones; at least one).
            note: Free text.

        Raises:
            InvalidInput: a value is not allowed; the field is named.
            NotFound: no entry has this id.
            AccessDenied: the principal is not an admin of the owner organization.
        """
        changes = _changes(commercialization, ownership, agreement, partners, note)
        resource = self._asset(entry_id)
        with self._ctx.mutation(
            "administer", resource, {"op": "ledger-update", "entry": entry_id, **changes}
        ) as s:
            row = s.get_one(IpLedgerRow, entry_id)
            _check_agreement(s, row, changes)
            if "partners" in changes:
                _check_orgs(s, changes["partners"])
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.flush()
            return _entry(row)

    # ---- helpers ----------------------------------------------------------------------

    def _asset(self, entry_id: int) -> Resource:
        """The asset an entry's rights follow (its campaign), found without authorization."""
        with self._ctx.db.session(write=False) as s:
            found = s.execute(
                select(IpLedgerRow.campaign_id, IpLedgerRow.output_kind, IpLedgerRow.output).where(
                    IpLedgerRow.id == entry_id
                )
            ).first()
        if found is None:
            raise NotFound("ledger entry", entry_id, _HINT)
        return _asset_of(*found)

    def _owner(self, s: Session, campaign_id: int) -> tuple[str, str]:
        """The campaign's owner organization and project."""
        asset = s.scalar(
            select(AssetRow).where(AssetRow.kind == "campaign", AssetRow.name == str(campaign_id))
        )
        if asset is not None:
            return asset.owner_org, asset.project
        spec: Mapping[str, Any] = s.get_one(Campaign, campaign_id).spec
        return self._ctx.principal.org, str(spec.get("project") or "")


def _asset_of(campaign_id: int | None, kind: str, output: str) -> Resource:
    if campaign_id is not None:
        return Resource("campaign", str(campaign_id))
    return Resource(kind, output.partition("@")[0])


def _outputs(s: Session, campaign_id: int, candidates: Sequence[Candidate]) -> list[_Output]:
    campaign = s.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("campaign", campaign_id, "`genesis campaign list` shows them")
    outputs: list[_Output] = []
    if campaign.dataset_id is not None:
        rows = s.execute(
            select(Dataset.name, DatasetVersion.version)
            .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
            .where(Dataset.id == campaign.dataset_id)
            .order_by(DatasetVersion.version)
        )
        outputs += [_Output("dataset", f"{name}@{version}") for name, version in rows]
    if campaign.model_id is not None:
        rows = s.execute(
            select(Model.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.model_id == Model.id)
            .where(Model.id == campaign.model_id)
            .order_by(ModelVersion.version)
        )
        outputs += [_Output("model", f"{name}@{version}") for name, version in rows]
    outputs += [
        _Output("candidate", candidate_name(campaign.name, campaign_id, c.trial), _describe(c))
        for c in candidates
    ]
    return outputs


def _describe(c: Candidate) -> str:
    values = ", ".join(f"{k} = {_short(v)}" for k, v in c.values.items())
    params = ", ".join(f"{k} = {_short(v)}" for k, v in c.params.items())
    return f"trial {c.trial}: {values}; at {params}"


def _short(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _recorded(s: Session, campaign_id: int) -> set[tuple[str, str]]:
    rows = s.execute(
        select(IpLedgerRow.output_kind, IpLedgerRow.output).where(
            IpLedgerRow.campaign_id == campaign_id
        )
    )
    return {(kind, output) for kind, output in rows}


def _partners(s: Session, project: str, owner: str) -> list[str]:
    """The owner, then the other organizations of the project's members."""
    if not project:
        return [owner]
    orgs = s.scalars(
        select(ProjectMemberRow.org).where(ProjectMemberRow.project == project).distinct()
    )
    return [owner, *sorted(set(orgs) - {owner})]


def _changes(
    commercialization: str | None,
    ownership: str | None,
    agreement: str | None,
    partners: Sequence[str] | None,
    note: str | None,
) -> dict[str, Any]:
    """The fields to set, each checked on its own (InvalidInput names the field)."""
    changes: dict[str, Any] = {}
    if commercialization is not None:
        one_of("commercialization", commercialization, COMMERCIALIZATION)
        changes["commercialization"] = commercialization
    if ownership is not None:
        one_of("ownership", ownership, OWNERSHIP)
        changes["ownership"] = ownership
    if agreement is not None:
        if not isinstance(agreement, str):
            raise InvalidInput("agreement", f"{agreement!r} is not an agreement's name")
        changes["agreement"] = agreement.strip()
    if partners is not None:
        if isinstance(partners, str) or not all(isinstance(p, str) for p in partners):
            raise InvalidInput("partners", "give a list of organization names")
        unique = list(dict.fromkeys(p.strip() for p in partners))
        if not unique or "" in unique:
            raise InvalidInput(
                "partners", "needs at least one organization and no empty names", "e.g. argonne"
            )
        changes["partners"] = unique
    if note is not None:
        if not isinstance(note, str):
            raise InvalidInput("note", f"{note!r} is not text")
        changes["note"] = note
    if not changes:
        raise InvalidInput(
            "update",
            "nothing to change",
            "give commercialization, ownership, agreement, partners or note",
        )
    return changes


def _check_agreement(s: Session, row: IpLedgerRow, changes: Mapping[str, Any]) -> None:
    """The agreement exists and binds the owner; licensing needs one."""
    name = str(changes.get("agreement", row.agreement))
    if not name:
        for field, needs in (("commercialization", "licensed"), ("ownership", "licensee")):
            if changes.get(field, getattr(row, field)) != needs:
                continue
            if field in changes:
                raise InvalidInput(
                    field,
                    f"{needs!r} needs a governing agreement",
                    "name the agreement too: a license or CRADA the owner is a party to",
                )
            raise InvalidInput(
                "agreement",
                f"cannot be cleared while {field} is {needs!r}",
                f"change {field} too, in the same update",
            )
        return
    if "agreement" not in changes:
        return
    found = s.scalar(select(AgreementRow).where(AgreementRow.name == name))
    party = found is not None and s.scalar(
        select(AgreementPartyRow.id).where(
            AgreementPartyRow.agreement_id == found.id,
            AgreementPartyRow.org == row.owner_org,
        )
    )
    if found is None or not party:  # one answer for both: no leak of others' agreements
        raise InvalidInput(
            "agreement",
            f"{row.owner_org} is a party to no agreement named {name!r}",
            "`genesis agreement list` shows its agreements",
        )
    now = utcnow()
    if found.state != "active" or not found.starts_at <= now < found.expires_at:
        raise InvalidInput(
            "agreement",
            f"agreement {name!r} is not in force (signed by every party, started, not expired)",
            "name an agreement in force, or get this one signed",
        )


def _check_orgs(s: Session, orgs: Sequence[str]) -> None:
    known = set(s.scalars(select(OrgRow.name).where(OrgRow.name.in_(orgs))))
    missing = [o for o in orgs if o not in known]
    if missing:
        raise InvalidInput(
            "partners",
            f"{', '.join(missing)} {'is not a' if len(missing) == 1 else 'are not'} "
            "registered organization" + ("" if len(missing) == 1 else "s"),
            "`genesis org list` shows them",
        )


def _entry(r: IpLedgerRow) -> LedgerEntry:
    return LedgerEntry(
        id=r.id,
        output_kind=r.output_kind,
        output=r.output,
        campaign_id=r.campaign_id,
        project=r.project,
        owner_org=r.owner_org,
        partners=tuple(str(p) for p in r.partners or ()),
        agreement=r.agreement,
        ownership=r.ownership,
        commercialization=r.commercialization,
        note=r.note,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )
