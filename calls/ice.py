"""The ICE server list handed to a call's members: STUN, and TURN with short-lived credentials (coturn REST API)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

from core.settings import Settings


def turn_credentials(secret: str, user_id: int, call_id: int, now: datetime, ttl_s: int) -> tuple[str, str]:
    """coturn's `use-auth-secret` scheme: username `<expiry>:<id>`, password base64(HMAC-SHA1(secret, username))."""
    username = f"{int(now.timestamp()) + ttl_s}:c{call_id}u{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Settings, user_id: int, call_id: int, now: datetime) -> dict[str, Any]:
    """`{"ice_servers": [...], "ice_transport_policy": "all"|"relay"}` for RTCPeerConnection."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, user_id, call_id, now, settings.turn_ttl_s)
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return {"ice_servers": servers, "ice_transport_policy": "relay" if settings.ice_relay_only else "all"}
