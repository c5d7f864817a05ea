"""Delivery adapters behind one interface: `LogSender` (the embedded default) and `SmtpSender` (e-mail)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol

from core.logging import get_logger
from messaging.outbox import OutgoingMessage

log = get_logger("messaging")


class Sender(Protocol):
    """Delivers one message or raises."""

    async def send(self, message: OutgoingMessage) -> None: ...


class LogSender:
    """Records that a message would go out; never logs the body, which may hold a secret link."""

    async def send(self, message: OutgoingMessage) -> None:
        log.info("message.delivered_to_log", outbox_id=message.id, channel=message.channel.value, kind=message.kind)


class SmtpSender:
    """Sends e-mail through an SMTP server (blocking smtplib in a worker thread)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    def _send_sync(self, message: OutgoingMessage) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(mail)

    async def send(self, message: OutgoingMessage) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._send_sync, message)
