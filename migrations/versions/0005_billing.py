"""billing: ledger, top-ups, meters, withdrawals, connect, disputes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:22:38.102686
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('billing_stripe_events',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('received_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_stripe_events'))
    )
    op.create_table('billing_connect_accounts',
    sa.Column('therapist_id', sa.Integer(), nullable=False),
    sa.Column('stripe_account_id', sa.String(length=64), nullable=False),
    sa.Column('details_submitted', sa.Boolean(), nullable=False),
    sa.Column('payouts_enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['therapist_id'], ['users.id'], name=op.f('fk_billing_connect_accounts_therapist_id_users')),
    sa.PrimaryKeyConstraint('therapist_id', name=op.f('pk_billing_connect_accounts')),
    sa.UniqueConstraint('stripe_account_id', name=op.f('uq_billing_connect_accounts_stripe_account_id'))
    )
    op.create_table('billing_topups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('creating', 'pending', 'succeeded', 'failed', name='topupstatus', native_enum=False, length=24), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.Column('stripe_key', sa.String(length=64), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=True),
    sa.Column('client_secret', sa.String(length=128), nullable=True),
    sa.Column('charge_id', sa.String(length=64), nullable=True),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_message', sa.String(length=200), nullable=True),
    sa.Column('refunded_pence', sa.BigInteger(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_billing_topups_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_topups')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_billing_topups_payment_intent_id')),
    sa.UniqueConstraint('stripe_key', name=op.f('uq_billing_topups_stripe_key')),
    sa.UniqueConstraint('user_id', 'client_key', name='uq_billing_topups_client_key')
    )
    with op.batch_alter_table('billing_topups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_topups_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_topups_user_id'), ['user_id'], unique=False)

    op.create_table('billing_withdrawals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('therapist_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('requested', 'scheduled', 'paying', 'paid', 'cancelled', name='withdrawalstatus', native_enum=False, length=24), nullable=False),
    sa.Column('requested_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('invoice_received_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('invoice_received_by', sa.Integer(), nullable=True),
    sa.Column('payout_date', sa.Date(), nullable=True),
    sa.Column('method', sa.Enum('stripe', 'bank', name='payoutmethod', native_enum=False, length=24), nullable=True),
    sa.Column('stripe_key', sa.String(length=64), nullable=False),
    sa.Column('transfer_id', sa.String(length=64), nullable=True),
    sa.Column('bank_reference', sa.String(length=64), nullable=True),
    sa.Column('paid_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paid_by', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cancelled_by'], ['users.id'], name=op.f('fk_billing_withdrawals_cancelled_by_users')),
    sa.ForeignKeyConstraint(['invoice_received_by'], ['users.id'], name=op.f('fk_billing_withdrawals_invoice_received_by_users')),
    sa.ForeignKeyConstraint(['paid_by'], ['users.id'], name=op.f('fk_billing_withdrawals_paid_by_users')),
    sa.ForeignKeyConstraint(['therapist_id'], ['users.id'], name=op.f('fk_billing_withdrawals_therapist_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_withdrawals')),
    sa.UniqueConstraint('stripe_key', name=op.f('uq_billing_withdrawals_stripe_key')),
    sa.UniqueConstraint('therapist_id', 'client_key', name='uq_billing_withdrawals_client_key'),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_billing_withdrawals_transfer_id'))
    )
    with op.batch_alter_table('billing_withdrawals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_withdrawals_payout_date'), ['payout_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_withdrawals_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_withdrawals_therapist_id'), ['therapist_id'], unique=False)

    op.create_table('ledger_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('client_wallet', 'client_frozen', 'therapist_pending', 'therapist_available', 'therapist_withdrawing', 'platform_revenue', 'card_clearing', 'payouts', name='accountkind', native_enum=False, length=24), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ledger_accounts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_ledger_accounts_code'))
    )
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_accounts_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_accounts_user_id'), ['user_id'], unique=False)

    op.create_table('billing_call_meters',
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('therapist_id', sa.Integer(), nullable=False),
    sa.Column('rate_pence', sa.Integer(), nullable=False),
    sa.Column('commission_bp', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('open', 'settled', name='meterstatus', native_enum=False, length=24), nullable=False),
    sa.Column('billable_ms', sa.BigInteger(), nullable=False),
    sa.Column('present_since', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('minutes_charged', sa.Integer(), nullable=False),
    sa.Column('warned_minute', sa.Integer(), nullable=False),
    sa.Column('exhausted_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('settled_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_billing_call_meters_call_id_calls')),
    sa.ForeignKeyConstraint(['client_id'], ['users.id'], name=op.f('fk_billing_call_meters_client_id_users')),
    sa.ForeignKeyConstraint(['therapist_id'], ['users.id'], name=op.f('fk_billing_call_meters_therapist_id_users')),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_billing_call_meters'))
    )
    with op.batch_alter_table('billing_call_meters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_call_meters_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_call_meters_present_since'), ['present_since'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_call_meters_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_call_meters_therapist_id'), ['therapist_id'], unique=False)

    op.create_table('billing_card_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topup_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stripe_key', sa.String(length=64), nullable=False),
    sa.Column('stripe_refund_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['topup_id'], ['billing_topups.id'], name=op.f('fk_billing_card_refunds_topup_id_billing_topups')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_billing_card_refunds_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_card_refunds')),
    sa.UniqueConstraint('stripe_key', name=op.f('uq_billing_card_refunds_stripe_key')),
    sa.UniqueConstraint('stripe_refund_id', name=op.f('uq_billing_card_refunds_stripe_refund_id'))
    )
    with op.batch_alter_table('billing_card_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_card_refunds_topup_id'), ['topup_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_card_refunds_user_id'), ['user_id'], unique=False)

    op.create_table('billing_disputes',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('topup_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('frozen_pence', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('open', 'won', 'lost', name='disputestatus', native_enum=False, length=24), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['users.id'], name=op.f('fk_billing_disputes_client_id_users')),
    sa.ForeignKeyConstraint(['topup_id'], ['billing_topups.id'], name=op.f('fk_billing_disputes_topup_id_billing_topups')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_disputes'))
    )
    with op.batch_alter_table('billing_disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_disputes_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_disputes_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_disputes_topup_id'), ['topup_id'], unique=False)

    op.create_table('ledger_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('memo', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_ledger_transactions_actor_id_users')),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_ledger_transactions_call_id_calls')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_reverses_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_transactions_idempotency_key')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_ledger_transactions_reverses_id'))
    )
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_transactions_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transactions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transactions_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transactions_reference'), ['reference'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_pence <> 0', name=op.f('ck_ledger_entries_nonzero')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_entries_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_entries_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entries_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_transaction_id'), ['transaction_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entries_transaction_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entries_account_id'))

    op.drop_table('ledger_entries')
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_reference'))
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_kind'))
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_created_at'))
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_call_id'))

    op.drop_table('ledger_transactions')
    with op.batch_alter_table('billing_disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_disputes_topup_id'))
        batch_op.drop_index(batch_op.f('ix_billing_disputes_status'))
        batch_op.drop_index(batch_op.f('ix_billing_disputes_client_id'))

    op.drop_table('billing_disputes')
    with op.batch_alter_table('billing_card_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_card_refunds_user_id'))
        batch_op.drop_index(batch_op.f('ix_billing_card_refunds_topup_id'))

    op.drop_table('billing_card_refunds')
    with op.batch_alter_table('billing_call_meters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_call_meters_therapist_id'))
        batch_op.drop_index(batch_op.f('ix_billing_call_meters_status'))
        batch_op.drop_index(batch_op.f('ix_billing_call_meters_present_since'))
        batch_op.drop_index(batch_op.f('ix_billing_call_meters_client_id'))

    op.drop_table('billing_call_meters')
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_accounts_user_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_accounts_kind'))

    op.drop_table('ledger_accounts')
    with op.batch_alter_table('billing_withdrawals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_withdrawals_therapist_id'))
        batch_op.drop_index(batch_op.f('ix_billing_withdrawals_status'))
        batch_op.drop_index(batch_op.f('ix_billing_withdrawals_payout_date'))

    op.drop_table('billing_withdrawals')
    with op.batch_alter_table('billing_topups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_topups_user_id'))
        batch_op.drop_index(batch_op.f('ix_billing_topups_charge_id'))

    op.drop_table('billing_topups')
    op.drop_table('billing_connect_accounts')
    op.drop_table('billing_stripe_events')
