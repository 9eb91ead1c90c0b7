"""PACS settings: environment over app.toml over defaults; secrets from files or env only."""

from __future__ import annotations

import pytest

from medtl.pacs.settings import PacsSettingsError, load_pacs_settings


def test_defaults_without_configuration(home) -> None:
    settings = load_pacs_settings()
    assert not settings.has_dicomweb and not settings.has_dimse
    assert settings.local_ae_title == "MEDTL" and settings.listen_port == 11112
    with pytest.raises(PacsSettingsError, match="MEDTL_PACS_DICOMWEB_URL"):
        settings.require_connection()


def test_environment_overrides_app_toml_and_routes_are_read(home, monkeypatch, tmp_path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    (home / "app.toml").write_text(f"""
[pacs]
dicomweb_url = "http://file.example/dicom-web"
host = "pacs.file.example"
port = 104
ae_title = "FILEPACS"
password_file = "{secret}"
password = "inline-is-ignored"
quiet_seconds = 3

[[pacs.routes]]
modality = "CR"
body_part = "CHEST"
model = "cxr@1"

[[pacs.routes]]
modality = "CT"
model = "ct@2"
""")
    monkeypatch.setenv("MEDTL_PACS_PORT", "11104")
    monkeypatch.setenv("MEDTL_AE_TITLE", "SITEAI")
    settings = load_pacs_settings()
    assert settings.dicomweb_url == "http://file.example/dicom-web"
    assert settings.port == 11104 and settings.ae_title == "FILEPACS"
    assert settings.local_ae_title == "SITEAI" and settings.quiet_seconds == 3
    assert settings.password is not None
    assert settings.password.get_secret_value() == "from-file"
    assert "from-file" not in repr(settings)
    assert settings.route("CR", "chest") == "cxr@1"
    assert settings.route("CR", "HAND") is None
    assert settings.route("CT", None) == "ct@2"

    monkeypatch.setenv("MEDTL_PACS_PASSWORD", "from-env")
    assert load_pacs_settings().password.get_secret_value() == "from-env"


def test_unreadable_secret_file_and_bad_values_are_errors(home, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MEDTL_PACS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(PacsSettingsError, match="password file"):
        load_pacs_settings()
    monkeypatch.delenv("MEDTL_PACS_PASSWORD_FILE")
    monkeypatch.setenv("MEDTL_PACS_PORT", "not-a-port")
    with pytest.raises(PacsSettingsError, match="port"):
        load_pacs_settings()
    monkeypatch.setenv("MEDTL_PACS_PORT", "104")
    monkeypatch.setenv("MEDTL_AE_TITLE", "A-TITLE-MUCH-TOO-LONG")
    with pytest.raises(PacsSettingsError, match="local_ae_title"):
        load_pacs_settings()


def test_sealed_link_opens_only_with_the_site_key_and_its_case() -> None:
    from medtl.pacs.records import seal, unseal
    from medtl.pacs.types import PacsError, SourceLink

    link = SourceLink("1.2.3.4", "1.2.3.4.5", ["1.2.3.4.5.6"], "dicomweb")
    key = b"k" * 32
    sealed = seal(link, "CASE-0123456789", key)
    assert "1.2.3.4" not in sealed
    assert unseal(sealed, "CASE-0123456789", key) == link
    with pytest.raises(PacsError, match="site key"):
        unseal(sealed, "CASE-0123456789", b"x" * 32)
    with pytest.raises(PacsError):
        unseal(sealed, "CASE-9999999999", key)


def test_bearer_token_from_file_is_sent(home, monkeypatch, tmp_path) -> None:
    """A real HTTP server that answers QIDO-RS only with the right bearer token."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from medtl.pacs.client import echo

    seen: list[str | None] = []

    class Qido(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Bearer tok-123"
            body = json.dumps([]).encode() if ok else b"{}"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Qido)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        token = tmp_path / "token"
        token.write_text("tok-123\n")
        monkeypatch.setenv("MEDTL_PACS_DICOMWEB_URL", url)
        monkeypatch.setenv("MEDTL_PACS_TOKEN_FILE", str(token))
        (web, dimse) = echo(load_pacs_settings())
        assert web.ok and seen == ["Bearer tok-123"]
        assert not dimse.ok and "not configured" in dimse.detail
        token.write_text("stale")
        (web, _) = echo(load_pacs_settings())
        assert not web.ok and "HTTP 401" in web.detail
    finally:
        server.shutdown()


def test_echo_without_any_pacs_is_an_error(home) -> None:
    from typer.testing import CliRunner

    from medtl.cli import app

    result = CliRunner().invoke(app, ["pacs", "echo"])
    assert result.exit_code == 2
    assert "No PACS is configured" in result.stderr


def test_a_pacs_that_never_answers_times_out(home, monkeypatch) -> None:
    """A listening socket that never replies: both paths give up after the timeout."""
    import socket
    import time

    from medtl.pacs.client import echo

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        monkeypatch.setenv("MEDTL_PACS_DICOMWEB_URL", f"http://127.0.0.1:{port}/dicom-web")
        monkeypatch.setenv("MEDTL_PACS_AE_TITLE", "PACS")
        monkeypatch.setenv("MEDTL_PACS_HOST", "127.0.0.1")
        monkeypatch.setenv("MEDTL_PACS_PORT", str(port))
        monkeypatch.setenv("MEDTL_PACS_TIMEOUT", "1")
        started = time.monotonic()
        web, dimse = echo(load_pacs_settings())
        assert time.monotonic() - started < 15
    assert not web.ok and "timed out" in web.detail
    assert not dimse.ok and "DIMSE" in dimse.detail


def test_dimse_to_a_closed_port_says_connection_refused(home) -> None:
    from medtl.pacs.dimse import echo
    from medtl.pacs.settings import PacsSettings
    from tests.pacs.conftest import free_port

    result = echo(PacsSettings(ae_title="PACS", host="127.0.0.1", port=free_port()))
    assert not result.ok and "refused" in result.detail
