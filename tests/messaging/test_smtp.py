"""The SMTP e-mail adapter against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
from aiosmtpd.controller import Controller

from conftest import Users, free_port, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


async def test_registration_mail_goes_out_over_smtp(make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    running = await start_server(
        make_settings(email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port, email_from="care@therapy.example"),
        clock=clock,
    )
    try:
        client = await Users(running, http).client()
        await wait_for(lambda: inbox.messages, timeout=10)
        [envelope] = inbox.messages
        assert envelope.mail_from == "care@therapy.example"
        assert envelope.rcpt_tos == [client.email]
        content = envelope.content.decode()
        assert "Subject: Confirm your e-mail address" in content
        assert "/verify-email#token=" in content
    finally:
        await running.runner.cleanup()
        controller.stop()
