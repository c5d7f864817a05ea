"""Vetting of therapist applications by admins: list them by status, approve or refuse, tell the therapist by e-mail.

Only an applicant whose e-mail address is verified can be approved (the address is how they are told, and how a
password is reset). A refused therapist is taken off the pool at once (`available` False) and their referral codes
stop working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.context import AccountsContext
from accounts.models import ApplicationStatus, ReferralCode, TherapistProfile, User
from accounts.principal import Principal
from core.audit import record_audit
from core.errors import Conflict, Invalid, NotFound
from core.validation import only_fields
from messaging.outbox import Channel, queue_message

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(frozen=True)
class Decision:
    profile: TherapistProfile
    user: User
    #: False when the application already had that status (nothing was changed, audited or sent).
    changed: bool


def _query_int(query: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or not raw.isdigit() or not 0 <= int(raw) <= maximum:
        raise Invalid(f"{name}: must be a whole number from 0 to {maximum}", details={"field": name})
    return int(raw)


async def list_applications(ctx: AccountsContext, query: Mapping[str, Any]) -> list[tuple[TherapistProfile, User]]:
    """Applications with one status (`pending` by default), oldest first; `limit` and `offset` page through them."""
    only_fields(query, {"status", "limit", "offset"})
    raw_status = query.get("status") or ApplicationStatus.pending.value
    try:
        status = ApplicationStatus(raw_status)
    except ValueError:
        raise Invalid("status: must be pending, approved or refused", details={"field": "status"}) from None
    limit = _query_int(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _query_int(query, "offset", 0, 10**9)
    async with ctx.db.session() as session:
        rows = await session.execute(
            select(TherapistProfile, User)
            .join(User, User.id == TherapistProfile.user_id)
            .where(TherapistProfile.status == status)
            .order_by(TherapistProfile.applied_at, TherapistProfile.user_id)
            .limit(limit)
            .offset(offset)
        )
        return [(profile, user) for profile, user in rows.all()]


async def approve(ctx: AccountsContext, admin: Principal, therapist_id: int) -> Decision:
    """Approve an application; approving an approved one changes nothing (and sends nothing)."""
    return await _decide(ctx, admin, therapist_id, ApplicationStatus.approved)


async def refuse(ctx: AccountsContext, admin: Principal, therapist_id: int) -> Decision:
    """Refuse an application (or withdraw an approval): unavailable at once, referral codes revoked."""
    return await _decide(ctx, admin, therapist_id, ApplicationStatus.refused)


async def _decide(
    ctx: AccountsContext, admin: Principal, therapist_id: int, status: ApplicationStatus
) -> Decision:
    async with ctx.db.transaction() as session:
        profile = await session.get(TherapistProfile, therapist_id, with_for_update=True)
        user = await session.get(User, therapist_id)
        if profile is None or user is None:
            raise NotFound("there is no such application")
        if profile.status is status:
            return Decision(profile, user, changed=False)
        if status is ApplicationStatus.approved and user.email_verified_at is None:
            raise Conflict("the applicant has not verified their e-mail address yet", code="email_not_verified")
        now = ctx.clock.now()
        profile.status = status
        profile.reviewed_at = now
        profile.reviewed_by = admin.user_id
        fields = ["reviewed_at", "reviewed_by", "status"]
        if status is ApplicationStatus.refused:
            if profile.available:
                profile.available = False
                fields.append("available")
            await _revoke_referral_codes(session, therapist_id, now)
        record_audit(session, at=now, actor_id=admin.user_id, action=f"application.{status.value}",
                     subject_type="user", subject_id=therapist_id, fields=sorted(fields))
        _queue_outcome_email(ctx, session, user, status)
    ctx.outbox_kick()
    return Decision(profile, user, changed=True)


async def _revoke_referral_codes(session: AsyncSession, therapist_id: int, now: datetime) -> None:
    await session.execute(
        update(ReferralCode)
        .where(ReferralCode.therapist_id == therapist_id, ReferralCode.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _queue_outcome_email(ctx: AccountsContext, session: AsyncSession, user: User, status: ApplicationStatus) -> None:
    url = ctx.settings.effective_public_url
    if status is ApplicationStatus.approved:
        subject = "Your application has been approved"
        text = (f"Hello {user.display_name},\n\nWe have checked your qualifications, registration and insurance, and "
                f"your therapist account is now approved. You can sign in and go available for clients:\n{url}\n")
    else:
        subject = "Your application has not been approved"
        text = (f"Hello {user.display_name},\n\nWe are sorry: we could not approve your therapist account. "
                "If you think this is a mistake, or your details have changed, please reply to this message.\n")
    queue_message(session, ctx.keyring, now=ctx.clock.now(), channel=Channel.email, kind=f"application_{status.value}",
                  recipient=user.email, subject=subject, body=text)
