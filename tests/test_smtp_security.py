"""TLS and login: certificates checked by default, no silent plaintext, secrets from env."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import MakeCampaign, smtp_tables
from tests.smtp_server import RecordingHandler, SmtpServer

Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    with SmtpServer(RecordingHandler(), tls_context=_server_context(certificate),
                    require_starttls=True) as server:
        yield server


def _tls_tables(server: SmtpServer, security: str, ca_file: Path | None) -> dict[str, object]:
    tables = smtp_tables(server)
    tables["transport"].update(security=security)
    if ca_file is not None:
        tables["transport"]["ca_file"] = str(ca_file)
    return tables


def test_starttls_with_a_trusted_certificate_delivers(
        make_campaign: MakeCampaign, cli: Cli, starttls_server: SmtpServer,
        certificate: tuple[Path, Path]) -> None:
    folder = make_campaign(**_tls_tables(starttls_server, "starttls", certificate[0]))
    result = cli("send", folder.config, "--yes")
    assert result.exit_code == 0, result.output
    assert len(starttls_server.handler.received) == 5


def test_untrusted_certificate_is_refused_before_anything_is_sent(
        make_campaign: MakeCampaign, cli: Cli, starttls_server: SmtpServer) -> None:
    folder = make_campaign(**_tls_tables(starttls_server, "starttls", None))
    result = cli("send", folder.config, "--yes")
    assert result.exit_code == 2
    assert "cannot connect" in result.output and "CERTIFICATE_VERIFY_FAILED" in result.output
    assert starttls_server.handler.received == []


def test_starttls_never_falls_back_to_plaintext(make_campaign: MakeCampaign, cli: Cli,
                                                smtp_server: SmtpServer) -> None:
    tables = smtp_tables(smtp_server)
    tables["transport"]["security"] = "starttls"  # this server offers no STARTTLS
    result = cli("send", make_campaign(**tables).config, "--yes")
    assert result.exit_code == 2
    assert "STARTTLS" in result.output
    assert smtp_server.handler.received == []


def test_implicit_tls_delivers(make_campaign: MakeCampaign, cli: Cli,
                               certificate: tuple[Path, Path]) -> None:
    with SmtpServer(RecordingHandler(), tls_context=_server_context(certificate),
                    implicit_tls=True) as server:
        folder = make_campaign(**_tls_tables(server, "tls", certificate[0]))
        result = cli("send", folder.config, "--yes")
        assert result.exit_code == 0, result.output
        assert len(server.handler.received) == 5


def test_plaintext_to_a_remote_host_is_refused_by_the_config(make_campaign: MakeCampaign,
                                                             cli: Cli) -> None:
    folder = make_campaign(transport={"type": "smtp", "host": "smtp.example.test",
                                      "security": "none"})
    result = cli("send", folder.config, "--yes")
    assert result.exit_code == 2
    assert "allowed only for localhost" in result.output


def test_login_uses_the_password_from_the_environment(
        make_campaign: MakeCampaign, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpServer(RecordingHandler(), users={"mailer": "s3cret-pass"}) as server:
        tables = smtp_tables(server)
        tables["transport"].update(username="mailer", password_env="TEST_SMTP_PASSWORD")
        folder = make_campaign(**tables)
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-pass")
        assert cli("send", folder.config, "--yes").exit_code == 0
        assert len(server.handler.received) == 5
        assert "s3cret" not in folder.config.read_text()


def test_wrong_password_stops_before_sending(make_campaign: MakeCampaign, cli: Cli,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpServer(RecordingHandler(), users={"mailer": "s3cret-pass"}) as server:
        tables = smtp_tables(server)
        tables["transport"].update(username="mailer", password_env="TEST_SMTP_PASSWORD")
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        result = cli("send", make_campaign(**tables).config, "--yes")
        assert result.exit_code == 2
        assert "login refused" in result.output
        assert server.handler.received == []


def test_missing_password_variable_is_a_config_error(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tables = smtp_tables(smtp_server)
    tables["transport"].update(username="mailer", password_env="TEST_SMTP_PASSWORD")
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    result = cli("send", make_campaign(**tables).config, "--yes")
    assert result.exit_code == 2
    assert "$TEST_SMTP_PASSWORD is not set" in result.output


def test_password_in_the_campaign_file_is_an_unknown_key(make_campaign: MakeCampaign,
                                                         cli: Cli,
                                                         smtp_server: SmtpServer) -> None:
    tables = smtp_tables(smtp_server)
    tables["transport"].update(username="mailer", password="hunter2",
                               password_env="TEST_SMTP_PASSWORD")
    result = cli("lint", make_campaign(**tables).config)
    assert result.exit_code == 2
    assert "transport.password': unknown key" in result.output
