"""App settings (environment over app.toml over defaults) and the `medtl app` launcher."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.config import AppSettings, load_settings
from medtl import app_launcher
from medtl.app_launcher import find_app_main, streamlit_command, upload_limit_mb

from .helpers import APP_MAIN

ENV_VARS = (
    "MEDTL_APP_MAX_UPLOAD_MB",
    "MEDTL_DATABASE_URL",
    "MEDTL_APP_SESSION_MINUTES",
    "MEDTL_APP_IDLE_MINUTES",
    "MEDTL_APP_DB_BUSY_TIMEOUT_MS",
    "MEDTL_APP_DB_RETRIES",
    "MEDTL_APP_OIDC",
    "MEDTL_APP_PATH",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path))
    return tmp_path


def test_defaults_without_file_or_environment(home) -> None:
    assert load_settings() == AppSettings()
    assert AppSettings().max_upload_bytes == 512 * 1024 * 1024


def test_file_then_environment_override(home, monkeypatch) -> None:
    (home / "app.toml").write_text(
        "[app]\nmax_upload_mb = 64\nsession_minutes = 60\noidc = true\n"
        'database_url = "sqlite:////srv/review.sqlite"\nidle_minutes = "soon"\n',
        encoding="utf-8",
    )
    cfg = load_settings()
    assert (cfg.max_upload_mb, cfg.session_minutes, cfg.oidc) == (64.0, 60, True)
    assert cfg.database_url == "sqlite:////srv/review.sqlite"
    assert cfg.idle_minutes == 30  # an invalid value falls back to the default
    monkeypatch.setenv("MEDTL_APP_MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("MEDTL_APP_OIDC", "0")
    cfg = load_settings()
    assert (cfg.max_upload_mb, cfg.oidc, cfg.max_upload_bytes) == (2.5, False, 2621440)


def test_broken_app_toml_is_ignored(home) -> None:
    (home / "app.toml").write_text("[app\nmax_upload_mb = ", encoding="utf-8")
    assert load_settings() == AppSettings()


def test_launcher_finds_the_checkout_app_and_builds_the_command(home, monkeypatch) -> None:
    assert find_app_main() == APP_MAIN
    cmd = streamlit_command(APP_MAIN, 8765, max_upload_mb=2.5)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_MAIN)]
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts == {
        "--server.port": "8765",
        "--server.address": "127.0.0.1",
        "--server.headless": "true",
        "--server.maxUploadSize": "3",
        "--server.fileWatcherType": "none",
        "--browser.gatherUsageStats": "false",
        "--server.enableXsrfProtection": "true",
        "--server.enableCORS": "true",
        "--server.disconnectedSessionTTL": "30",
        "--client.showErrorDetails": "none",
        "--client.toolbarMode": "viewer",
    }
    monkeypatch.setenv("MEDTL_APP_PATH", str(home / "nowhere" / "main.py"))
    assert find_app_main() == APP_MAIN  # a wrong override falls back to the checkout


def test_upload_limit_follows_the_app_settings(home) -> None:
    assert upload_limit_mb(APP_MAIN, {"MEDTL_HOME": str(home)}) == 512.0
    (home / "app.toml").write_text("[app]\nmax_upload_mb = 40\n", encoding="utf-8")
    assert upload_limit_mb(APP_MAIN, {"MEDTL_HOME": str(home)}) == 40.0
    env = {"MEDTL_HOME": str(home), "MEDTL_APP_MAX_UPLOAD_MB": "7"}
    assert upload_limit_mb(APP_MAIN, env) == 7.0


def test_cli_reports_a_missing_app(home, monkeypatch) -> None:
    def missing() -> Path:
        raise FileNotFoundError("the clinician app (app/main.py) was not found")

    monkeypatch.setattr(app_launcher, "find_app_main", missing)
    result = CliRunner().invoke(app_launcher.app, ["--port", "8599"])
    assert result.exit_code == 2
    assert "error: the clinician app (app/main.py) was not found" in result.output


def test_checked_in_streamlit_config_locks_the_server_down() -> None:
    """`streamlit run app/main.py` from the checkout reads .streamlit/config.toml."""
    import tomllib

    config = tomllib.loads((APP_MAIN.parents[1] / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert 0 < server["disconnectedSessionTTL"] <= 60
    assert client["showErrorDetails"] == "none" and client["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False


def test_a_wide_address_is_logged_as_a_warning(caplog) -> None:
    from medtl.app_launcher import warn_if_wide

    with caplog.at_level("WARNING", logger="medtl.app_launcher"):
        assert warn_if_wide("127.0.0.1") is False
        assert warn_if_wide("localhost") is False
        assert caplog.records == []
        assert warn_if_wide("0.0.0.0") is True
    [record] = caplog.records
    assert "0.0.0.0" in record.getMessage() and "nginx" in record.getMessage()
