"""Read the members of an uploaded zip into memory, with caps that stop zip bombs early.

A zip's directory states each member's sizes, but those are written by whoever made the
file. Members are therefore *streamed*: read in chunks of :data:`CHUNK` bytes, and reading
stops as soon as the bytes actually inflated pass a cap (total uncompressed size, or ratio
to the archive's real size on disk), long before the memory a bomb asks for is committed.
The member count is checked from the end-of-central-directory record before Python builds
one object per entry. Nothing is extracted to disk (no path traversal, no symlinks).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from medtl.io.errors import CorruptScanError, ImageTooLargeError, UnsupportedFormatError
from medtl.io.limits import DecodeLimits

#: Bytes inflated per read; the caps are checked between reads.
CHUNK = 1024 * 1024


def _declared_entries(fh: BinaryIO) -> int | None:
    """Entry count from the end-of-central-directory record (None if unreadable)."""
    try:
        # zipfile's own EOCD reader (private, stable since Python 2); handles zip64.
        endrec = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None
    return None if not endrec else int(endrec[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]


def _wanted(info: zipfile.ZipInfo, skip_names: Collection[str]) -> bool:
    name = Path(info.filename).name
    return (
        not info.is_dir()
        and not name.startswith(".")
        and "__MACOSX" not in info.filename
        and name.upper() not in skip_names
    )


class _Budget:
    """Running totals of one archive, checked after every chunk."""

    def __init__(self, limits: DecodeLimits, archive_size: int) -> None:
        self.limits = limits
        self.archive_size = max(archive_size, 1)
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        lim = self.limits
        if self.total > lim.max_bytes:
            raise ImageTooLargeError(
                f"The zip expands to more than {lim.max_bytes / 1024**3:.1f} GiB; reading "
                "stopped there. Zip one series at a time."
            )
        if (
            self.total > lim.ratio_grace_bytes
            and self.total > lim.max_zip_ratio * self.archive_size
        ):
            raise ImageTooLargeError(
                f"The zip expands to more than {lim.max_zip_ratio:.0f} times its own size "
                f"(over {self.total / 1024**2:.0f} MiB from {self.archive_size / 1024**2:.1f} "
                "MiB), which is how decompression bombs look; reading stopped. Zip the "
                "series' DICOM files without padding, or upload them uncompressed."
            )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    if info.flag_bits & 0x1:
        raise UnsupportedFormatError(
            "The zip archive is password-protected. Create it without encryption."
        )
    chunks: list[bytes] = []
    try:
        with archive.open(info) as fh:
            while chunk := fh.read(CHUNK):
                budget.add(len(chunk))
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
        raise CorruptScanError(
            "A file inside the zip archive is damaged. Create the zip again."
        ) from exc
    return b"".join(chunks)


def read_zip_members(
    source: Path | bytes, limits: DecodeLimits, *, skip_names: Collection[str] = ()
) -> list[bytes]:
    """Return the contents of a zip's files (folders, hidden and macOS files skipped).

    Args:
        source: the zip's path or bytes.
        limits: ``max_files``, ``max_bytes``, ``max_zip_ratio`` and ``ratio_grace_bytes``.
        skip_names: upper-case file names to leave out (e.g. ``{"DICOMDIR"}``).

    Returns:
        The members' bytes, in directory order.

    Raises:
        ImageTooLargeError: too many members, too many bytes, or too high a ratio.
        CorruptScanError: a damaged archive or member.
        UnsupportedFormatError: an empty or encrypted archive.
    """
    if isinstance(source, bytes):
        fh: BinaryIO = io.BytesIO(source)
        size = len(source)
    else:
        fh = Path(source).open("rb")  # noqa: SIM115 - closed below
        size = Path(source).stat().st_size
    try:
        entries = _declared_entries(fh)
        if entries is not None and entries > limits.max_files:
            raise ImageTooLargeError(
                f"The zip holds more than {limits.max_files} files. Zip one series at a time."
            )
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CorruptScanError(
                "The zip archive is damaged or incomplete. Create the zip again and re-upload it."
            ) from exc
        with archive:
            members = [info for info in archive.infolist() if _wanted(info, skip_names)]
            if len(members) > limits.max_files:
                raise ImageTooLargeError(
                    f"The zip holds more than {limits.max_files} files. Zip one series at a time."
                )
            if not members:
                raise UnsupportedFormatError("The zip archive is empty.")
            budget = _Budget(limits, size)
            return [_read_member(archive, info, budget) for info in members]
    finally:
        fh.close()


__all__ = ["CHUNK", "read_zip_members"]
