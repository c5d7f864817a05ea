"""Test and demo calls: an admin opens a call between a therapist and a demo client, so therapists can get to know
the system without a real client."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any, Mapping

from sqlalchemy import select

from accounts.context import AccountsContext
from accounts.models import ApplicationStatus, ClientProfile, Role, TherapistProfile, User
from accounts.passwords import hash_password
from accounts.principal import Principal
from accounts.tokens import issue_auth_token
from calls.models import CallKind
from calls.opening import call_summary, open_call
from core.audit import record_audit
from core.errors import Invalid, NotFound
from core.validation import boolean, integer, only_fields


async def open_test_call(ctx: AccountsContext, admin: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """A `test` call for an approved therapist with their own demo client; returns the call and the demo client's token."""
    only_fields(data, {"therapist_id", "recording_consent"})
    therapist_id = integer(data, "therapist_id", minimum=1, maximum=2**62)
    recording = boolean(data, "recording_consent", required=False)
    now = ctx.clock.now()
    email = f"demo-client-{therapist_id}@{ctx.settings.demo_client_email_domain}"
    password_hash = await hash_password(secrets.token_urlsafe(24))
    async with ctx.db.transaction() as session:
        profile = await session.get(TherapistProfile, therapist_id)
        if profile is None:
            raise NotFound("there is no such therapist", code="not_found")
        if profile.status is not ApplicationStatus.approved:
            raise Invalid("the therapist must be approved first", code="not_approved")
        demo = await session.scalar(select(User).where(User.email == email))
        if demo is None:
            demo = User(email=email, password_hash=password_hash, role=Role.client, display_name="Demo client",
                        created_at=now, updated_at=now, email_verified_at=now, therapist=None,
                        client=ClientProfile(date_of_birth=date(1990, 1, 1)))
            session.add(demo)
            await session.flush()
        call = open_call(session, now=now, kind=CallKind.test, therapist_id=therapist_id, client_id=demo.id,
                         terms_version=ctx.settings.terms_version, recording_consent=recording)
        await session.flush()
        token, _ = issue_auth_token(session, ctx.settings.secret_key, demo.id, now, ctx.settings.token_ttl_s)
        record_audit(session, at=now, actor_id=admin.user_id, action="call.test_opened", subject_type="call",
                     subject_id=call.id)
    return {"call": call_summary(call), "demo_client": {"id": demo.id, "token": token}}
