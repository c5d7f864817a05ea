"""transcripts, recordings, access log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:35:05.723678
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recordings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('speaker_role', sa.String(length=16), nullable=False),
    sa.Column('speaker_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('start_offset_ms', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delete_after', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_recordings_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['speaker_id'], ['users.id'], name=op.f('fk_recordings_speaker_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recordings'))
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_call_id'), ['call_id'], unique=False)

    op.create_table('transcript_access',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_transcript_access_call_id_calls'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_transcript_access_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_access'))
    )
    with op.batch_alter_table('transcript_access', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcript_access_call_id'), ['call_id'], unique=False)

    op.create_table('transcript_segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('utterance_key', sa.String(length=64), nullable=False),
    sa.Column('speaker_role', sa.String(length=16), nullable=False),
    sa.Column('speaker_id', sa.Integer(), nullable=False),
    sa.Column('start_ms', sa.Integer(), nullable=False),
    sa.Column('end_ms', sa.Integer(), nullable=False),
    sa.Column('text_enc', sa.Text(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_transcript_segments_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['speaker_id'], ['users.id'], name=op.f('fk_transcript_segments_speaker_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_segments')),
    sa.UniqueConstraint('call_id', 'utterance_key', name='uq_transcript_segments_utterance')
    )
    with op.batch_alter_table('transcript_segments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcript_segments_call_id'), ['call_id'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_withdrawn_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('recording_withdrawn_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('transcript_complete', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_foreign_key(batch_op.f('fk_calls_recording_withdrawn_by_users'), 'users', ['recording_withdrawn_by'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_calls_recording_withdrawn_by_users'), type_='foreignkey')
        batch_op.drop_column('transcript_complete')
        batch_op.drop_column('recording_withdrawn_by')
        batch_op.drop_column('recording_withdrawn_at')

    with op.batch_alter_table('transcript_segments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcript_segments_call_id'))

    op.drop_table('transcript_segments')
    with op.batch_alter_table('transcript_access', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcript_access_call_id'))

    op.drop_table('transcript_access')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_call_id'))

    op.drop_table('recordings')
