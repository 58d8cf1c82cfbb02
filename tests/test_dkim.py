"""DKIM: real signatures, verified by dkimpy against the public key (DNS stubbed)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import nacl.encoding
import nacl.signing
import pytest
from click.testing import Result

from tests.conftest import CampaignFolder, MakeCampaign

Cli = Callable[..., Result]


def _rsa_key(folder: Path, bits: int = 2048) -> tuple[Path, bytes]:
    """A PEM RSA key made by openssl, and its DKIM TXT record."""
    key = folder / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), str(bits)], check=True,
                   capture_output=True)
    key.chmod(0o600)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _ed25519_key(folder: Path) -> tuple[Path, bytes]:
    """An Ed25519 key as dknewkey writes it (base64 of the seed), and its TXT record."""
    signing = nacl.signing.SigningKey.generate()
    key = folder / "dkim.key"
    key.write_bytes(signing.encode(encoder=nacl.encoding.Base64Encoder) + b"\n")
    key.chmod(0o600)
    public = signing.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    return key, b"v=DKIM1; k=ed25519; p=" + public


def _signed_campaign(make_campaign: MakeCampaign, tmp_path: Path, algorithm: str,
                     ) -> tuple[CampaignFolder, bytes]:
    keys = tmp_path / "keys"
    keys.mkdir()
    key, record = _rsa_key(keys) if algorithm == "rsa-sha256" else _ed25519_key(keys)
    folder = make_campaign(dkim={"domain": "sender.test", "selector": "s2026",
                                 "key_file": str(key), "algorithm": algorithm})
    return folder, record


def _dns(record: bytes) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name.rstrip(b".") == b"s2026._domainkey.sender.test" else None
    return lookup


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_every_message_carries_a_verifiable_signature(make_campaign: MakeCampaign, cli: Cli,
                                                      tmp_path: Path, algorithm: str) -> None:
    folder, record = _signed_campaign(make_campaign, tmp_path, algorithm)
    result = cli("send", folder.config)
    assert result.exit_code == 0, result.output
    files = folder.delivered()
    assert len(files) == 5
    for path in files:
        data = path.read_bytes()
        assert data.startswith(b"DKIM-Signature:")
        assert dkim.verify(data, dnsfunc=_dns(record)), path


def test_signature_covers_the_headers_rfc_8058_requires(make_campaign: MakeCampaign, cli: Cli,
                                                        tmp_path: Path) -> None:
    folder, _ = _signed_campaign(make_campaign, tmp_path, "ed25519-sha256")
    assert cli("send", folder.config).exit_code == 0
    header = folder.delivered()[0].read_bytes().split(b"\r\n\r\n")[0].decode()
    signed = re.search(r"h=([^;]+);", header.replace("\r\n ", "").replace("\r\n\t", ""))
    assert signed is not None
    names = {name.strip().lower() for name in signed.group(1).split(":")}
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
            "list-unsubscribe-post"} <= names


@pytest.mark.parametrize(("old", "new"), [
    (b"Subject: News for User1", b"Subject: News for Someone"),
    (b"To: User 1 <user1@example.test>", b"To: Eve <eve@example.test>"),
    (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"),
    (b"Hello User1,", b"Hello Eve, "),
])
def test_any_change_breaks_the_signature(make_campaign: MakeCampaign, cli: Cli, tmp_path: Path,
                                         old: bytes, new: bytes) -> None:
    folder, record = _signed_campaign(make_campaign, tmp_path, "rsa-sha256")
    assert cli("send", folder.config).exit_code == 0
    messages = [path.read_bytes() for path in folder.delivered()]
    data = next(m for m in messages if b"user1@example.test" in m)
    assert old in data
    assert dkim.verify(data, dnsfunc=_dns(record))
    assert not dkim.verify(data.replace(old, new), dnsfunc=_dns(record))


def test_world_readable_key_is_refused(make_campaign: MakeCampaign, cli: Cli,
                                       tmp_path: Path) -> None:
    folder, _ = _signed_campaign(make_campaign, tmp_path, "ed25519-sha256")
    key = tmp_path / "keys" / "dkim.key"
    key.chmod(0o644)
    result = cli("lint", folder.config)
    assert result.exit_code == 2
    assert "readable by every user" in result.output and "chmod 600" in result.output
    assert cli("send", folder.config).exit_code == 2


def test_group_readable_key_is_a_warning(make_campaign: MakeCampaign, cli: Cli,
                                         tmp_path: Path) -> None:
    folder, _ = _signed_campaign(make_campaign, tmp_path, "ed25519-sha256")
    (tmp_path / "keys" / "dkim.key").chmod(0o640)
    result = cli("lint", folder.config)
    assert result.exit_code == 0
    assert "readable by its group" in result.output


def test_key_that_does_not_match_the_algorithm_is_refused(make_campaign: MakeCampaign,
                                                          cli: Cli, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key, _ = _rsa_key(keys)
    folder = make_campaign(dkim={"domain": "sender.test", "selector": "s2026",
                                 "key_file": str(key), "algorithm": "ed25519-sha256"})
    result = cli("lint", folder.config)
    assert result.exit_code == 2
    assert "algorithm is ed25519-sha256 but this is a PEM key" in result.output


def test_missing_key_file_is_named(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder = make_campaign(dkim={"domain": "sender.test", "selector": "s2026",
                                 "key_file": "nope.key"})
    result = cli("lint", folder.config)
    assert result.exit_code == 2
    assert "nope.key: no such file" in result.output


def test_short_rsa_key_is_a_warning_and_misaligned_domain_too(
        make_campaign: MakeCampaign, cli: Cli, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key, _ = _rsa_key(keys, bits=1024)
    folder = make_campaign(dkim={"domain": "other.test", "selector": "s2026",
                                 "key_file": str(key)})
    result = cli("lint", folder.config)
    assert result.exit_code == 0
    assert "1024 bits is weak" in result.output
    assert "does not align with the From domain" in result.output
    assert os.stat(key).st_mode & 0o777 == 0o600
