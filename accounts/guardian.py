"""Guardian consent for clients under 18: requested by the client, given by the guardian through an e-mailed link,
or recorded by an admin (e.g. after a signed paper form). Until then `policy.require_can_start_session` refuses.

The link carries a one-time token in the URL fragment (`#token=`), so it never reaches a server log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.models import ActionToken, ClientProfile, TokenPurpose, User
from accounts.policy import is_minor
from accounts.principal import Principal
from accounts.tokens import issue_action_token, use_action_token
from core.audit import record_audit
from core.errors import Conflict, Invalid, NotFound, RateLimited
from core.validation import only_fields, require_mapping
from messaging.outbox import Channel, queue_message

REQUESTS_PER_DAY = 5
DAY_S = 24 * 3600
METHOD_EMAIL = "email_form"
METHOD_ADMIN = "admin"


def _guardian_name(data: Mapping[str, Any]) -> str:
    return v.text(data, "guardian_name", max_len=120)


def _relationship(data: Mapping[str, Any], field: str) -> str:
    return v.text(data, field, max_len=60)


def _bad_token() -> Invalid:
    return Invalid("this link is not valid any more; ask for a new one", code="bad_token")


def _not_a_minor() -> Conflict:
    return Conflict("guardian consent is only needed for clients under 18", code="not_a_minor")


async def request_consent(ctx: AccountsContext, principal: Principal, data: Mapping[str, Any]) -> User:
    """Store the guardian's details and e-mail them a consent link; an earlier link stops working."""
    data = require_mapping(data)
    only_fields(data, {"guardian_name", "guardian_email", "guardian_relationship"})
    guardian_name = _guardian_name(data)
    guardian_email = v.email(data, "guardian_email")
    relationship = _relationship(data, "guardian_relationship")
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        user = await session.get(User, principal.user_id)
        profile = await session.get(ClientProfile, principal.user_id, with_for_update=True)
        if user is None or profile is None:
            raise NotFound("this account does not exist any more")
        if not is_minor(profile, now):
            raise _not_a_minor()
        if profile.guardian_consent_at is not None:
            raise Conflict("a guardian has already consented", code="already_consented")
        if guardian_email == user.email:
            raise Invalid("guardian_email: must be your parent's or guardian's address, not yours", code="same_email",
                          details={"field": "guardian_email"})
        wait = await ctx.limiter.hit(f"guardian:request:{user.id}", REQUESTS_PER_DAY, DAY_S)
        if wait > 0:
            raise RateLimited("too many consent requests today; try again tomorrow", retry_after=wait)
        profile.guardian_name = guardian_name
        profile.guardian_email = guardian_email
        profile.guardian_relationship = relationship
        await _retire_links(session, user.id, now)
        token = issue_action_token(session, ctx.settings.secret_key, user.id, TokenPurpose.guardian_consent, now,
                                   ctx.settings.email_token_ttl_s)
        link = f"{ctx.settings.effective_public_url}/guardian-consent#token={token}"
        queue_message(
            session, ctx.keyring, now=now, channel=Channel.email, kind="guardian_consent", recipient=guardian_email,
            subject="Your consent is needed for online therapy sessions",
            body=f"Hello {guardian_name},\n\n{user.display_name} has asked to use our online therapy service and, being "
            f"under 18, needs the consent of a parent or guardian first.\n\nTo read about it and give your consent, "
            f"open this link:\n{link}\n\nIf you do not know {user.display_name}, ignore this message.\n",
        )
        user.updated_at = now
        record_audit(session, at=now, actor_id=user.id, action="guardian_consent.requested", subject_type="user",
                     subject_id=user.id, fields=["guardian_email", "guardian_name", "guardian_relationship"])
    ctx.outbox_kick()
    return user


async def _retire_links(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Unused consent links of this client stop working (a new request supersedes them)."""
    await session.execute(
        update(ActionToken)
        .where(ActionToken.user_id == user_id, ActionToken.purpose == TokenPurpose.guardian_consent,
               ActionToken.used_at.is_(None))
        .values(used_at=now)
    )


async def consent_details(ctx: AccountsContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """What the consent page shows the guardian; the token stays usable."""
    data = require_mapping(data)
    only_fields(data, {"token"})
    token = v.text(data, "token", max_len=128)
    async with ctx.db.session() as session:
        row = await use_action_token(session, ctx.settings.secret_key, token, TokenPurpose.guardian_consent,
                                     ctx.clock.now(), consume=False)
        if row is None:
            raise _bad_token()
        user = await session.get(User, row.user_id)
        if user is None or user.client is None:
            raise _bad_token()
        return {
            "child_display_name": user.display_name,
            "guardian_name": user.client.guardian_name,
            "guardian_relationship": user.client.guardian_relationship,
        }


async def confirm_consent(ctx: AccountsContext, data: Mapping[str, Any]) -> int:
    """The guardian consents through the e-mailed link; returns the client's id. The token works once."""
    data = require_mapping(data)
    only_fields(data, {"token", "guardian_name", "relationship", "consent"})
    token = v.text(data, "token", max_len=128)
    guardian_name = _guardian_name(data)
    relationship = _relationship(data, "relationship")
    if data.get("consent") is not True:
        raise Invalid("consent: tick the box to give your consent", code="consent_required", details={"field": "consent"})
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await use_action_token(session, ctx.settings.secret_key, token, TokenPurpose.guardian_consent, now)
        if row is None:
            raise _bad_token()
        profile = await session.get(ClientProfile, row.user_id, with_for_update=True)
        if profile is None:
            raise _bad_token()
        _record(profile, now, METHOD_EMAIL, guardian_name, relationship, by=None)
        record_audit(session, at=now, actor_id=None, action="guardian_consent.recorded", subject_type="user",
                     subject_id=profile.user_id, fields=_RECORDED_FIELDS)
        return profile.user_id


async def record_by_admin(ctx: AccountsContext, admin: Principal, client_id: int, data: Mapping[str, Any]) -> User:
    """An admin records a guardian's consent given outside the app (method `admin`)."""
    data = require_mapping(data)
    only_fields(data, {"guardian_name", "guardian_relationship"})
    guardian_name = _guardian_name(data)
    relationship = _relationship(data, "guardian_relationship")
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        profile = await session.get(ClientProfile, client_id, with_for_update=True)
        user = await session.get(User, client_id)
        if profile is None or user is None:
            raise NotFound("there is no such client")
        if not is_minor(profile, now):
            raise _not_a_minor()
        _record(profile, now, METHOD_ADMIN, guardian_name, relationship, by=admin.user_id)
        await _retire_links(session, client_id, now)
        record_audit(session, at=now, actor_id=admin.user_id, action="guardian_consent.recorded", subject_type="user",
                     subject_id=client_id, fields=_RECORDED_FIELDS)
        return user


_RECORDED_FIELDS = ["guardian_consent_at", "guardian_consent_by", "guardian_consent_method", "guardian_name",
                    "guardian_relationship"]


def _record(profile: ClientProfile, now: datetime, method: str, guardian_name: str, relationship: str, by: int | None) -> None:
    profile.guardian_consent_at = now
    profile.guardian_consent_method = method
    profile.guardian_consent_by = by
    profile.guardian_name = guardian_name
    profile.guardian_relationship = relationship
