"""Creating accounts: clients register, therapists apply (and wait for approval), admins come from the CLI only."""

from __future__ import annotations

from datetime import date
from typing import Any, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.email_flows import limit_email_requests, queue_verification_email
from accounts.models import ApplicationStatus, ClientProfile, ReferralCode, Role, TherapistProfile, User
from accounts.passwords import hash_password
from accounts.policy import MINIMUM_AGE, age_on
from accounts.tokens import IssuedToken, issue_auth_token
from core.audit import record_audit
from core.errors import Conflict, Invalid
from core.validation import only_fields

CLIENT_FIELDS = {"email", "password", "display_name", "date_of_birth", "referral_code"}
THERAPIST_FIELDS = {
    "email", "password", "display_name", "qualifications", "registration_body", "registration_number",
    "insurance_provider", "insurance_expiry", "bio", "expertise", "rate_pence_per_minute", "phone",
}


async def _email_free(session: AsyncSession, email: str) -> None:
    if await session.scalar(select(func.count()).select_from(User).where(User.email == email)):
        raise Conflict("an account with this e-mail address already exists", code="email_taken")


def _new_user(ctx: AccountsContext, email: str, password_hash: str, role: Role, display_name: str) -> User:
    now = ctx.clock.now()
    return User(email=email, password_hash=password_hash, role=role, display_name=display_name, created_at=now, updated_at=now,
                therapist=None, client=None)


async def _commit_new_user(ctx: AccountsContext, session: AsyncSession, user: User) -> IssuedToken:
    """Flush the user, queue the verification e-mail, issue a first token, commit; e-mail races end as `email_taken`."""
    try:
        await session.flush()
        queue_verification_email(ctx, session, user)
        token, row = issue_auth_token(session, ctx.settings.secret_key, user.id, ctx.clock.now(), ctx.settings.token_ttl_s)
        record_audit(session, at=ctx.clock.now(), actor_id=user.id, action="account.created", subject_type="user", subject_id=user.id)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("an account with this e-mail address already exists", code="email_taken") from None
    ctx.outbox_kick()
    return IssuedToken(token, row.expires_at)


async def register_client(ctx: AccountsContext, data: Mapping[str, Any], address: str) -> tuple[User, IssuedToken]:
    """A new client account (anyone may register); returns the user and a bearer token. It sends a verification
    e-mail, so it counts against the e-mail request limits of that e-mail address and of the client's IP `address`."""
    only_fields(data, CLIENT_FIELDS)
    email = v.email(data)
    password = v.password(data, ctx.settings.password_min_length)
    display_name = v.display_name(data)
    born: date = v.iso_date(data, "date_of_birth")  # type: ignore[assignment]
    today = ctx.clock.now().date()
    if born > today:
        raise Invalid("date_of_birth: is in the future", details={"field": "date_of_birth"})
    if age_on(born, today) < MINIMUM_AGE:
        raise Invalid(f"you must be at least {MINIMUM_AGE} to use this service", code="too_young",
                      details={"field": "date_of_birth"})
    code = v.text(data, "referral_code", max_len=16, required=False).upper()
    await limit_email_requests(ctx, "register", email, address)
    password_hash = await hash_password(password)
    async with ctx.db.session() as session:
        await _email_free(session, email)
        therapist_id: int | None = None
        if code:
            therapist_id = await session.scalar(
                update(ReferralCode)
                .where(ReferralCode.code == code, ReferralCode.revoked_at.is_(None))
                .values(uses=ReferralCode.uses + 1)
                .returning(ReferralCode.therapist_id)
            )
            if therapist_id is None:
                raise Invalid("referral_code: unknown or withdrawn code", code="bad_referral_code",
                              details={"field": "referral_code"})
        user = _new_user(ctx, email, password_hash, Role.client, display_name)
        user.client = ClientProfile(date_of_birth=born, allocated_therapist_id=therapist_id)
        session.add(user)
        token = await _commit_new_user(ctx, session, user)
    return user, token


async def apply_as_therapist(ctx: AccountsContext, data: Mapping[str, Any], address: str) -> tuple[User, IssuedToken]:
    """A therapist application: the account exists at once but stays `pending` until an admin approves it (which
    needs the e-mail address verified first). Rate-limited as registration is."""
    only_fields(data, THERAPIST_FIELDS)
    email = v.email(data)
    password = v.password(data, ctx.settings.password_min_length)
    display_name = v.display_name(data)
    profile_fields = v.therapist_application(data, ctx.clock.now().date())
    profile_fields.update(v.therapist_profile(data, partial=False))
    await limit_email_requests(ctx, "register", email, address)
    password_hash = await hash_password(password)
    async with ctx.db.session() as session:
        await _email_free(session, email)
        user = _new_user(ctx, email, password_hash, Role.therapist, display_name)
        user.therapist = TherapistProfile(
            status=ApplicationStatus.pending, applied_at=ctx.clock.now(), available=False, picture_version=0, **profile_fields
        )
        session.add(user)
        token = await _commit_new_user(ctx, session, user)
    return user, token


async def create_admin(ctx: AccountsContext, email: str, password: str, display_name: str = "Administrator") -> User:
    """An admin account; only the command line calls this."""
    data = {"email": email, "password": password, "display_name": display_name}
    email = v.email(data)
    password = v.password(data, ctx.settings.password_min_length)
    password_hash = await hash_password(password)
    async with ctx.db.session() as session:
        await _email_free(session, email)
        user = _new_user(ctx, email, password_hash, Role.admin, v.display_name(data))
        user.email_verified_at = ctx.clock.now()
        session.add(user)
        await session.flush()
        record_audit(session, at=ctx.clock.now(), actor_id=None, action="admin.created", subject_type="user", subject_id=user.id)
        await session.commit()
    return user
