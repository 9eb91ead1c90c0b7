"""Package ``__init__`` modules re-export lazily: importing one pulls in no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = {
    "medtl.io": ("load_scan", "deidentify"),
    "medtl.training": ("Trainer", "TrainingConfig"),
    "medtl.evaluation": ("auroc", "bootstrap_ci"),
    "medtl.reports": ("write_report",),
    "medtl.review": ("ReviewStore",),
    "medtl.inference": ("Predictor", "gradcam"),
    "medtl.models": ("create_backbone", "load_package", "list_packages"),
    "medtl.data": ("Manifest", "manifest_schema"),
}
HEAVY = ("torch", "monai", "sklearn", "matplotlib", "sqlalchemy", "weasyprint")


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_import_is_light_and_names_resolve(package: str) -> None:
    names = PACKAGES[package]
    code = (
        "import importlib, sys\n"
        f"m = importlib.import_module({package!r})\n"
        f"heavy = [h for h in {HEAVY!r} if h in sys.modules]\n"
        "print(','.join(heavy))\n"
        f"print(all(n in dir(m) for n in {names!r}))\n"
        f"print(all(callable(getattr(m, n)) for n in {names!r}))\n"
        "try:\n    m.no_such_name\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "", f"{package} imports {out[0]} at import time"
    assert out[1] == "True" and out[2] == "True"
    assert out[3] == f"module {package!r} has no attribute 'no_such_name'"
