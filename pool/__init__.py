"""Quick-connect pool: request state machine, the atomic first-accept claim, therapist notifications (dashboard, SMS)."""
