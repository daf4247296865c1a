"""audit chain

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("hash", sa.String(length=64), nullable=False, server_default="")
        )
    _chain_existing_records()


def _chain_existing_records() -> None:
    """Hash-chain the records a catalog already has, in id order, and write the head."""
    from genesis_platform.catalog.tables import UTCDateTime
    from genesis_platform.governance.audit import record_hash

    bind = op.get_bind()
    # The tables as this revision leaves them (the models' tables may have grown since).
    records = sa.table(
        "audit_records",
        sa.column("id", sa.Integer()),
        sa.column("at", UTCDateTime()),
        sa.column("principal", sa.String()),
        sa.column("action", sa.String()),
        sa.column("resource_kind", sa.String()),
        sa.column("resource_id", sa.String()),
        sa.column("decision", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("policies", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer()),
        sa.column("last_id", sa.Integer()),
        sa.column("last_hash", sa.String()),
        sa.column("count", sa.Integer()),
    )
    previous, last_id, count = "", 0, 0
    for row in bind.execute(sa.select(records).order_by(records.c.id)).mappings():
        digest = record_hash(
            previous,
            row["at"],
            row["principal"],
            row["action"],
            row["resource_kind"],
            row["resource_id"],
            row["decision"],
            row["detail"],
            row["policies"] or [],
        )
        bind.execute(
            sa.update(records)
            .where(records.c.id == row["id"])
            .values(prev_hash=previous, hash=digest, policies=row["policies"] or [])
        )
        previous, last_id, count = digest, row["id"], count + 1
    bind.execute(sa.insert(head).values(id=1, last_id=last_id, last_hash=previous, count=count))


def downgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("policies")
    op.drop_table("audit_head")
