"""The signed-in user's own account details, a therapist's availability and profile picture.

Every change is audited with the names of the fields that changed, never their values.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import undefer

from accounts import validation as v
from accounts.context import AccountsContext
from accounts.models import ApplicationStatus, TherapistProfile, User
from accounts.pictures import check_content_type, normalise_picture
from accounts.principal import Principal
from core.audit import record_audit
from core.errors import Forbidden, Invalid, NotFound
from core.validation import only_fields, require_mapping

ACCOUNT_FIELDS = {"display_name"}
THERAPIST_PROFILE_FIELDS = {"bio", "expertise", "rate_pence_per_minute", "phone"}


def editable_fields(principal: Principal) -> set[str]:
    """What this user may change on their own account: the display name, plus the public profile for therapists."""
    return ACCOUNT_FIELDS | (THERAPIST_PROFILE_FIELDS if principal.is_therapist else set())


async def update_account(ctx: AccountsContext, principal: Principal, data: Mapping[str, Any]) -> User:
    """The account page's "Save changes": a partial update; fields left out stay as they are."""
    data = require_mapping(data)
    only_fields(data, editable_fields(principal))
    account = {"display_name": v.display_name(data)} if "display_name" in data else {}
    profile = v.therapist_profile(data, partial=True) if principal.is_therapist else {}
    async with ctx.db.transaction() as session:
        user = await session.get(User, principal.user_id, with_for_update=True)
        if user is None or (profile and user.therapist is None):
            raise NotFound("this account does not exist any more")
        changed = _apply(user, account) + (_apply(user.therapist, profile) if profile else [])
        if changed:
            now = ctx.clock.now()
            user.updated_at = now
            record_audit(session, at=now, actor_id=user.id, action="account.updated", subject_type="user",
                         subject_id=user.id, fields=sorted(changed))
        return user


def _apply(row: object, values: Mapping[str, Any]) -> list[str]:
    """Set the values that differ; the names of those that changed."""
    changed = []
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed


async def set_availability(ctx: AccountsContext, principal: Principal, data: Mapping[str, Any]) -> bool:
    """Go available (or not) for quick-connect requests; only an approved therapist may, checked again here."""
    data = require_mapping(data)
    only_fields(data, {"available"})
    available = v.boolean(data, "available")
    async with ctx.db.transaction() as session:
        profile = await session.get(TherapistProfile, principal.user_id, with_for_update=True)
        if profile is None:
            raise Forbidden("this needs a therapist account", code="forbidden")
        if profile.status is not ApplicationStatus.approved:
            raise Forbidden("your therapist application has not been approved yet", code="not_approved")
        if profile.available != available:
            profile.available = available
            record_audit(session, at=ctx.clock.now(), actor_id=principal.user_id, action="therapist.availability_changed",
                         subject_type="user", subject_id=principal.user_id, fields=["available"])
        return available


async def set_picture(ctx: AccountsContext, principal: Principal, raw: bytes, content_type: str) -> User:
    """Replace the therapist's picture with a clean, downscaled JPEG of `raw` (decoded off the event loop)."""
    check_content_type(content_type)
    if not raw:
        raise Invalid("the picture is empty", code="invalid_image")
    loop = asyncio.get_running_loop()
    picture = await loop.run_in_executor(None, normalise_picture, raw, ctx.settings.picture_max_side)
    async with ctx.db.transaction() as session:
        profile = await session.get(TherapistProfile, principal.user_id, with_for_update=True)
        user = await session.get(User, principal.user_id)
        if profile is None or user is None:
            raise Forbidden("this needs a therapist account", code="forbidden")
        profile.picture = picture.data
        profile.picture_type = picture.content_type
        profile.picture_version += 1
        user.updated_at = ctx.clock.now()
        record_audit(session, at=ctx.clock.now(), actor_id=user.id, action="account.updated", subject_type="user",
                     subject_id=user.id, fields=["picture"])
        return user


async def delete_picture(ctx: AccountsContext, principal: Principal) -> User:
    """Remove the therapist's picture (nothing happens when there is none)."""
    async with ctx.db.transaction() as session:
        profile = await session.get(TherapistProfile, principal.user_id, with_for_update=True)
        user = await session.get(User, principal.user_id)
        if profile is None or user is None:
            raise Forbidden("this needs a therapist account", code="forbidden")
        if profile.picture_type is not None:
            profile.picture = None
            profile.picture_type = None
            profile.picture_version += 1
            user.updated_at = ctx.clock.now()
            record_audit(session, at=ctx.clock.now(), actor_id=user.id, action="account.updated", subject_type="user",
                         subject_id=user.id, fields=["picture"])
        return user


def can_see_picture(principal: Principal, profile: TherapistProfile) -> bool:
    """Anyone signed in sees an approved therapist's picture; only the therapist and admins see it before approval."""
    return profile.status is ApplicationStatus.approved or principal.is_admin or principal.user_id == profile.user_id


async def picture_of(ctx: AccountsContext, principal: Principal, therapist_id: int) -> tuple[bytes, str, int]:
    """The therapist's picture as (bytes, content type, version); `NotFound` when there is none or it is not visible."""
    async with ctx.db.session() as session:
        profile = await session.scalar(
            select(TherapistProfile).where(TherapistProfile.user_id == therapist_id).options(undefer(TherapistProfile.picture))
        )
        if profile is None or profile.picture is None or profile.picture_type is None or not can_see_picture(principal, profile):
            raise NotFound("there is no such picture")
        return profile.picture, profile.picture_type, profile.picture_version
