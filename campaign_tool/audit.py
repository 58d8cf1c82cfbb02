"""The audit log: append-only, hash-chained JSON Lines, and the resume state in it.

One file per campaign records every recipient's fate. It is what makes a re-run
after any crash skip everyone already served:

* a recipient is marked ``sending`` *durably* (fsync) before its message data
  goes out, and ``delivered`` only after the server's 250; a recipient whose
  last entry is ``sending`` has an unknown outcome and is not re-sent unless
  asked;
* fsyncs are batched (group commit): every waiting worker's entry is made
  durable by the same fsync, so the log is not the bottleneck;
* addresses are pseudonymised with HMAC-SHA256 under a key kept outside the
  log, unless the campaign asks for cleartext;
* the file is created with mode 0600, locked against a second writer, and each
  entry carries the SHA-256 of the previous one, so an edit, insertion or
  deletion anywhere breaks the chain (``campaign audit verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaign_tool.errors import AuditLogError

LOG_VERSION = 1
GENESIS = "0" * 64
_FLUSH_INTERVAL = 0.2
_SLOW_FSYNC = 0.002  # seconds: slower disks get their fsyncs off the event loop
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


class RecipientState(enum.IntEnum):
    """What the log says about one address: its latest state."""

    DELIVERED = 1
    FAILED_PERMANENT = 2
    FAILED_TRANSIENT = 3
    UNKNOWN = 4
    SUPPRESSED = 5
    OPEN = 6
    """An attempt certainly did not deliver (a 4xx, no connection, a stop
    before DATA) and nothing final followed: still to be sent."""


def recipient_state(entry: dict[str, Any]) -> RecipientState | None:
    """What an entry says about its recipient, or None if it says nothing.

    The one reading of the log's events, shared by resume and ``report``.
    """
    event = entry.get("ev")
    if event == "delivered":
        return RecipientState.DELIVERED
    if event in ("sending", "unknown"):  # "sending" with no answer after it: unknown
        return RecipientState.UNKNOWN
    if event == "failed":
        return (RecipientState.FAILED_PERMANENT if entry.get("permanent")
                else RecipientState.FAILED_TRANSIENT)
    if event == "suppressed":
        return RecipientState.SUPPRESSED
    if event in ("retry", "deferred"):
        return RecipientState.OPEN
    return None


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON, without its own ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def redact(text: str) -> str:
    """Server replies often echo the address (``550 5.1.1 <a@x>``): hide it."""
    return _ADDRESS_IN_TEXT.sub("<redacted>", text)


def now_iso() -> str:
    """The current UTC time, to the millisecond, as the log writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_id(key: bytes) -> str:
    """A fingerprint of the pseudonym key, stored so a changed key is noticed."""
    return hmac.new(key, b"campaign_tool key id", hashlib.sha256).hexdigest()[:16]


@dataclass
class History:
    """What earlier runs recorded: enough to resume without double-sending.

    ``states`` maps the first 64 bits of each pseudonym to its latest state:
    about 100 bytes an address, the compact per-recipient index resume needs.
    """

    entries: int = 0
    campaign: str | None = None
    key_id: str | None = None
    cleartext: bool | None = None
    fingerprint: dict[str, str] | None = None
    canary_pending: bool = False
    canary_sent: int = 0
    runs: int = 0
    states: dict[int, RecipientState] = field(default_factory=dict)

    @property
    def served(self) -> int:
        """Recipients an earlier run sent to, or tried to (any outcome)."""
        return sum(state not in (RecipientState.SUPPRESSED, RecipientState.OPEN)
                   for state in self.states.values())


@dataclass
class ChainProblem:
    """Where and how the hash chain is broken."""

    line: int
    reason: str


def read_entries(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, bytes]]:
    """(line number, parsed entry or None, raw line) for each line of a log."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                yield number, None, raw
                continue
            yield number, entry if isinstance(entry, dict) else None, raw


def verify_chain(path: Path) -> tuple[int, list[ChainProblem], bool]:
    """Check every entry's hash and link. Returns (entries, problems, torn_tail).

    A last line without its newline is a write cut short by a crash, not
    tampering: it is reported as ``torn_tail`` and never counted as an entry.
    """
    problems: list[ChainProblem] = []
    previous = GENESIS
    count = 0
    expected_seq = 1
    torn = False
    size = path.stat().st_size
    position = 0
    for number, entry, raw in read_entries(path):
        position += len(raw)
        if not raw.endswith(b"\n") and position == size:
            torn = True
            break
        if entry is None:
            problems.append(ChainProblem(number, "not a JSON object"))
            continue
        count += 1
        if entry.get("hash") != entry_hash(entry):
            problems.append(ChainProblem(number, "entry was altered (its hash does not match)"))
        if entry.get("prev") != previous:
            problems.append(ChainProblem(number, "chain broken: an entry before it was "
                                                 "removed, inserted or altered"))
        if entry.get("seq") != expected_seq:
            problems.append(ChainProblem(number, f"sequence number {entry.get('seq')} where "
                                                 f"{expected_seq} was expected"))
        previous = str(entry.get("hash"))
        expected_seq = int(entry.get("seq", expected_seq)) + 1 if isinstance(
            entry.get("seq"), int) else expected_seq + 1
    return count, problems, torn


class AuditLog:
    """The open, locked audit log of one campaign, written by one process.

    Use :meth:`open` (which reads the history and recovers a torn tail), then
    ``await start()`` inside the event loop, :meth:`append` entries,
    ``await durable(seq)`` where an entry must be on disk before acting, and
    ``await close()``.
    """

    def __init__(self, path: Path, descriptor: int, *, key: bytes, cleartext: bool,
                 last_hash: str, last_seq: int) -> None:
        self.path = path
        self._fd = descriptor
        self._key = key
        self.cleartext = cleartext
        self._last_hash = last_hash
        self._seq = last_seq
        self._durable_seq = last_seq
        self._buffer: list[bytes] = []
        self._wake: asyncio.Event | None = None
        self._flushed: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._error: BaseException | None = None
        self._fsync_seconds = 0.0

    @classmethod
    def open(cls, path: Path, *, key: bytes, cleartext: bool) -> tuple[AuditLog, History]:
        """Open (or create, mode 0600) and lock the log; read what it holds.

        Raises :class:`AuditLogError` if another process holds it, if its chain
        is broken, or if it was written with another key or for another campaign
        (checked by the caller against the returned history).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            raise AuditLogError(f"{path}: cannot open the audit log: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AuditLogError(f"{path}: another `campaign send` is running this campaign "
                                    "(the audit log is locked); nothing was sent") from None
            raise
        try:
            mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
            if mode & 0o077:
                os.fchmod(descriptor, 0o600)
            history, last_hash, last_seq, torn_bytes = _read_history(path, key)
            log = cls(path, descriptor, key=key, cleartext=cleartext, last_hash=last_hash,
                      last_seq=last_seq)
            if torn_bytes:
                os.ftruncate(descriptor, os.fstat(descriptor).st_size - torn_bytes)
                log.append("recovered", dropped_bytes=torn_bytes,
                           note="a write cut short by a crash was removed")
        except BaseException:
            os.close(descriptor)
            raise
        return log, history

    # -- writing ---------------------------------------------------------

    def pseudonym(self, address_key: str) -> str:
        """The keyed pseudonym of an address: what the log stores instead of it."""
        digest = hmac.new(self._key, address_key.lower().encode(), hashlib.sha256)
        return "h:" + digest.hexdigest()[:32]

    def append(self, event: str, **fields: Any) -> int:
        """Add an entry (in memory until the next flush); returns its sequence number."""
        if self._error is not None:
            raise AuditLogError(f"{self.path}: writing the audit log failed: {self._error}")
        self._seq += 1
        entry: dict[str, Any] = {"seq": self._seq, "t": now_iso(), "ev": event,
                                 **{k: v for k, v in fields.items() if v is not None},
                                 "prev": self._last_hash}
        # Serialised once: the hash covers the canonical form without "hash",
        # which is then appended as the line's last key.
        body = _canonical(entry)
        digest = hashlib.sha256(body).hexdigest()
        self._last_hash = digest
        self._buffer.append(body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n')
        if self._wake is not None and len(self._buffer) >= 512:
            self._wake.set()
        return self._seq

    def recipient_fields(self, address_key: str) -> dict[str, str]:
        """``rcpt`` (and ``addr`` in cleartext mode) for an entry about an address."""
        fields = {"rcpt": self.pseudonym(address_key)}
        if self.cleartext:
            fields["addr"] = address_key
        return fields

    def server_text(self, text: str | None) -> str | None:
        """A server reply as it may be logged (addresses redacted unless cleartext)."""
        if text is None:
            return None
        return text if self.cleartext else redact(text)

    async def start(self) -> None:
        """Start the background group-commit task (call inside the event loop)."""
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()  # replaced by a fresh one after every flush
        self._flusher = asyncio.create_task(self._flush_loop(), name="audit-flush")

    async def durable(self, seq: int) -> None:
        """Return once entry ``seq`` and all before it are on disk (fsync)."""
        if self._durable_seq >= seq:
            return
        if self._flusher is None or self._wake is None or self._flushed is None:
            self._write_and_sync(self._take())
            return
        while self._durable_seq < seq and self._error is None:
            flushed = self._flushed
            self._wake.set()
            await flushed.wait()
        if self._error is not None:
            raise AuditLogError(f"{self.path}: writing the audit log failed: {self._error}")

    async def flush(self) -> None:
        """Make every entry appended so far durable."""
        await self.durable(self._seq)

    async def close(self) -> None:
        """Flush, stop the flusher, unlock and close the file."""
        try:
            if self._flusher is not None:
                await self.flush()
                self._closing = True
                assert self._wake is not None
                self._wake.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher
            else:
                self._write_and_sync(self._take())
        finally:
            self.close_sync()

    def close_sync(self) -> None:
        """Write what is buffered and release the file (no event loop needed)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            pending = self._take()
            if pending[0]:
                self._write_and_sync(pending)
        os.close(self._fd)
        self._fd = -1

    def _take(self) -> tuple[bytes, int]:
        data = b"".join(self._buffer)
        self._buffer.clear()
        return data, self._seq

    def _write_and_sync(self, pending: tuple[bytes, int]) -> None:
        data, upto = pending
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        started = time.perf_counter()
        os.fsync(self._fd)
        # A moving average of fsync time decides where the next one runs.
        self._fsync_seconds = 0.8 * self._fsync_seconds + 0.2 * (time.perf_counter() - started)
        self._durable_seq = max(self._durable_seq, upto)

    async def _flush_loop(self) -> None:
        assert self._wake is not None and self._flushed is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLUSH_INTERVAL):
                    await self._wake.wait()
            self._wake.clear()
            if self._buffer:
                try:
                    # Inline on a fast disk: an fsync costs ~0.2 ms, while a thread
                    # must win the GIL back from a busy loop before it can wake
                    # anyone (up to the 5 ms switch interval), stalling every
                    # connection that waits for the batch. A slow disk would stall
                    # the loop instead, so there the fsync moves to a thread.
                    if self._fsync_seconds > _SLOW_FSYNC:
                        await asyncio.to_thread(self._write_and_sync, self._take())
                    else:
                        self._write_and_sync(self._take())
                except OSError as error:
                    self._error = error
            done, self._flushed = self._flushed, asyncio.Event()
            done.set()
            if self._closing and not self._buffer:
                return


def _read_history(path: Path, key: bytes) -> tuple[History, str, int, int]:
    """Replay a log: the history, last hash, last seq, and bytes of a torn tail."""
    _, problems, torn = verify_chain(path)
    if problems:
        first = problems[0]
        raise AuditLogError(
            f"{path}:{first.line}: the audit log has been tampered with ({first.reason}); "
            "refusing to resume from it. Run `campaign audit verify` for every problem.")
    history = History()
    last_hash, last_seq, torn_bytes = GENESIS, 0, 0
    size = path.stat().st_size
    position = 0
    for _, entry, raw in read_entries(path):
        position += len(raw)
        if torn and position == size and not raw.endswith(b"\n"):
            torn_bytes = len(raw)
            break
        assert entry is not None
        history.entries += 1
        last_hash, last_seq = entry["hash"], entry["seq"]
        _apply(history, entry)
    return history, last_hash, last_seq, torn_bytes


def _apply(history: History, entry: dict[str, Any]) -> None:
    event = entry.get("ev")
    if event == "run":
        history.runs += 1
        history.campaign = history.campaign or entry.get("campaign")
        history.key_id = history.key_id or entry.get("key_id")
        if history.cleartext is None:
            history.cleartext = entry.get("pseudonyms") == "cleartext"
        history.fingerprint = entry.get("fingerprint")
        return
    if event == "canary":
        history.campaign = history.campaign or entry.get("campaign")
        history.key_id = history.key_id or entry.get("key_id")
        history.canary_pending = True
        history.canary_sent += int(entry.get("sent", 0))
        return
    if event == "continue":
        history.canary_pending = False
        return
    rcpt = entry.get("rcpt")
    state = recipient_state(entry)
    if isinstance(rcpt, str) and state is not None:
        history.states[pseudonym_key(rcpt)] = state


def pseudonym_key(pseudonym: str) -> int:
    """The 64-bit index key of a pseudonym (its first 16 hex digits)."""
    return int(pseudonym[2:18], 16)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (for change detection between runs)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()

