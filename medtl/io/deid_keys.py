"""The site de-identification key, keyed pseudonyms and pseudonymous UIDs.

* ``U``: every instance UID becomes ``2.25.<int>`` where the integer is an RFC 4122 UUID
  built from ``HMAC-SHA256(key, uid)``: one key maps a UID to the same new UID in every
  file, so the files of a study/series stay together, and nobody without the key can
  reverse or recompute it;
* pseudonyms are ``<prefix>-<10 hex>`` of the same HMAC (:func:`pseudonym`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import uuid
from pathlib import Path

from medtl.paths import home_subdir

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "deid.key"
KEY_BYTES = 32
_MIN_KEY_BYTES = 16


def default_key_path() -> Path:
    """Return ``MEDTL_HOME/secrets/deid.key`` (the folder is created 0700 if missing)."""
    return home_subdir("secrets") / KEY_FILE_NAME


def load_key(path: Path | None = None) -> bytes:
    """Return the site de-identification key, creating it on first use.

    The key is 32 random bytes in a file created with mode 0600. Keep it secret and
    backed up: the same key is needed to map new files of a known patient or study to
    the same pseudonyms.

    Args:
        path: key file; default :func:`default_key_path`.

    Returns:
        The key bytes.

    Raises:
        ValueError: the existing key file is too short to be a key.
    """
    path = Path(path) if path is not None else default_key_path()
    if not path.exists():
        # Write the key to a private temporary file, then hard-link it into place: the link
        # is atomic and fails if another process got there first, so no process ever reads
        # a half-written key (two workers start at once when a dataset is built in parallel).
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first: read theirs
            else:
                logger.info("created a new de-identification key in %s", path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(
            f"The de-identification key file {path} is too short ({len(key)} bytes); "
            f"restore it from backup or delete it to create a new key."
        )
    return key


def resolve_key(key: bytes | None) -> bytes:
    """Return ``key`` checked for length, or the site key when None."""
    if key is None:
        return load_key()
    if not isinstance(key, bytes | bytearray) or len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"the de-identification key must be at least {_MIN_KEY_BYTES} bytes")
    return bytes(key)


def _digest(key: bytes, domain: str, value: str) -> bytes:
    return hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()


def pseudonym(value: str, *, key: bytes | None = None, prefix: str = "PSN") -> str:
    """Return a keyed pseudonym ``<prefix>-<10 upper-case hex>`` of ``value``.

    Args:
        value: the identifier to hide (e.g. a PatientID); leading/trailing spaces ignored.
        key: HMAC key; default the site key (:func:`load_key`).
        prefix: short tag naming what the pseudonym stands for; part of the HMAC input,
            so pseudonyms with different prefixes cannot be linked.

    Returns:
        e.g. ``"PSN-3F9A0C21B7"``; the same value and key always give the same pseudonym.
    """
    digest = _digest(resolve_key(key), prefix, str(value).strip())
    return f"{prefix}-{digest.hex()[:10].upper()}"


def pseudonymous_uid(uid: str, *, key: bytes | None = None) -> str:
    """Return the ``2.25.<int>`` UID that :func:`deidentify` substitutes for ``uid``.

    Args:
        uid: original UID (trailing NUL/space padding ignored).
        key: HMAC key; default the site key.

    Returns:
        A UID of at most 44 characters, derived from HMAC-SHA256(key, uid) as a UUID.
    """
    digest = _digest(resolve_key(key), "uid", str(uid).strip("\x00 "))
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"
