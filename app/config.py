"""App settings: environment variables first, then ``MEDTL_HOME/app.toml``, then defaults.

``app.toml`` (all keys optional)::

    [app]
    max_upload_mb = 512          # uploads above this are refused before they are read
    database_url = "sqlite:////srv/medtl/review.sqlite"   # default: MEDTL_HOME/db
    session_minutes = 480        # absolute session lifetime
    idle_minutes = 30            # a session unused this long expires
    db_busy_timeout_ms = 5000    # SQLite lock wait per try
    db_retries = 6               # tries of a write on a locked database
    oidc = false                 # show "Sign in with your organisation" (needs [auth] secrets)
    trusted_proxies = ["127.0.0.1", "::1"]   # reverse proxies whose X-Forwarded-For counts

Single sign-on (OIDC) uses Streamlit's ``st.login``: set ``oidc = true`` here *and* put an
``[auth]`` section in Streamlit's secrets (``~/.streamlit/secrets.toml`` of the account that
runs the app; the checkout's ``.streamlit/`` holds only ``config.toml``, the server
settings, never secrets), e.g.::

    [auth]
    redirect_uri = "https://medtl.example.org/oauth2callback"
    cookie_secret = "<long random string>"
    client_id = "medtl"
    client_secret = "<from your identity provider>"
    server_metadata_url = "https://idp.example.org/.well-known/openid-configuration"

The "Sign in with your organisation" button appears only when both are set. The identity's
e-mail local part must match an active local medtl account (whose role applies).

Environment variables override the file: ``MEDTL_APP_MAX_UPLOAD_MB``,
``MEDTL_DATABASE_URL``, ``MEDTL_APP_SESSION_MINUTES``, ``MEDTL_APP_IDLE_MINUTES``,
``MEDTL_APP_DB_BUSY_TIMEOUT_MS``, ``MEDTL_APP_DB_RETRIES``, ``MEDTL_APP_OIDC``,
``MEDTL_APP_TRUSTED_PROXIES`` (comma-separated addresses or networks).

Sign-in throttling works per client address (:mod:`app.components.client`). Behind the
reverse proxy of ``docs/deploy/nginx.conf`` every connection comes from the proxy, so name
it in ``trusted_proxies``: then the address the proxy puts in ``X-Forwarded-For`` (or
``X-Real-IP``) is used. Without it those headers are ignored (any browser can send them).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtl.paths import medtl_home

logger = logging.getLogger(__name__)

CONFIG_FILE = "app.toml"


@dataclass(frozen=True)
class AppSettings:
    """Settings of one app process.

    Attributes:
        max_upload_mb: largest accepted upload, in MiB (also passed to Streamlit's
            ``--server.maxUploadSize`` by ``medtl app``).
        database_url: review store URL (``None``: ``$MEDTL_DATABASE_URL`` or MEDTL_HOME).
        session_minutes: absolute session lifetime.
        idle_minutes: idle timeout of a session.
        db_busy_timeout_ms: SQLite lock wait before a write try counts as failed.
        db_retries: tries of a write on a locked database before "busy" is shown.
        oidc: offer single sign-on through ``st.login`` (only shown when ``[auth]``
            secrets are configured as well).
        trusted_proxies: addresses or networks (``10.0.0.0/8``) of reverse proxies whose
            ``X-Forwarded-For`` / ``X-Real-IP`` headers name the real client.
    """

    max_upload_mb: float = 512.0
    database_url: str | None = None
    session_minutes: int = 480
    idle_minutes: int = 30
    db_busy_timeout_ms: int = 5000
    db_retries: int = 6
    oidc: bool = False
    trusted_proxies: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


_ENV = {
    "max_upload_mb": ("MEDTL_APP_MAX_UPLOAD_MB", float),
    "database_url": ("MEDTL_DATABASE_URL", str),
    "session_minutes": ("MEDTL_APP_SESSION_MINUTES", int),
    "idle_minutes": ("MEDTL_APP_IDLE_MINUTES", int),
    "db_busy_timeout_ms": ("MEDTL_APP_DB_BUSY_TIMEOUT_MS", int),
    "db_retries": ("MEDTL_APP_DB_RETRIES", int),
    "oidc": ("MEDTL_APP_OIDC", lambda v: str(v).strip().lower() in ("1", "true", "yes", "on")),
    "trusted_proxies": ("MEDTL_APP_TRUSTED_PROXIES", lambda v: _addresses(v)),
}


def _addresses(value: Any) -> tuple[str, ...]:
    """A list of addresses/networks from a comma-separated string or a TOML list."""
    import ipaddress

    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(i).strip() for i in items if str(i).strip())
    for item in out:
        ipaddress.ip_network(item, strict=False)  # ValueError: logged, default kept
    return out


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        logger.warning("ignoring unreadable %s: %s", path.name, err)
        return {}
    section = data.get("app", data)
    return section if isinstance(section, dict) else {}


def load_settings(home: Path | None = None) -> AppSettings:
    """Read the settings (environment over ``app.toml`` over defaults).

    Args:
        home: the medtl home folder (default :func:`medtl.paths.medtl_home`).

    Returns:
        The settings. Invalid values are logged and replaced by the default.
    """
    values: dict[str, Any] = {}
    file_values = _read_file((home or medtl_home()) / CONFIG_FILE)
    for key, (env, cast) in _ENV.items():
        raw = os.environ.get(env)
        if raw in (None, ""):
            raw = file_values.get(key)
        if raw is None:
            continue
        try:
            values[key] = cast(raw)
        except (TypeError, ValueError):
            logger.warning("ignoring invalid app setting %s=%r", key, raw)
    return AppSettings(**values)
