"""Calls: a 1:1 session between a therapist and a client, opened by the pool (quick connect), a booking or an admin
(test call); its membership, consent to recording, and lifecycle. It does not depend on the pool."""
