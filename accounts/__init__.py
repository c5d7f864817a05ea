"""Accounts: users and roles, sign-in tokens, therapist applications and profiles, client profiles,
guardian consent for minors, referral codes. Pure domain code: no aiohttp or socketio here."""
