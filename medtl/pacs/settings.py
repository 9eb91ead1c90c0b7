"""PACS connection settings: environment variables over the ``[pacs]`` section of
``MEDTL_HOME/app.toml`` over defaults, like the app's other settings (``app/config.py``).

``app.toml``::

    [pacs]
    dicomweb_url = "https://pacs.example.org/dicom-web"
    username = "medtl"
    password_file = "/run/secrets/pacs_password"   # or token_file (bearer token)
    ae_title = "PACS"            # the archive's AE title (DIMSE)
    host = "pacs.example.org"
    port = 104
    local_ae_title = "MEDTL"     # medtl's own AE title (C-FIND/C-GET/C-STORE and the listener)
    listen_port = 11112
    retrieve = "get"             # DIMSE retrieval: "get" (C-GET) or "move" (C-MOVE to us)
    allowed_calling_aets = ["PACS", "CT01"]   # who may send to the listener (default: anyone)
    push_unverified = false      # send SRs of results no clinician has reviewed (marked so)
    push_heatmap = false         # also send the heat map as a Secondary Capture (not for diagnosis)
    quiet_seconds = 10           # listener: a series is complete after this long without news
    default_model = "cxr-nodule" # listener: model for series no route matches (optional)

    [[pacs.routes]]              # listener: first matching rule wins
    modality = "CR"
    body_part = "CHEST"          # optional
    model = "cxr-nodule@1.0"

Environment: ``MEDTL_PACS_DICOMWEB_URL``, ``MEDTL_PACS_USERNAME``,
``MEDTL_PACS_PASSWORD_FILE`` (or ``MEDTL_PACS_PASSWORD``), ``MEDTL_PACS_TOKEN_FILE`` (or
``MEDTL_PACS_TOKEN``), ``MEDTL_PACS_AE_TITLE``, ``MEDTL_PACS_HOST``, ``MEDTL_PACS_PORT``,
``MEDTL_AE_TITLE``, ``MEDTL_LISTEN_PORT``, ``MEDTL_PACS_PUSH_UNVERIFIED``,
``MEDTL_PACS_QUIET_SECONDS``, ``MEDTL_PACS_DEFAULT_MODEL``, ``MEDTL_PACS_TIMEOUT`` (seconds per
request or association, default 30), ``MEDTL_PACS_PUSH_HEATMAP``,
``MEDTL_LISTEN_ALLOWED_AETS`` (comma-separated), ``MEDTL_PACS_RETRIEVE``.

Secrets come from files or the environment only: a ``password`` or ``token`` written into
``app.toml`` is ignored with a warning, and nothing here is ever stored in the database.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from medtl.paths import medtl_home

logger = logging.getLogger(__name__)

CONFIG_FILE = "app.toml"

_TRUE = ("1", "true", "yes", "on")

#: setting name -> environment variable
ENV_VARS: dict[str, str] = {
    "dicomweb_url": "MEDTL_PACS_DICOMWEB_URL",
    "username": "MEDTL_PACS_USERNAME",
    "password_file": "MEDTL_PACS_PASSWORD_FILE",
    "token_file": "MEDTL_PACS_TOKEN_FILE",
    "ae_title": "MEDTL_PACS_AE_TITLE",
    "host": "MEDTL_PACS_HOST",
    "port": "MEDTL_PACS_PORT",
    "local_ae_title": "MEDTL_AE_TITLE",
    "listen_port": "MEDTL_LISTEN_PORT",
    "push_unverified": "MEDTL_PACS_PUSH_UNVERIFIED",
    "quiet_seconds": "MEDTL_PACS_QUIET_SECONDS",
    "default_model": "MEDTL_PACS_DEFAULT_MODEL",
    "timeout_s": "MEDTL_PACS_TIMEOUT",
    "push_heatmap": "MEDTL_PACS_PUSH_HEATMAP",
    "allowed_calling_aets": "MEDTL_LISTEN_ALLOWED_AETS",
    "retrieve": "MEDTL_PACS_RETRIEVE",
}
_SECRET_ENV = {"password": "MEDTL_PACS_PASSWORD", "token": "MEDTL_PACS_TOKEN"}


class PacsSettingsError(ValueError):
    """The PACS settings are missing or invalid (the message names the setting)."""


class Route(BaseModel):
    """A listener rule: series of this modality (and body part) go to ``model``."""

    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="DICOM Modality, e.g. CR or CT.")
    body_part: str | None = Field(default=None, description="BodyPartExamined, e.g. CHEST.")
    model: str = Field(description="Model package: registered name, name@version or folder.")

    def matches(self, modality: str | None, body_part: str | None) -> bool:
        """True when a series of ``modality``/``body_part`` falls under this rule."""
        if (modality or "").upper() != self.modality.upper():
            return False
        return self.body_part is None or (body_part or "").upper() == self.body_part.upper()


class PacsSettings(BaseModel):
    """How medtl reaches the PACS and how it listens.

    Attributes:
        dicomweb_url: DICOMweb root (QIDO-RS, WADO-RS, STOW-RS); ``None``: DIMSE only.
        username: HTTP basic user name for DICOMweb.
        password: its password (from ``password_file`` or ``MEDTL_PACS_PASSWORD``).
        token: a bearer token instead of basic auth.
        ae_title: the archive's AE title (DIMSE).
        host: the archive's DIMSE host.
        port: the archive's DIMSE port.
        local_ae_title: medtl's AE title.
        listen_port: the C-STORE listener's port.
        allowed_calling_aets: AE titles that may send to the listener (DIMSE has no
            passwords); empty: any caller, which the listener warns about.
        retrieve: DIMSE retrieval by ``get`` (C-GET) or ``move`` (C-MOVE to medtl's AE
            title, received on ``listen_port``).
        push_unverified: allow SRs of results without a clinician's review.
        push_heatmap: also send the heat map as a Secondary Capture marked not for
            diagnosis (for viewers that cannot show an SR).
        quiet_seconds: the listener closes a series after this long without a new instance.
        routes: listener rules, first match wins.
        default_model: listener model when no rule matches (``None``: such series are kept
            out and logged).
        timeout_s: network timeout per request / association.
    """

    model_config = ConfigDict(extra="forbid")

    dicomweb_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    ae_title: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    local_ae_title: str = "MEDTL"
    listen_port: int = Field(default=11112, ge=1, le=65535)
    allowed_calling_aets: list[str] = Field(default_factory=list)
    retrieve: Literal["get", "move"] = "get"
    push_unverified: bool = False
    push_heatmap: bool = False
    quiet_seconds: float = Field(default=10.0, gt=0)
    routes: list[Route] = Field(default_factory=list)
    default_model: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("ae_title", "local_ae_title")
    @classmethod
    def _ae(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= len(value.strip()) <= 16:
            raise ValueError("an AE title has 1 to 16 characters")
        return value.strip() if value is not None else None

    @property
    def has_dicomweb(self) -> bool:
        """True when a DICOMweb URL is set."""
        return bool(self.dicomweb_url)

    @property
    def has_dimse(self) -> bool:
        """True when the archive's AE title, host and port are all set."""
        return bool(self.ae_title and self.host and self.port)

    def route(self, modality: str | None, body_part: str | None) -> str | None:
        """The model for a series (first matching rule, else ``default_model``)."""
        for rule in self.routes:
            if rule.matches(modality, body_part):
                return rule.model
        return self.default_model

    def require_connection(self) -> None:
        """Raise :class:`PacsSettingsError` unless DICOMweb or DIMSE is configured."""
        if not (self.has_dicomweb or self.has_dimse):
            raise PacsSettingsError(
                "No PACS is configured: set MEDTL_PACS_DICOMWEB_URL (DICOMweb) or "
                "MEDTL_PACS_AE_TITLE, MEDTL_PACS_HOST and MEDTL_PACS_PORT (DIMSE), or the "
                "[pacs] section of MEDTL_HOME/app.toml."
            )


def _read_section(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        logger.warning("ignoring unreadable %s: %s", path.name, err)
        return {}
    section = data.get("pacs", {})
    return dict(section) if isinstance(section, dict) else {}


def _read_secret(path: str, what: str) -> SecretStr:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as err:
        raise PacsSettingsError(f"cannot read the PACS {what} file: {err.strerror}") from None
    if not text:
        raise PacsSettingsError(f"the PACS {what} file is empty")
    return SecretStr(text)


def load_pacs_settings(home: Path | None = None) -> PacsSettings:
    """Read the PACS settings (environment over ``app.toml`` over defaults).

    Args:
        home: the medtl home folder (default :func:`medtl.paths.medtl_home`).

    Returns:
        The settings, secrets loaded from their files or the environment.

    Raises:
        PacsSettingsError: a value is invalid or a secret file cannot be read.
    """
    values = _read_section((home or medtl_home()) / CONFIG_FILE)
    for secret in ("password", "token"):
        if values.pop(secret, None) is not None:
            logger.warning(
                "ignoring pacs.%s in app.toml: use %s_file or the environment", secret, secret
            )
    for key, env in ENV_VARS.items():
        raw = os.environ.get(env)
        if raw not in (None, ""):
            values[key] = raw
    if isinstance(values.get("allowed_calling_aets"), str):
        values["allowed_calling_aets"] = [
            a.strip() for a in values["allowed_calling_aets"].split(",") if a.strip()
        ]
    for flag in ("push_unverified", "push_heatmap"):
        if isinstance(values.get(flag), str):
            values[flag] = values[flag].strip().lower() in _TRUE
    for secret, env in _SECRET_ENV.items():
        file_value = values.pop(f"{secret}_file", None)
        if os.environ.get(env):
            values[secret] = SecretStr(os.environ[env])
        elif file_value:
            values[secret] = _read_secret(str(file_value), secret)
    try:
        return PacsSettings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise PacsSettingsError(f"invalid PACS settings: {problems}") from None
