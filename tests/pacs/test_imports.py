"""Importing medtl.pacs (and its CLI, which `medtl` loads on every command) pulls in no
network client and no heavy library: pynetdicom, dicomweb-client, highdicom and
cryptography come with the `pacs` extra and load only when a command uses them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "monai",
    "sqlalchemy",
    "pynetdicom",
    "dicomweb_client",
    "highdicom",
    "cryptography",
    "requests",
    "pydicom",
)


def test_pacs_package_and_cli_import_light() -> None:
    code = (
        "import sys, medtl.pacs, medtl.pacs.cli, medtl.pacs.testing\n"
        f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))\n"
        "print(all(callable(getattr(medtl.pacs, n)) for n in "
        "('analyse_study', 'push_case', 'load_pacs_settings', 'find', 'echo', 'Listener')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["", "True"]
