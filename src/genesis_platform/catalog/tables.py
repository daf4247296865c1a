"""The catalog's tables (SQLAlchemy 2, typed). Portable across SQLite and PostgreSQL.

Every change to these tables comes with an Alembic revision in ``migrations/versions``;
``tests/unit/catalog`` checks that the migrations produce exactly these tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AgreementPartyRow",
    "AgreementRow",
    "AllocationRow",
    "ApiTokenRow",
    "AssetRow",
    "AuditHead",
    "AuditRecord",
    "Base",
    "Campaign",
    "ChallengeRow",
    "Dataset",
    "DatasetFile",
    "DatasetVersion",
    "GovernanceChange",
    "IpLedgerRow",
    "MemberRow",
    "Model",
    "ModelVersion",
    "ObservationRow",
    "OrgRow",
    "PartnerRow",
    "ProjectMemberRow",
    "ProjectRow",
    "ProvenanceEdge",
    "SiteRow",
    "TaskRow",
    "Trial",
    "utcnow",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Normalize to UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use utcnow()")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Attach UTC to values that come back naive (SQLite)."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class AuditRecord(Base):
    """One authorization decision or mutation, appended and never changed.

    Records form a hash chain: ``hash`` covers the record's content and ``prev_hash``, the
    hash of the record before it (:mod:`genesis_platform.governance.audit`).
    """

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    principal: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    resource_kind: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(400))
    decision: Mapped[str] = mapped_column(String(10))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    policies: Mapped[list[Any]] = mapped_column(default=list)
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")


class AuditHead(Base):
    """The end of the audit chain: the newest record's id and hash, and how many there are.

    Every append updates this one row in the appending transaction, which also serializes
    appenders (a row lock on PostgreSQL; SQLite's write lock already does).
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")
    count: Mapped[int] = mapped_column(Integer, default=0)


class Dataset(Base):
    """A named, versioned dataset."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class DatasetVersion(Base):
    """An immutable version of a dataset: a set of files."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class DatasetFile(Base):
    """One file of a dataset version, stored as a blob."""

    __tablename__ = "dataset_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1000))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")


class Model(Base):
    """A named, versioned model."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class ModelVersion(Base):
    """An immutable model version: an artifact blob, metrics and what it was trained on."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    framework: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    trained_on_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class Campaign(Base):
    """A closed-loop campaign: its spec, state and planner state."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default="created")
    planner_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stop_reason: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    wall_seconds: Mapped[float] = mapped_column(default=0.0)
    core_seconds: Mapped[float] = mapped_column(default=0.0)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class Trial(Base):
    """One proposal of a campaign and its dispatch.

    States: ``proposed`` (stored, not sent), ``running`` (sent; ``external_id`` set),
    ``observed``, ``failed`` (after its retries), ``interrupted`` (in flight when the platform
    stopped and not re-attachable; never re-run automatically), ``canceled`` (proposed but never
    started because the campaign ended).
    """

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("campaign_id", "number"),
        Index("ix_trials_campaign_state", "campaign_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default="proposed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str] = mapped_column(String(400), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    proposed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class ObservationRow(Base):
    """What a trial measured: written before the planner is told."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    values: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProvenanceEdge(Base):
    """One W3C PROV relation: ``subject relation object``.

    For example a model version ``wasDerivedFrom`` a dataset version.
    """

    __tablename__ = "provenance_edges"
    __table_args__ = (
        Index("ix_prov_subject", "subject_kind", "subject_id"),
        Index("ix_prov_object", "object_kind", "object_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[int] = mapped_column(Integer)
    relation: Mapped[str] = mapped_column(String(40))
    object_kind: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteRow(Base):
    """A registered compute site: its kind, options and last checked status.

    ``status`` is one of the DOE IRI resource states: ``up``, ``degraded``, ``down``,
    ``unknown`` (never checked). ``capacity`` is the free slots the last check saw.
    """

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="unknown")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_at: Mapped[dt.datetime | None] = mapped_column()
    capacity: Mapped[int | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class TaskRow(Base):
    """One task on a site: what it runs, where it is, and what it used.

    States are the DOE IRI job states: ``new`` (stored, not yet submitted), ``queued``
    (submitted; ``external_id`` set), ``active`` (running), ``completed``, ``failed``,
    ``canceled``. ``outputs`` lists the files kept (path, digest, size) and
    ``outputs_dataset`` the dataset version they were registered as. ``owner`` names the
    process that follows the task (``host:pid:start``); a restarted platform re-attaches or
    fails the tasks of owners that are gone.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_state_owner", "state", "owner"),
        Index("ix_tasks_site_state", "site", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    spec: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default="new")
    external_id: Mapped[str] = mapped_column(String(400), default="", index=True)
    owner: Mapped[str] = mapped_column(String(200), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    project: Mapped[str] = mapped_column(String(200), default="")
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    logs: Mapped[str] = mapped_column(Text, default="")
    exit_status: Mapped[int | None] = mapped_column()
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    outputs_dataset: Mapped[str] = mapped_column(String(220), default="")
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    submitted_by: Mapped[str] = mapped_column(String(200))


class StationRow(Base):
    """A registered lab station: its driver, the driver's options and its safety policy.

    ``safety`` is :meth:`genesis_platform.labs.safety.SafetyPolicy.to_config`'s form.
    """

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    driver: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    safety: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class StationOperationRow(Base):
    """One operation sent (or refused) to a station, and the instrument time it used.

    States: ``queued`` (waiting in Genesis's queue), ``running``, ``completed``, ``failed``,
    ``aborted``, ``refused`` (broke a safety rule; never sent) and ``timed_out`` (ran past
    the station's timeout and was aborted).
    """

    __tablename__ = "station_operations"
    __table_args__ = (
        Index("ix_station_operations_station_state", "station", "state"),
        Index("ix_station_operations_project", "project"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station: Mapped[str] = mapped_column(String(100))
    operation_id: Mapped[str] = mapped_column(String(200))
    project: Mapped[str] = mapped_column(String(200), default="")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    external_id: Mapped[str] = mapped_column(String(400), default="")
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    instrument_seconds: Mapped[float] = mapped_column(default=0.0)
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    submitted_by: Mapped[str] = mapped_column(String(200))


class StationWindowRow(Base):
    """A time window of a station: a ``reservation`` for one project, or ``maintenance``."""

    __tablename__ = "station_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    project: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class StationCommandRow(Base):
    """An operator's command to a station (``abort``, ``refill``).

    Every process that has the station open carries it out; ``applied_at`` is set by the
    first one.
    """

    __tablename__ = "station_commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station: Mapped[str] = mapped_column(String(100), index=True)
    command: Mapped[str] = mapped_column(String(20))
    argument: Mapped[str] = mapped_column(String(200), default="")
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[dt.datetime | None] = mapped_column()
    applied_by: Mapped[str] = mapped_column(String(200), default="")


class StationStatusRow(Base):
    """The last status a process that has the station open saw (refreshed every second)."""

    __tablename__ = "station_status"

    station: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    busy_slots: Mapped[int] = mapped_column(Integer, default=0)
    queue_length: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    heartbeat: Mapped[float] = mapped_column(default=0.0)
    consumables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OrgRow(Base):
    """An organization: a partner that owns assets, has members and signs agreements.

    ``export_cleared`` says whether the operator cleared it for export-controlled assets.
    """

    __tablename__ = "orgs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    export_cleared: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class MemberRow(Base):
    """A user's membership of an organization, with a role and a vetting status."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("org", "user", name="uq_members_org_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(100), index=True)
    user: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20), default="member")
    vetting: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProjectRow(Base):
    """A project: work done together, by members of one or several organizations."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    org: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class ProjectMemberRow(Base):
    """A member (``user`` of ``org``) of a project."""

    __tablename__ = "project_members"
    __table_args__ = (
        UniqueConstraint("project", "org", "user", name="uq_project_members_project_org_user"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    org: Mapped[str] = mapped_column(String(100))
    user: Mapped[str] = mapped_column(String(100))


class ApiTokenRow(Base):
    """An API token: only its SHA-256 is stored; ``token_id`` is its public prefix."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(40), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    org: Mapped[str] = mapped_column(String(100))
    user: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()


class AssetRow(Base):
    """The governance attributes of one asset (a dataset, model, station, site or campaign).

    ``review`` is ``none`` (not reviewed: made inside the owner), ``pending`` (submitted by
    an external partner, readable only by its submitter and the owner's reviewers),
    ``approved`` or ``rejected``. ``derived_from`` names the model or campaign that produced
    a synthetic dataset (``model:NAME``, ``campaign:ID``).
    """

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_assets_kind_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(400))
    owner_org: Mapped[str] = mapped_column(String(100), index=True)
    project: Mapped[str] = mapped_column(String(200), default="")
    access: Mapped[str] = mapped_column(String(20), default="private")
    classification: Mapped[str] = mapped_column(String(20), default="public")
    export_controlled: Mapped[bool] = mapped_column(default=False)
    review: Mapped[str] = mapped_column(String(20), default="none")
    submitted_by: Mapped[str] = mapped_column(String(200), default="")
    reviewer: Mapped[str] = mapped_column(String(200), default="")
    risk_notes: Mapped[str] = mapped_column(Text, default="")
    decision_note: Mapped[str] = mapped_column(Text, default="")
    synthetic: Mapped[bool] = mapped_column(default=False)
    derived_from: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AgreementRow(Base):
    """An agreement between organizations: its kind, terms, covered assets and state.

    ``state`` is ``draft``, ``signed`` (by some parties), ``active`` (by all), ``terminated``;
    an active agreement past ``expires_at`` is expired. ``covers`` lists ``KIND:NAME`` of
    assets and ``owner:ORG`` for every asset of an owner.
    """

    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(400), default="")
    state: Mapped[str] = mapped_column(String(20), default="draft")
    terms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    covers: Mapped[list[Any]] = mapped_column(default=list)
    starts_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    terminated_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class AgreementPartyRow(Base):
    """A party (organization) to an agreement, and its signature once given."""

    __tablename__ = "agreement_parties"
    __table_args__ = (
        UniqueConstraint("agreement_id", "org", name="uq_agreement_parties_agreement_id_org"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    org: Mapped[str] = mapped_column(String(100))
    signed_by: Mapped[str] = mapped_column(String(200), default="")
    signed_at: Mapped[dt.datetime | None] = mapped_column()


class AllocationRow(Base):
    """A project's grant on one site (``node-hours``/``core-hours``) or station (instrument-hours).

    ``used`` is charged as the project's tasks and operations finish.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint(
            "project", "resource_kind", "resource", "unit", name="uq_allocations_project_resource"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    resource_kind: Mapped[str] = mapped_column(String(20))
    resource: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(30))
    amount: Mapped[float] = mapped_column()
    used: Mapped[float] = mapped_column(default=0.0)
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class IpLedgerRow(Base):
    """Who owns one campaign output, under which agreement, and its commercialization."""

    __tablename__ = "ip_ledger"
    __table_args__ = (
        UniqueConstraint("campaign_id", "output_kind", "output", name="uq_ip_ledger_output"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_kind: Mapped[str] = mapped_column(String(40))
    output: Mapped[str] = mapped_column(String(400))
    campaign_id: Mapped[int | None] = mapped_column()
    project: Mapped[str] = mapped_column(String(200), default="")
    owner_org: Mapped[str] = mapped_column(String(100))
    partners: Mapped[list[Any]] = mapped_column(default=list)
    agreement: Mapped[str] = mapped_column(String(200), default="")
    ownership: Mapped[str] = mapped_column(String(20), default="owner")
    commercialization: Mapped[str] = mapped_column(String(20), default="none")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChallengeRow(Base):
    """A national science and technology challenge, its lead and its linked work."""

    __tablename__ = "challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    domain: Mapped[str] = mapped_column(String(200), default="")
    lead_org: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    links: Mapped[list[Any]] = mapped_column(default=list)
    reviews: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PartnerRow(Base):
    """An organization in partnership: its MOU and the resources it contributes."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(100), unique=True)
    mou: Mapped[str] = mapped_column(String(200), default="")
    contributes: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GovernanceChange(Base):
    """One change to what policy decisions read (``kind``: org, member, asset, agreement...).

    Processes keep the governance state in memory and read the changes after the last one
    they saw, so a change in one process reaches the others' decisions.
    """

    __tablename__ = "governance_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
