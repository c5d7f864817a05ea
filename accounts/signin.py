"""Signing in and out, and turning a bearer token back into a `Principal`."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import select

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.models import AuthToken, User
from accounts.passwords import verify_password
from accounts.principal import Principal
from accounts.tokens import find_live_auth_token, issue_auth_token, revoke_all_auth_tokens
from core.errors import RateLimited, Unauthorized
from core.validation import only_fields


async def sign_in(ctx: AccountsContext, data: Mapping[str, Any], address: str) -> tuple[User, str]:
    """Check the password; rate-limited per account and per client address, counting failures only."""
    only_fields(data, {"email", "password"})
    email = v.email(data)
    password = v.text(data, "password", max_len=256, min_len=1)
    s = ctx.settings
    keys = ((f"signin:acct:{email}", s.signin_attempts_per_account), (f"signin:addr:{address}", s.signin_attempts_per_address))
    for key, limit in keys:
        wait = await ctx.limiter.peek(key, limit, s.signin_window_s)
        if wait > 0:
            raise RateLimited("too many failed sign-in attempts; try again later", retry_after=wait)
    async with ctx.db.session() as session:
        user = await session.scalar(select(User).where(User.email == email))
        if not await verify_password(user.password_hash if user else None, password) or user is None:
            for key, limit in keys:
                await ctx.limiter.hit(key, limit, s.signin_window_s)
            raise Unauthorized("wrong e-mail address or password", code="bad_credentials")
        token, _ = issue_auth_token(session, s.secret_key, user.id, ctx.clock.now(), s.token_ttl_s)
        await session.commit()
    await ctx.limiter.reset(keys[0][0])
    return user, token


async def authenticate(ctx: AccountsContext, token: Any) -> Principal:
    """The principal behind a live token; `Unauthorized` (`invalid_token`) for a missing, forged, expired or revoked one."""
    if not isinstance(token, str) or not token:
        raise Unauthorized("sign in first", code="invalid_token")
    async with ctx.db.session() as session:
        row = await find_live_auth_token(session, ctx.settings.secret_key, token, ctx.clock.now())
        if row is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        user = await session.get(User, row.user_id)
        if user is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        return Principal.of(user, token_id=row.id)


async def sign_out(ctx: AccountsContext, principal: Principal, *, everywhere: bool = False) -> None:
    """Revoke this token (or all of the user's tokens)."""
    async with ctx.db.transaction() as session:
        now = ctx.clock.now()
        if everywhere:
            await revoke_all_auth_tokens(session, principal.user_id, now)
        elif principal.token_id is not None:
            row = await session.get(AuthToken, principal.token_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = now


async def refresh(ctx: AccountsContext, principal: Principal) -> str:
    """A fresh token with a full lifetime; the old one is revoked."""
    async with ctx.db.transaction() as session:
        token, _ = issue_auth_token(session, ctx.settings.secret_key, principal.user_id, ctx.clock.now(), ctx.settings.token_ttl_s)
        if principal.token_id is not None:
            old = await session.get(AuthToken, principal.token_id)
            if old is not None and old.revoked_at is None:
                old.revoked_at = ctx.clock.now()
    return token
