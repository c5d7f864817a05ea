"""Tables of billing: the double-entry ledger, top-ups and the Stripe events seen, call meters, withdrawals, Stripe
Connect accounts, card disputes and refunds to the card.

Money is integer pence (GBP) everywhere. Balances are never stored: an account's balance is the sum of its entries,
and entries are only ever inserted (a mistake is put right with a reversing transaction, never an edit).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

import accounts.models  # noqa: F401 - the tables these refer to must be mapped wherever these are used
import calls.models  # noqa: F401
from core.db import Base, UTCDateTime


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=24, validate_strings=True)


class AccountKind(str, enum.Enum):
    """The named accounts. Per-user kinds have one account per user; the others exist once."""

    client_wallet = "client_wallet"                # a client's prepaid balance
    client_frozen = "client_frozen"                # wallet money held back while a card dispute is open
    therapist_pending = "therapist_pending"        # earnings of calls not yet settled
    therapist_available = "therapist_available"    # settled earnings, withdrawable
    therapist_withdrawing = "therapist_withdrawing"  # withdrawals requested and not yet paid
    platform_revenue = "platform_revenue"          # the platform's commission
    card_clearing = "card_clearing"                # money in from (or back to) cards through Stripe; external
    payouts = "payouts"                            # money paid out to therapists; external


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: `client_wallet:12`, `therapist_available:7`, `platform_revenue`: one row per named account.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[AccountKind] = mapped_column(_enum(AccountKind), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerTransaction(Base):
    """One movement of money: a balanced set of entries, posted once per idempotency key."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), nullable=True, index=True)
    #: What outside the ledger it is about: a PaymentIntent id, `withdrawal:5`, a dispute id...
    reference: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    #: The transaction this one reverses; a transaction is reversed at most once.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), nullable=True, unique=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    memo: Mapped[str] = mapped_column(String(200), default="")

    entries: Mapped[list[LedgerEntry]] = relationship(lazy="selectin", order_by="LedgerEntry.id")


class LedgerEntry(Base):
    """One leg of a transaction: `amount_pence` added to the account's balance (negative takes away)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount_pence <> 0", name="nonzero"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)


class TopUpStatus(str, enum.Enum):
    creating = "creating"      # our row exists; the PaymentIntent is being created
    pending = "pending"        # the PaymentIntent exists; waiting for the card
    succeeded = "succeeded"    # the wallet was credited (once)
    failed = "failed"          # the last attempt failed; the client may try another card


class TopUp(Base):
    __tablename__ = "billing_topups"
    __table_args__ = (UniqueConstraint("user_id", "client_key", name="uq_billing_topups_client_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[TopUpStatus] = mapped_column(_enum(TopUpStatus))
    #: The client's `Idempotency-Key` header, so a retried request returns the same top-up.
    client_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The idempotency key of the Stripe call that creates its PaymentIntent (random: unique across databases).
    stripe_key: Mapped[str] = mapped_column(String(64), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    client_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    charge_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(200), nullable=True)
    refunded_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StripeEvent(Base):
    """Every Stripe event acted on, by its id: a second delivery of the same event is recognised and ignored."""

    __tablename__ = "billing_stripe_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MeterStatus(str, enum.Enum):
    open = "open"          # the call is going on (billable time accrues while both members are present)
    settled = "settled"    # the call ended and the therapist's earnings became available


class CallMeter(Base):
    """Per-minute charging state of one quick-connect call, kept in the database so any process can carry it on."""

    __tablename__ = "billing_call_meters"

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    rate_pence: Mapped[int] = mapped_column(Integer)
    commission_bp: Mapped[int] = mapped_column(Integer)
    status: Mapped[MeterStatus] = mapped_column(_enum(MeterStatus), index=True)
    #: Billable time accrued up to `present_since` (or in total while not both are present).
    billable_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Since when both members have been present; None while one (or both) is away.
    present_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    minutes_charged: Mapped[int] = mapped_column(Integer, default=0)
    #: The minute after whose charge the last low-balance warning went out.
    warned_minute: Mapped[int] = mapped_column(Integer, default=0)
    #: When the paid time ran out and the wallet could not pay the next minute.
    exhausted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When the next minute comes due if both stay present (None while they are not): what the ticker looks for.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WithdrawalStatus(str, enum.Enum):
    requested = "requested"                # earnings set aside; waiting for the therapist's invoice
    scheduled = "scheduled"                # invoice received; payout date set
    paying = "paying"                      # a Stripe transfer is under way
    paid = "paid"
    cancelled = "cancelled"                # earnings returned to available


class PayoutMethod(str, enum.Enum):
    stripe = "stripe"
    bank = "bank"


class Withdrawal(Base):
    __tablename__ = "billing_withdrawals"
    __table_args__ = (UniqueConstraint("therapist_id", "client_key", name="uq_billing_withdrawals_client_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    #: The therapist's `Idempotency-Key` header, so a retried request returns the same withdrawal.
    client_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[WithdrawalStatus] = mapped_column(_enum(WithdrawalStatus), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    invoice_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    invoice_received_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    payout_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    method: Mapped[PayoutMethod | None] = mapped_column(_enum(PayoutMethod), nullable=True)
    #: The idempotency key of its Stripe transfer (random: unique across databases).
    stripe_key: Mapped[str] = mapped_column(String(64), unique=True)
    transfer_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    bank_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paid_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class ConnectAccount(Base):
    """A therapist's Stripe Connect (Express) account and whether Stripe lets us pay out to it."""

    __tablename__ = "billing_connect_accounts"

    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    stripe_account_id: Mapped[str] = mapped_column(String(64), unique=True)
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DisputeStatus(str, enum.Enum):
    open = "open"
    won = "won"
    lost = "lost"


class Dispute(Base):
    """A card dispute (chargeback) on a top-up: the disputed amount is frozen in the client's wallet meanwhile."""

    __tablename__ = "billing_disputes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topup_id: Mapped[int] = mapped_column(ForeignKey("billing_topups.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    #: What could be frozen (the wallet may hold less than the disputed amount).
    frozen_pence: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[DisputeStatus] = mapped_column(_enum(DisputeStatus), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CardRefund(Base):
    """Unused wallet balance returned to the card of one top-up (a Stripe Refund)."""

    __tablename__ = "billing_card_refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topup_id: Mapped[int] = mapped_column(ForeignKey("billing_topups.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    #: pending (wallet debited, refund being made), succeeded, failed (wallet credited back).
    status: Mapped[str] = mapped_column(String(16))
    #: The idempotency key of its Stripe refund (random: unique across databases).
    stripe_key: Mapped[str] = mapped_column(String(64), unique=True)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
