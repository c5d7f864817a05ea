"""Bearer tokens and one-time e-mail tokens: random, shown once, stored only as a keyed hash.

A bearer token slides: used when less than half of its lifetime is left, it is extended to a full lifetime again,
never past an absolute maximum from its creation. A token in use therefore never runs out in the middle of a call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import ActionToken, AuthToken, TokenPurpose

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(secret_key: str, token: str) -> str:
    return hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token as its holder gets it: the secret itself (shown once) and when it expires unless used."""

    token: str
    expires_at: datetime


def issue_auth_token(session: AsyncSession, secret_key: str, user_id: int, now: datetime, ttl_s: int) -> tuple[str, AuthToken]:
    token = new_token()
    row = AuthToken(
        user_id=user_id, token_hash=token_hash(secret_key, token), created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    return token, row


async def find_live_auth_token(session: AsyncSession, secret_key: str, token: str, now: datetime) -> AuthToken | None:
    """The token's row if it exists, is not revoked and has not expired."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await session.scalar(select(AuthToken).where(AuthToken.token_hash == token_hash(secret_key, token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


async def use_auth_token(
    session: AsyncSession, secret_key: str, token: str, now: datetime, *, ttl_s: int, max_lifetime_s: int
) -> AuthToken | None:
    """The live token's row, its expiry slid forward when less than half of `ttl_s` is left (the caller commits).
    None for an unknown, revoked or expired token, or one older than `max_lifetime_s`."""
    row = await find_live_auth_token(session, secret_key, token, now)
    if row is None:
        return None
    longest = row.created_at + timedelta(seconds=max_lifetime_s)
    if now >= longest:
        return None
    slid = min(now + timedelta(seconds=ttl_s), longest)
    if row.expires_at - now < timedelta(seconds=ttl_s / 2) and slid > row.expires_at:  # near its cap: nothing to write
        row.expires_at = slid
    return row


async def revoke_all_auth_tokens(session: AsyncSession, user_id: int, now: datetime, *, keep_id: int | None = None) -> list[int]:
    """Revoke the user's tokens (all but `keep_id`); the ids of those that were still live."""
    query = update(AuthToken).where(AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None))
    if keep_id is not None:
        query = query.where(AuthToken.id != keep_id)
    revoked = await session.execute(query.values(revoked_at=now).returning(AuthToken.id, AuthToken.expires_at))
    return [token_id for token_id, expires_at in revoked.all() if expires_at > now]


def issue_action_token(
    session: AsyncSession, secret_key: str, user_id: int, purpose: TokenPurpose, now: datetime, ttl_s: int
) -> str:
    token = new_token()
    session.add(
        ActionToken(
            user_id=user_id, purpose=purpose, token_hash=token_hash(secret_key, token), created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token


async def use_action_token(
    session: AsyncSession, secret_key: str, token: str, purpose: TokenPurpose, now: datetime, *, consume: bool = True
) -> ActionToken | None:
    """The unused, unexpired token of that purpose, marked used when `consume`; None otherwise."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await session.scalar(
        select(ActionToken).where(ActionToken.token_hash == token_hash(secret_key, token)).with_for_update()
    )
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
        return None
    if consume:
        row.used_at = now
    return row
