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
    "AuditHead",
    "AuditRecord",
    "Base",
    "Campaign",
    "Dataset",
    "DatasetFile",
    "DatasetVersion",
    "Model",
    "ModelVersion",
    "ObservationRow",
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
