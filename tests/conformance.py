"""DICOM conformance checks with dicom3tools' ``dciodvfy`` (Debian ``dicom3tools``).

``dciodvfy`` checks an object against the IOD and module definitions of the DICOM standard
and prints one ``Error - ...`` or ``Warning - ...`` line per finding. Tests call
:func:`dciodvfy` on every kind of object medtl writes and expect no errors; the warnings
that remain are listed and justified in ``docs/dicom_conformance.md``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DCIODVFY = "/usr/bin/dciodvfy"


@dataclass(frozen=True)
class Conformance:
    """What ``dciodvfy`` found in one file."""

    errors: list[str]
    warnings: list[str]
    output: str


def dciodvfy(path: Path | str) -> Conformance:
    """Run ``dciodvfy`` on ``path`` (fails the test when dicom3tools is not installed).

    Args:
        path: a DICOM Part 10 file.

    Returns:
        The errors and warnings it printed.
    """
    exe = DCIODVFY if Path(DCIODVFY).exists() else shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy is needed: apt-get install dicom3tools (make test does it)")
    proc = subprocess.run(
        [exe, "-new", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    out = proc.stdout + proc.stderr
    lines = [line.strip() for line in out.splitlines()]
    return Conformance(
        errors=[line for line in lines if line.startswith("Error")],
        warnings=[line for line in lines if line.startswith("Warning")],
        output=out,
    )
