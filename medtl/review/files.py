"""Private files and folders: mode 0600 files in 0700 folders, whatever the process umask.

The review store writes de-identified scans, the database and exports; none of them is for
other local users. ``mkdir(mode=...)`` and ``open(..., mode)`` are filtered by the umask,
which may be wider or narrower than we want, so the modes are set explicitly with
``chmod``/``fchmod`` after creation. Folders that already exist are left as they are (they
may be the user's own, e.g. the folder named in ``MEDTL_DATABASE_URL``); files medtl
creates are 0600 wherever they go.

Example::

    private_dir(home / "cases" / case_id)
    with open_private(home / "cases" / case_id / "img-1.npz") as fh:
        fh.write(payload)          # appears atomically, mode 0600
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700; return ``path``.

    Folders that already exist keep their mode.
    """
    path = Path(path).expanduser()
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created concurrently: someone else's choice of mode stands
        os.chmod(folder, DIR_MODE)
    return path


def create_private_file(path: Path) -> bool:
    """Create an empty file with mode 0600, or tighten an existing one to 0600.

    Used for the SQLite database before SQLAlchemy opens it: SQLite creates its WAL and
    shared-memory files with the mode of the database file, so they become 0600 too.

    Returns:
        True when the file was created here.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def tighten(path: Path) -> None:
    """Set an existing file we own to 0600 if group or others may access it."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return
    if stat.S_IMODE(st.st_mode) & 0o077:
        logger.warning("review store: %s was readable by others; set to 0600", path.name)
        os.chmod(path, FILE_MODE)


@contextmanager
def open_private(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` atomically as a 0600 file: a hidden temporary, renamed on success.

    Yields:
        The binary file to write. On an exception the temporary file is removed and
        ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            yield fh
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    with open_private(path) as fh:
        fh.write(data)
