"""SMTP delivery with aiosmtplib: one reused connection per session, one attempt a call.

Each transaction is ``MAIL FROM`` / one ``RCPT TO`` / ``DATA``, never more than
one recipient. What an attempt's failure means is decided here, once:

* a 4xx reply, or a disconnect or timeout *before* the message data, is
  transient (the message was certainly not accepted; retry later);
* a 5xx reply is permanent; a refused RCPT is that recipient's failure, and the
  connection stays usable after RSET;
* a disconnect, timeout or cancellation once the data is on its way leaves the
  outcome **unknown**: the server may have taken it, so it is never retried
  automatically;
* a connection that timed out, broke or was cancelled mid-transaction is
  closed, never reused (a desynchronised connection can pair one recipient's
  reply with another's message).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from campaign_tool.config import SmtpTransport as SmtpSettings
from campaign_tool.errors import TransportError
from campaign_tool.plan import Envelope
from campaign_tool.transports import BeforeData, DeliveryResult, DeliveryState, Stage

_QUIT_TIMEOUT = 5.0


class SmtpTransport:
    """Delivers through one SMTP server; each session owns one reused connection."""

    real = True

    def __init__(self, settings: SmtpSettings, *, password: str | None,
                 messages_per_connection: int) -> None:
        self.settings = settings
        self.password = password
        self.messages_per_connection = messages_per_connection
        port = settings.resolved_port
        security = {"starttls": "STARTTLS", "tls": "TLS", "none": "no encryption"}
        self.description = f"smtp {settings.host}:{port} ({security[settings.security]})"
        # aiosmtplib calls socket.getfqdn() in a thread for every connection
        # unless told the name: ask once (FACTS.md: 1,440 -> 1,040 msg/s).
        self.local_hostname = settings.local_hostname or socket.getfqdn() or "localhost"

    def client(self) -> aiosmtplib.SMTP:
        """A configured, not yet connected aiosmtplib client."""
        settings = self.settings
        return aiosmtplib.SMTP(
            hostname=settings.host, port=settings.resolved_port,
            username=settings.username, password=self.password,
            local_hostname=self.local_hostname, timeout=settings.timeout,
            use_tls=settings.security == "tls",
            # start_tls=None would silently stay in plaintext when the server does
            # not offer STARTTLS; True fails instead.
            start_tls=settings.security == "starttls",
            validate_certs=settings.verify_certificates,
            cert_bundle=str(settings.ca_file) if settings.ca_file else None)

    async def open(self) -> None:
        """Connect once (TLS, EHLO, login) and QUIT, so a wrong setting fails early."""
        client = self.client()
        try:
            await client.connect()
        except SMTPAuthenticationError as error:
            raise TransportError(f"{self.description}: login refused: {error.code} "
                                 f"{error.message}") from None
        except (SMTPException, OSError) as error:
            raise TransportError(f"{self.description}: cannot connect: "
                                 f"{_describe(error)}") from None
        with contextlib.suppress(SMTPException, OSError):
            await client.quit(timeout=_QUIT_TIMEOUT)
        client.close()

    def session(self) -> SmtpSession:
        """A session with its own connection, opened on first use."""
        return SmtpSession(self)

    async def close(self) -> None:
        """Sessions close their own connections."""


class SmtpSession:
    """One connection, reused for up to ``messages_per_connection`` messages."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._client: aiosmtplib.SMTP | None = None
        self._used = 0

    async def _connection(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected and \
                self._used < self._transport.messages_per_connection:
            return client
        await self.close()
        client = self._transport.client()
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()  # learn the extensions (SMTPUTF8) before the first MAIL
        self._client, self._used = client, 0
        return client

    def _drop(self) -> None:
        """Close the connection without a word: its state can't be trusted."""
        if self._client is not None:
            self._client.close()
        self._client = None

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """After a refused command the connection is fine once RSET clears it."""
        if not client.is_connected:
            self._client = None
            return
        try:
            await client.rset()
        except (SMTPException, OSError):
            self._drop()

    async def attempt(self, envelope: Envelope, before_data: BeforeData) -> DeliveryResult:
        """One transaction: MAIL, one RCPT, then (after ``before_data``) DATA."""
        try:
            client = await self._connection()
        except SMTPAuthenticationError as error:
            self._drop()
            return DeliveryResult(DeliveryState.FAILED, Stage.CONNECT, error.code,
                                  f"login refused: {error.message}", fatal=True)
        except (SMTPException, OSError) as error:
            self._drop()
            return DeliveryResult(DeliveryState.FAILED, Stage.CONNECT,
                                  getattr(error, "code", None), _describe(error),
                                  transient=True)
        except BaseException:
            self._drop()
            raise
        self._used += 1
        stage = Stage.MAIL
        # Each command is bounded by asyncio.timeout() (a timer handle) rather than
        # aiosmtplib's per-command wait_for (a new Task per reply, 4 a message).
        limit = self._transport.settings.timeout
        try:
            options, encoding = [], "ascii"
            if envelope.smtputf8:
                if not client.supports_extension("smtputf8"):
                    await self._reset(client)
                    return DeliveryResult(
                        DeliveryState.FAILED, Stage.MAIL, None,
                        "the server does not offer SMTPUTF8, which this address needs")
                options, encoding = ["SMTPUTF8"], "utf-8"
            async with asyncio.timeout(limit):
                await client.mail(envelope.sender, options=options, encoding=encoding,
                                  timeout=None)
            stage = Stage.RCPT
            async with asyncio.timeout(limit):
                await client.rcpt(envelope.recipient, encoding=encoding, timeout=None)
        except SMTPResponseException as error:
            await self._reset(client)
            return _refused(stage, error)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as error:
            self._drop()
            return DeliveryResult(DeliveryState.FAILED, stage, None, _describe(error),
                                  transient=True)
        except BaseException:
            self._drop()
            raise
        try:
            await before_data()
        except BaseException:
            self._drop()  # a transaction is open: never leave it half-done for reuse
            raise
        try:
            async with asyncio.timeout(limit):
                response = await client.data(envelope.data, timeout=None)
        except SMTPResponseException as error:
            await self._reset(client)
            return _refused(Stage.DATA, error)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as error:
            self._drop()
            return DeliveryResult(DeliveryState.UNKNOWN, Stage.DATA, None,
                                  f"{_describe(error)} during DATA: the server may or may "
                                  "not have accepted the message")
        except BaseException:
            self._drop()
            raise
        return DeliveryResult(DeliveryState.DELIVERED, Stage.DONE, response.code,
                              response.message)

    async def close(self) -> None:
        """QUIT politely (briefly); close regardless."""
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected:
            with contextlib.suppress(SMTPException, OSError, asyncio.TimeoutError):
                await client.quit(timeout=_QUIT_TIMEOUT)
        client.close()


def _refused(stage: Stage, error: SMTPResponseException) -> DeliveryResult:
    code = error.code
    transient = 400 <= code < 500
    return DeliveryResult(DeliveryState.FAILED, stage, code, error.message.strip(),
                          transient=transient)


def _describe(error: BaseException) -> str:
    if isinstance(error, SMTPResponseException):
        return f"{error.code} {error.message}"
    if type(error) is TimeoutError:
        return "timed out waiting for the server"
    text = str(error) or type(error).__name__
    return text if isinstance(error, SMTPException) else f"{type(error).__name__}: {text}"
