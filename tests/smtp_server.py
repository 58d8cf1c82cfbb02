"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a free port, its own thread.

The handler records every transaction the server accepted (envelope sender,
recipients, data, arrival time) and can be told, per recipient, how to
misbehave on successive attempts: reply 4xx/5xx at RCPT or DATA, close the
connection, or answer too slowly.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float


@dataclass
class RecordingHandler:
    """Accepts everything unless a fault is scripted for the recipient.

    ``faults[address]`` is a queue of actions, one consumed per transaction
    for that address: ``"rcpt:450"``, ``"rcpt:550"``, ``"rcpt:close"``,
    ``"rcpt:slow"``, ``"data:451"``, ``"data:550"``, ``"data:421"``,
    ``"data:close"`` (close without a reply, before keeping the message),
    ``"data:lost"`` (keep the message, then close without a reply: the
    client cannot know), ``"data:slow"`` (keep it, answer too late), ``"ok"``.
    """

    faults: dict[str, deque[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    slow_seconds: float = 3.0
    data_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0

    def script(self, address: str, *actions: str) -> None:
        """Queue actions for successive transactions to ``address``."""
        self.faults[address.lower()] = deque(actions)

    def _next(self, address: str, stage: str) -> str | None:
        queue = self.faults.get(address.lower())
        if not queue:
            return None
        if not queue[0].startswith(stage + ":") and queue[0] != "ok":
            return None
        return queue.popleft()

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope, address: str,
            rcpt_options: list[str]) -> str:
        action = self._next(address, "rcpt")
        if action == "rcpt:close":
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        if action == "rcpt:slow":
            await asyncio.sleep(self.slow_seconds)
        elif action and action.startswith("rcpt:"):
            code = action.split(":")[1]
            return f"{code} {'try again later' if code[0] == '4' else 'no such user'} <{address}>"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        action = None
        for address in envelope.rcpt_tos:
            action = self._next(address, "data") or action
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if action == "data:close":
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        code = action.split(":")[1] if action and action.startswith("data:") else ""
        if code.isdigit():
            return f"{code} {'try later' if code[0] == '4' else 'rejected'}"
        self._record(envelope)
        if action == "data:lost":
            assert server.transport is not None
            server.transport.close()
            return "250 OK (never seen by the client)"
        if action == "data:slow":
            await asyncio.sleep(self.slow_seconds)
        return "250 OK queued"

    def _record(self, envelope: Envelope) -> None:
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        with self.lock:
            self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos),
                                          content, time.monotonic()))

    def deliveries(self) -> Counter[str]:
        """How many messages each recipient received (lower-cased)."""
        with self.lock:
            return Counter(r.lower() for message in self.received for r in message.rcpt_tos)


class SmtpServer:
    """Runs aiosmtpd in a background thread on 127.0.0.1 and an OS-chosen port."""

    def __init__(self, handler: RecordingHandler, *, tls_context: ssl.SSLContext | None = None,
                 implicit_tls: bool = False, require_starttls: bool = False,
                 users: dict[str, str] | None = None, timeout: float = 30) -> None:
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = 0
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._require_starttls = require_starttls
        self._users = users
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def _protocol(self) -> SMTP:
        handler = self.handler
        with handler.lock:
            handler.connections += 1
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True, "decode_data": False,
                                  "hostname": "test-server", "timeout": self._timeout}
        if self._tls_context is not None and not self._implicit_tls:
            kwargs.update(tls_context=self._tls_context,
                          require_starttls=self._require_starttls)
        if self._users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=False)
        return SMTP(handler, **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert self._users is not None
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self._users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpServer:
        self._thread.start()
        ssl_context = self._tls_context if self._implicit_tls else None
        future = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(self._protocol, host=self.host, port=0, ssl=ssl_context),
            self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recipients_of(messages: Iterable[Received]) -> list[str]:
    """Every RCPT TO the server accepted, in arrival order."""
    return [r for message in messages for r in message.rcpt_tos]
