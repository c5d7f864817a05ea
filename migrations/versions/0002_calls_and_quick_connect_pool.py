"""calls and quick-connect pool

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:11:44.501093
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('quick_connect', 'scheduled', 'test', name='callkind', native_enum=False, length=16), nullable=False),
    sa.Column('status', sa.Enum('open', 'ended', name='callstatus', native_enum=False, length=8), nullable=False),
    sa.Column('therapist_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('recording_consent', sa.Boolean(), nullable=False),
    sa.Column('terms_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_by', sa.Integer(), nullable=True),
    sa.Column('end_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['users.id'], name=op.f('fk_calls_client_id_users')),
    sa.ForeignKeyConstraint(['ended_by'], ['users.id'], name=op.f('fk_calls_ended_by_users')),
    sa.ForeignKeyConstraint(['therapist_id'], ['users.id'], name=op.f('fk_calls_therapist_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('request_id', name=op.f('uq_calls_request_id'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_therapist_id'), ['therapist_id'], unique=False)

    op.create_table('pool_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('open', 'offered', 'accepted', 'expired', 'cancelled', name='requeststatus', native_enum=False, length=16), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('reason_enc', sa.Text(), nullable=False),
    sa.Column('notes_enc', sa.Text(), nullable=False),
    sa.Column('expertise', sa.JSON(), nullable=False),
    sa.Column('minor', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('offered_to', sa.Integer(), nullable=True),
    sa.Column('offer_expires_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('closed_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['users.id'], name=op.f('fk_pool_requests_client_id_users')),
    sa.ForeignKeyConstraint(['offered_to'], ['users.id'], name=op.f('fk_pool_requests_offered_to_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_requests'))
    )
    with op.batch_alter_table('pool_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_requests_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pool_requests_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_pool_requests_offered_to'), ['offered_to'], unique=False)
        batch_op.create_index(batch_op.f('ix_pool_requests_status'), ['status'], unique=False)
        batch_op.create_index('uq_pool_requests_one_active_per_client', ['client_id'], unique=True, sqlite_where=sa.text("status IN ('open', 'offered')"), postgresql_where=sa.text("status IN ('open', 'offered')"))

    op.create_table('consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('terms_version', sa.String(length=32), nullable=False),
    sa.Column('terms_accepted_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recording_consent', sa.Boolean(), nullable=False),
    sa.Column('at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_consents_call_id_calls')),
    sa.ForeignKeyConstraint(['client_id'], ['users.id'], name=op.f('fk_consents_client_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_consents_client_id'), ['client_id'], unique=False)

    op.create_table('pool_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('therapist_id', sa.Integer(), nullable=False),
    sa.Column('offered_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.Enum('pending', 'accepted', 'declined', 'timed_out', 'withdrawn', 'cancelled', name='offeroutcome', native_enum=False, length=16), nullable=False),
    sa.Column('decided_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('terms_version', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['pool_requests.id'], name=op.f('fk_pool_offers_request_id_pool_requests')),
    sa.ForeignKeyConstraint(['therapist_id'], ['users.id'], name=op.f('fk_pool_offers_therapist_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_offers')),
    sa.UniqueConstraint('request_id', 'round', name='uq_pool_offers_request_round')
    )
    with op.batch_alter_table('pool_offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_offers_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pool_offers_therapist_id'), ['therapist_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pool_offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_offers_therapist_id'))
        batch_op.drop_index(batch_op.f('ix_pool_offers_request_id'))

    op.drop_table('pool_offers')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consents_client_id'))
        batch_op.drop_index(batch_op.f('ix_consents_call_id'))

    op.drop_table('consents')
    with op.batch_alter_table('pool_requests', schema=None) as batch_op:
        batch_op.drop_index('uq_pool_requests_one_active_per_client', sqlite_where=sa.text("status IN ('open', 'offered')"), postgresql_where=sa.text("status IN ('open', 'offered')"))
        batch_op.drop_index(batch_op.f('ix_pool_requests_status'))
        batch_op.drop_index(batch_op.f('ix_pool_requests_offered_to'))
        batch_op.drop_index(batch_op.f('ix_pool_requests_expires_at'))
        batch_op.drop_index(batch_op.f('ix_pool_requests_client_id'))

    op.drop_table('pool_requests')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_therapist_id'))
        batch_op.drop_index(batch_op.f('ix_calls_status'))
        batch_op.drop_index(batch_op.f('ix_calls_client_id'))

    op.drop_table('calls')
