"""Referral codes: an approved therapist hands a code to their own clients; registering with it allocates the client
to that therapist (see `registration.register_client`). A revoked code stops working at once.
"""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from accounts.context import AccountsContext
from accounts.models import ReferralCode
from accounts.principal import Principal
from core.audit import record_audit
from core.errors import Conflict, NotFound

#: Upper-case letters and digits without the look-alikes 0/O and 1/I, so a code read aloud or typed is not mistaken.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
MAX_CODE_LENGTH = 16  # the column's size
MAX_ACTIVE_CODES = 50
_ATTEMPTS = 5


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise(code: str) -> str:
    return code.strip().upper()


async def create_code(ctx: AccountsContext, principal: Principal) -> ReferralCode:
    """A fresh code of the therapist's own; a collision with an existing code is retried with another."""
    for _ in range(_ATTEMPTS):
        code = new_code()
        try:
            async with ctx.db.transaction() as session:
                active = await session.scalar(
                    select(func.count()).select_from(ReferralCode)
                    .where(ReferralCode.therapist_id == principal.user_id, ReferralCode.revoked_at.is_(None))
                )
                if (active or 0) >= MAX_ACTIVE_CODES:
                    raise Conflict(f"you can have at most {MAX_ACTIVE_CODES} active codes; revoke one first",
                                   code="too_many_codes")
                if await session.get(ReferralCode, code) is not None:
                    continue
                now = ctx.clock.now()
                row = ReferralCode(code=code, therapist_id=principal.user_id, created_at=now, revoked_at=None, uses=0)
                session.add(row)
                record_audit(session, at=now, actor_id=principal.user_id, action="referral_code.created",
                             subject_type="referral_code", subject_id=code)
            return row
        except IntegrityError:
            continue  # another process took the same code between our check and our insert
    raise Conflict("could not find a free code; try again", code="conflict")


async def list_codes(ctx: AccountsContext, principal: Principal) -> list[ReferralCode]:
    """The therapist's own codes, newest first, revoked ones included."""
    async with ctx.db.session() as session:
        rows = await session.scalars(
            select(ReferralCode).where(ReferralCode.therapist_id == principal.user_id)
            .order_by(ReferralCode.created_at.desc(), ReferralCode.code)
        )
        return list(rows.all())


async def revoke_code(ctx: AccountsContext, principal: Principal, code: str) -> ReferralCode:
    """Stop a code of one's own from working; someone else's code is `not_found`. Revoking twice changes nothing."""
    code = normalise(code)
    if not code or len(code) > MAX_CODE_LENGTH:
        raise NotFound("there is no such code")
    async with ctx.db.transaction() as session:
        row = await session.get(ReferralCode, code, with_for_update=True)
        if row is None or row.therapist_id != principal.user_id:
            raise NotFound("there is no such code")
        if row.revoked_at is None:
            now = ctx.clock.now()
            row.revoked_at = now
            record_audit(session, at=now, actor_id=principal.user_id, action="referral_code.revoked",
                         subject_type="referral_code", subject_id=row.code, fields=["revoked_at"])
        return row
