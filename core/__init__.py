"""Shared infrastructure at the bottom of the stack: settings, database engine, errors, encryption, clock, logging.

Domains (`accounts`, `pool`, `billing`, ...) import from here; nothing here imports a domain or `signalling`.
"""
