"""Optional DKIM signing with dkimpy: RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

The signature covers the headers receivers and RFC 8058 care about (From, To,
Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post, ...) and
the body. The key is checked once when the campaign loads: readable, of the
configured algorithm, not readable by every user on the machine.
"""

from __future__ import annotations

import base64
import stat
from dataclasses import dataclass, field
from pathlib import Path

import dkim

from campaign_tool.errors import ConfigError
from campaign_tool.findings import Finding, Severity

SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to",
                  b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version",
                  b"content-type")
"""Headers the signature covers. Listed headers that a message lacks are signed
as absent, so nobody can add them later without breaking the signature."""


@dataclass
class DkimSigner:
    """Signs finished messages; built by :func:`load_signer`."""

    domain: str
    selector: str
    algorithm: str
    key: bytes
    warnings: list[Finding] = field(default_factory=list)

    def sign(self, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header in front."""
        signature = dkim.sign(message, self.selector.encode("ascii"),
                              self.domain.encode("ascii"), self.key,
                              canonicalize=(b"relaxed", b"relaxed"),
                              signature_algorithm=self.algorithm.encode("ascii"),
                              include_headers=list(SIGNED_HEADERS), linesep=b"\r\n")
        return bytes(signature) + message


def load_signer(*, domain: str, selector: str, key_file: Path, algorithm: str,
                config_file: Path) -> DkimSigner:
    """Read and check the key; ConfigError names the file and what is wrong."""
    def fail(reason: str) -> ConfigError:
        finding = Finding("dkim-key", reason, file=key_file)
        return ConfigError(f"{config_file}: key 'dkim.key_file': {key_file}: {reason}",
                           findings=[finding])

    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
        key = key_file.read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as error:
        raise fail(f"cannot read it: {error.strerror}") from None
    if mode & stat.S_IROTH:
        raise fail(f"readable by every user (mode {mode:04o}); run `chmod 600 {key_file}`")
    warnings = []
    if mode & stat.S_IRGRP:
        warnings.append(Finding("dkim-key-permissions",
                                f"the DKIM key is readable by its group (mode {mode:04o}); "
                                "0600 is safer", file=key_file, severity=Severity.WARNING))
    is_pem = b"-----BEGIN" in key
    if algorithm == "rsa-sha256":
        if not is_pem:
            raise fail("algorithm is rsa-sha256 but this is not a PEM RSA private key")
        try:
            parsed = dkim.crypto.parse_pem_private_key(key)
        except (dkim.crypto.UnparsableKeyError, ValueError) as error:
            raise fail(f"not a usable RSA private key ({error})") from None
        bits = parsed["modulus"].bit_length()
        if bits < 1024:
            raise fail(f"an RSA key of {bits} bits is too short (verifiers need 1024+)")
        if bits < 2048:
            warnings.append(Finding("dkim-key-size", f"an RSA key of {bits} bits is weak; "
                                    "use 2048", file=key_file, severity=Severity.WARNING))
    else:
        if is_pem:
            raise fail("algorithm is ed25519-sha256 but this is a PEM key (RSA?); an "
                       "Ed25519 DKIM key is one line of base64, as dknewkey writes it")
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise fail("not an Ed25519 private key (expected 32 bytes in base64)")
    signer = DkimSigner(domain=domain, selector=selector, algorithm=algorithm,
                        key=key.strip() if not is_pem else key, warnings=warnings)
    try:
        signer.sign(b"From: a@b.test\r\nTo: c@d.test\r\nSubject: probe\r\n\r\nprobe\r\n")
    except dkim.DKIMException as error:
        raise fail(f"dkimpy cannot sign with it: {error}") from None
    return signer

