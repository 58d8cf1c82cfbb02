"""The spool: every checked message of a send, on disk, in plan order.

``send`` renders and checks every message in its preflight anyway; keeping the
resulting bytes means the sending phase only streams them to the server. That
is faster (rendering and checking do not compete with the SMTP client for the
one core a Python process has), and it means what is sent is, byte for byte,
what was checked.

The spool is an unlinked temporary file (mode 0600) beside the audit log: it
holds personal data, so it must not outlive the process, and the kernel frees
an unlinked file even after ``kill -9``. Memory stays flat: items are written
and read one at a time. Disk use is about the size of the messages (4 GB for a
million 4 KB messages).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from campaign_tool.plan import Envelope, Fate, Skipped

SpoolItem = Envelope | Skipped


class Spool:
    """Append items during the preflight, then read them back once, in order."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # TemporaryFile is unlinked at once on POSIX (O_TMPFILE where supported).
        # Closed by close(): the spool lives across the preflight and the send.
        self._file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            dir=directory, prefix=".spool-")
        os.fchmod(self._file.fileno(), 0o600)
        self.count = 0
        self.messages = 0

    def add(self, item: SpoolItem) -> None:
        """Append one planned item."""
        # Plain tuples unpickle about twice as fast as the dataclasses. One
        # pickle per item: a shared unpickler would memoise every item read.
        if isinstance(item, Envelope):
            self.messages += 1
            record: tuple[object, ...] = (item.row, item.line, item.sender, item.recipient,
                                          item.address_key, item.data, item.message_id,
                                          item.smtputf8)
        else:
            record = (item.row, item.line, item.address_key, item.fate.value,
                      item.duplicate_of)
        pickle.dump(record, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def items(self) -> Iterator[SpoolItem]:
        """Every item, in the order added (reading from the start each time)."""
        self._file.flush()
        self._file.seek(0)
        for _ in range(self.count):
            # Safe: this process wrote the file, and it is unlinked and mode 0600.
            fields = pickle.load(self._file)  # noqa: S301
            if len(fields) == 8:
                yield Envelope(*fields)
            else:
                row, line, key, fate, duplicate_of = fields
                yield Skipped(row, line, key, Fate(fate), duplicate_of)

    def close(self) -> None:
        """Release the file (its data is gone with it)."""
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
