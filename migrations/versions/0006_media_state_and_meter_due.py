"""call members report their peer connection; meters know when their next minute is due

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:50:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('call_members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media_connected_since', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('media_lost_at', core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('billing_call_meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_billing_call_meters_due_at'), ['due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('billing_call_meters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_call_meters_due_at'))
        batch_op.drop_column('due_at')
    with op.batch_alter_table('call_members', schema=None) as batch_op:
        batch_op.drop_column('media_lost_at')
        batch_op.drop_column('media_connected_since')
