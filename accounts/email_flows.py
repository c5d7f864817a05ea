"""E-mail verification and password reset, through one-time tokens sent via the outbox.

Links carry the token in the URL fragment (`#token=`), so it never reaches a server log; the page posts it back.
Every request that sends an e-mail is rate-limited per e-mail address and per client address
(`limit_email_requests`), so no one can use the service to flood an inbox.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.models import TokenPurpose, User
from accounts.passwords import hash_password
from accounts.tokens import issue_action_token, revoke_all_auth_tokens, use_action_token
from core.audit import record_audit
from core.errors import Invalid, RateLimited
from core.validation import only_fields
from messaging.outbox import Channel, queue_message

RESET_TTL_S = 3600


async def limit_email_requests(ctx: AccountsContext, kind: str, email: str, address: str) -> None:
    """Count one request for a `kind` of mail (`register`, `verify`, `reset`) to `email` from the client at IP
    `address`; `RateLimited` (and nothing counted) once that e-mail address has had `email_requests_per_account` of
    that kind, or that client `email_requests_per_address` of any kind, in the window. Kinds are counted apart, so
    the limit on reset links behaves the same whether or not the e-mail address has just registered."""
    s = ctx.settings
    keys = ((f"mail:{kind}:{email}", s.email_requests_per_account), (f"mail:addr:{address}", s.email_requests_per_address))
    for key, limit in keys:
        wait = await ctx.limiter.peek(key, limit, s.email_requests_window_s)
        if wait > 0:
            raise RateLimited("too many e-mails asked for; try again later", retry_after=wait)
    for key, limit in keys:
        await ctx.limiter.hit(key, limit, s.email_requests_window_s)


def queue_verification_email(ctx: AccountsContext, session: AsyncSession, user: User) -> None:
    token = issue_action_token(
        session, ctx.settings.secret_key, user.id, TokenPurpose.verify_email, ctx.clock.now(), ctx.settings.email_token_ttl_s
    )
    link = f"{ctx.settings.effective_public_url}/verify-email#token={token}"
    queue_message(
        session, ctx.keyring, now=ctx.clock.now(), channel=Channel.email, kind="verify_email", recipient=user.email,
        subject="Confirm your e-mail address",
        body=f"Hello {user.display_name},\n\nPlease confirm your e-mail address by opening this link:\n{link}\n",
    )


async def resend_verification(ctx: AccountsContext, user_id: int, address: str) -> None:
    """A new verification link, unless the address is verified already (rate-limited as every e-mail request)."""
    async with ctx.db.session() as session:
        user = await session.get(User, user_id)
        if user is None or user.email_verified_at is not None:
            return
        email = user.email
    await limit_email_requests(ctx, "verify", email, address)
    async with ctx.db.transaction() as session:
        user = await session.get(User, user_id)
        if user is not None and user.email_verified_at is None:
            queue_verification_email(ctx, session, user)
    ctx.outbox_kick()


async def verify_email(ctx: AccountsContext, data: Mapping[str, Any]) -> int:
    """Mark the address verified; returns the user id. A used, expired or unknown token is `bad_token`."""
    only_fields(data, {"token"})
    token = v.text(data, "token", max_len=128)
    async with ctx.db.transaction() as session:
        row = await use_action_token(session, ctx.settings.secret_key, token, TokenPurpose.verify_email, ctx.clock.now())
        if row is None:
            raise Invalid("this link is not valid any more; ask for a new one", code="bad_token")
        user = await session.get(User, row.user_id)
        assert user is not None
        user.email_verified_at = user.email_verified_at or ctx.clock.now()
        return user.id


async def request_password_reset(ctx: AccountsContext, data: Mapping[str, Any], address: str) -> None:
    """Queue a reset link if the account exists; the answer is the same either way, so it reveals nothing (the rate
    limit counts requests for unknown addresses too)."""
    only_fields(data, {"email"})
    email = v.email(data)
    await limit_email_requests(ctx, "reset", email, address)
    async with ctx.db.transaction() as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is None:
            return
        token = issue_action_token(session, ctx.settings.secret_key, user.id, TokenPurpose.reset_password, ctx.clock.now(), RESET_TTL_S)
        link = f"{ctx.settings.effective_public_url}/reset-password#token={token}"
        queue_message(
            session, ctx.keyring, now=ctx.clock.now(), channel=Channel.email, kind="reset_password", recipient=user.email,
            subject="Reset your password",
            body=f"Hello {user.display_name},\n\nTo choose a new password, open this link within an hour:\n{link}\n\n"
            "If you did not ask for this, ignore this message.\n",
        )
    ctx.outbox_kick()


async def reset_password(ctx: AccountsContext, data: Mapping[str, Any]) -> int:
    """Set a new password and sign the user out everywhere; returns the user id (so sockets can be closed)."""
    only_fields(data, {"token", "password"})
    token = v.text(data, "token", max_len=128)
    password = v.password(data, ctx.settings.password_min_length)
    password_hash = await hash_password(password)
    async with ctx.db.transaction() as session:
        row = await use_action_token(session, ctx.settings.secret_key, token, TokenPurpose.reset_password, ctx.clock.now())
        if row is None:
            raise Invalid("this link is not valid any more; ask for a new one", code="bad_token")
        user = await session.get(User, row.user_id)
        assert user is not None
        now = ctx.clock.now()
        user.password_hash = password_hash
        user.email_verified_at = user.email_verified_at or now
        user.updated_at = now
        await revoke_all_auth_tokens(session, user.id, now)
        record_audit(session, at=now, actor_id=user.id, action="password.reset", subject_type="user", subject_id=user.id)
        return user.id
