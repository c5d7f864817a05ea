"""Who is asking: the authenticated user behind a token, as every handler sees them."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import ApplicationStatus, Role, User


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: Role
    therapist_status: ApplicationStatus | None = None
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def is_client(self) -> bool:
        return self.role is Role.client

    @property
    def is_therapist(self) -> bool:
        return self.role is Role.therapist

    @property
    def is_approved_therapist(self) -> bool:
        return self.role is Role.therapist and self.therapist_status is ApplicationStatus.approved

    @classmethod
    def of(cls, user: User, token_id: int | None = None) -> "Principal":
        status = user.therapist.status if user.therapist is not None else None
        return cls(user_id=user.id, role=user.role, therapist_status=status, token_id=token_id)
