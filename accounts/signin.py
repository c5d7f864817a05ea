"""Signing in and out, changing the password, and turning a bearer token back into a `Principal`."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import select

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.models import AuthToken, User
from accounts.passwords import hash_password, verify_password
from accounts.principal import Principal
from accounts.tokens import IssuedToken, issue_auth_token, revoke_all_auth_tokens, use_auth_token
from core.audit import record_audit
from core.errors import Invalid, RateLimited, Unauthorized
from core.validation import only_fields, require_mapping


def _account_key(email: str) -> str:
    """The rate-limit key of failed password checks for one account (sign-in and password change share it)."""
    return f"signin:acct:{email}"


async def sign_in(ctx: AccountsContext, data: Mapping[str, Any], address: str) -> tuple[User, IssuedToken]:
    """Check the password; rate-limited per account and per client address, counting failures only."""
    only_fields(data, {"email", "password"})
    email = v.email(data)
    password = v.text(data, "password", max_len=256, min_len=1)
    s = ctx.settings
    keys = ((_account_key(email), s.signin_attempts_per_account), (f"signin:addr:{address}", s.signin_attempts_per_address))
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
        token, row = issue_auth_token(session, s.secret_key, user.id, ctx.clock.now(), s.token_ttl_s)
        await session.commit()
    await ctx.limiter.reset(keys[0][0])
    return user, IssuedToken(token, row.expires_at)


async def authenticate(ctx: AccountsContext, token: Any) -> Principal:
    """The principal behind a live token; `Unauthorized` (`invalid_token`) for a missing, forged, expired or revoked one.
    Using a token slides its expiry (`accounts.tokens.use_auth_token`)."""
    if not isinstance(token, str) or not token:
        raise Unauthorized("sign in first", code="invalid_token")
    s = ctx.settings
    async with ctx.db.session() as session:
        row = await use_auth_token(session, s.secret_key, token, ctx.clock.now(), ttl_s=s.token_ttl_s,
                                   max_lifetime_s=s.token_max_lifetime_s)
        if row is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        slid = row in session.dirty  # at most once per half lifetime of a token
        user = await session.get(User, row.user_id)
        if user is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        principal = Principal.of(user, token_id=row.id)
        if slid:
            await session.commit()
        return principal


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


async def refresh(ctx: AccountsContext, principal: Principal) -> IssuedToken:
    """A fresh token with a full lifetime; the old one is revoked."""
    async with ctx.db.transaction() as session:
        token, row = issue_auth_token(session, ctx.settings.secret_key, principal.user_id, ctx.clock.now(), ctx.settings.token_ttl_s)
        if principal.token_id is not None:
            old = await session.get(AuthToken, principal.token_id)
            if old is not None and old.revoked_at is None:
                old.revoked_at = ctx.clock.now()
    return IssuedToken(token, row.expires_at)


async def change_password(ctx: AccountsContext, principal: Principal, data: Mapping[str, Any]) -> list[int]:
    """Set a new password after checking the current one; every other token of the user is revoked (this one
    stays). Returns the ids of the tokens revoked, so their connections can be closed. Wrong current passwords
    count against the account's sign-in limit, so a stolen token cannot be used to guess the password."""
    data = require_mapping(data)
    only_fields(data, {"current_password", "new_password"})
    current = v.password(data, 1, field="current_password")
    new = v.password(data, ctx.settings.password_min_length, field="new_password")
    s = ctx.settings
    async with ctx.db.session() as session:
        user = await session.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        key = _account_key(user.email)
        wait = await ctx.limiter.peek(key, s.signin_attempts_per_account, s.signin_window_s)
        if wait > 0:
            raise RateLimited("too many wrong passwords; try again later", retry_after=wait)
        if not await verify_password(user.password_hash, current):
            await ctx.limiter.hit(key, s.signin_attempts_per_account, s.signin_window_s)
            raise Invalid("current_password: this is not your current password", code="wrong_password",
                          details={"field": "current_password"})
    password_hash = await hash_password(new)
    async with ctx.db.transaction() as session:
        user = await session.get(User, principal.user_id, with_for_update=True)
        if user is None:
            raise Unauthorized("your session has ended; sign in again", code="invalid_token")
        now = ctx.clock.now()
        user.password_hash = password_hash
        user.updated_at = now
        revoked = await revoke_all_auth_tokens(session, user.id, now, keep_id=principal.token_id)
        record_audit(session, at=now, actor_id=user.id, action="password.changed", subject_type="user",
                     subject_id=user.id, fields=["password"])
    await ctx.limiter.reset(key)
    return revoked
