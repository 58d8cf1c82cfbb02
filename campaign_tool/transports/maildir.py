"""The embedded default transport: a local Maildir, one file per message.

Needs no server, so a first ``campaign send`` works on a fresh machine and
shows real files. Each message is written to ``tmp/``, flushed to disk, then
renamed into ``new/`` as the Maildir specification requires, so a reader never
sees half a message. Files hold the exact bytes SMTP would carry (CRLF lines).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

from campaign_tool.errors import TransportError
from campaign_tool.plan import Envelope
from campaign_tool.transports import BeforeData, DeliveryResult, DeliveryState, Stage


class MaildirTransport:
    """Delivers into ``path`` (``tmp/``, ``new/``, ``cur/`` are created, mode 0700)."""

    real = False

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.description = f"maildir {path}"
        self._counter = itertools.count(1)
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._pid = os.getpid()

    async def open(self) -> None:
        """Create the Maildir folders if needed."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise TransportError(f"{self.path}: cannot create the Maildir: "
                                 f"{error.strerror}") from None

    def session(self) -> MaildirTransport:
        """Files need no connection: the transport is its own session."""
        return self

    async def attempt(self, envelope: Envelope, before_data: BeforeData) -> DeliveryResult:
        """Write one message file atomically into ``new/``."""
        now = time.time()
        name = (f"{int(now)}.M{int(now % 1 * 1_000_000)}P{self._pid}"
                f"Q{next(self._counter)}.{self._host},S={len(envelope.data)}")
        temporary = self.path / "tmp" / name
        await before_data()
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(envelope.data)
                while view:
                    view = view[os.write(descriptor, view):]
                if self.fsync:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.rename(temporary, self.path / "new" / name)
        except OSError as error:
            # Nothing reached new/, so the recipient has nothing: a definite failure.
            return DeliveryResult(DeliveryState.FAILED, Stage.DATA,
                                  text=f"cannot write: {error.strerror}", transient=True)
        return DeliveryResult(DeliveryState.DELIVERED, text=f"new/{name}")

    async def close(self) -> None:
        """Flush the ``new/`` directory entry so the renames survive a power cut."""
        if not self.fsync:
            return
        try:
            descriptor = os.open(self.path / "new", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
