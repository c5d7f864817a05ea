"""Who may call what: every HTTP route and Socket.IO event declares one `Access` level, checked in one place.

The authorisation tests enumerate the registered routes and events and their levels, so a new route or event
without a declared level (or without a test of it) fails the suite.
"""

from __future__ import annotations

import enum

from accounts.models import Role
from accounts.policy import require_admin, require_approved_therapist, require_role
from accounts.principal import Principal


class Access(str, enum.Enum):
    public = "public"                          # anyone, signed in or not
    user = "user"                              # any signed-in user
    client = "client"
    therapist = "therapist"                    # a therapist, approved or still pending
    approved_therapist = "approved_therapist"
    admin = "admin"
    operator = "operator"                      # the metrics token


def check(access: Access, principal: Principal) -> None:
    """Raise `Forbidden` when the principal does not meet `access` (signed-in levels only)."""
    if access is Access.client:
        require_role(principal, Role.client)
    elif access is Access.therapist:
        require_role(principal, Role.therapist)
    elif access is Access.approved_therapist:
        require_approved_therapist(principal)
    elif access is Access.admin:
        require_admin(principal)
