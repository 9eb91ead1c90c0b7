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
