"""Secret keys: from an environment variable, or a key file made with mode 0600.

Keys never live in the campaign file. A key file that other users can read is
refused, because whoever holds the key can forge unsubscribe tokens or undo the
audit log's pseudonyms.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from campaign_tool.errors import ConfigError

_MIN_KEY_BYTES = 16


def load_key(*, env_var: str, key_file: Path | None, create: bool, purpose: str) -> bytes | None:
    """The key for ``purpose``, or None when neither source has one.

    The environment variable wins. Otherwise ``key_file`` is read, or, when
    ``create`` is true and it does not exist, created with 32 random bytes
    (hex) and mode 0600. Raises :class:`ConfigError` for a weak or exposed key.
    """
    value = os.environ.get(env_var)
    if value:
        if len(value.encode()) < _MIN_KEY_BYTES:
            raise ConfigError(f"${env_var} ({purpose} key) is shorter than "
                              f"{_MIN_KEY_BYTES} bytes; use e.g. `openssl rand -hex 32`")
        return value.encode()
    if key_file is None:
        return None
    if not key_file.exists():
        if not create:
            return None
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    mode = key_file.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{key_file}: the {purpose} key file is readable by other users "
                          f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {key_file}`")
    key = key_file.read_text(encoding="utf-8").strip().encode()
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigError(f"{key_file}: the {purpose} key is shorter than {_MIN_KEY_BYTES} bytes")
    return key
