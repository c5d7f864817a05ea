"""Socket.IO event handlers, one module per domain; importing this package registers them all in `EVENTS`."""

from signalling.events import calls, pool, session  # noqa: F401
