"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

Orthanc runs as a plain process with a JSON config in a temp folder: HTTP basic
authentication on, the DICOM port restricted by AE title (only the modalities named in
``DicomModalities`` may associate), the DICOMweb plugin loaded. It is stopped with SIGTERM
and waited for. The server and the tiny model packages live in :mod:`medtl.pacs.testing`
(the benchmark uses them too). The studies stored into it are DICOM files written with
pydicom, with a patient name and ID that the PHI tests look for afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medtl.pacs.testing import (
    MEDTL_AET,
    ORTHANC,
    PACS_AET,
    PASSWORD,
    PLUGIN,
    SCU_AET,
    USER,
    OrthancServer,
    free_port,
    orthanc_available,
    tiny_cr_package,
    tiny_ct_package,
)
from tests.io.dicom_factory import cr_image, ct_series

__all__ = [  # re-exported for the test modules
    "MEDTL_AET",
    "ORTHANC",
    "PACS_AET",
    "PASSWORD",
    "PLUGIN",
    "SCU_AET",
    "USER",
    "OrthancServer",
    "free_port",
]

PHI_NAME = "PACSPHI^QUINTUS"
PHI_ID = "PACS-MRN-77120"
PHI_ACCESSION = "ACC-PACS-4411"
CT_SLICES = 40


def _with_phi(ds: Dataset, study_uid: str) -> Dataset:
    ds.PatientName = PHI_NAME
    ds.PatientID = PHI_ID
    ds.AccessionNumber = PHI_ACCESSION
    ds.StudyInstanceUID = study_uid
    ds.BodyPartExamined = "CHEST"
    return ds


@dataclass(frozen=True)
class Studies:
    """The studies stored in the test PACS, with their original UIDs."""

    cr_study: str
    cr_series: str
    cr_instances: tuple[str, ...]
    ct_study: str
    ct_series: str
    ct_instances: tuple[str, ...]

    def all_uids(self) -> list[str]:
        return [
            self.cr_study,
            self.cr_series,
            *self.cr_instances,
            self.ct_study,
            self.ct_series,
            *self.ct_instances,
        ]


def make_cr(study_uid: str) -> Dataset:
    rng = np.random.default_rng(1)
    pixels = np.clip(rng.normal(1200, 100, (64, 64)), 0, 4095).astype(np.uint16)
    pixels[20:34, 22:38] += 600
    ds = _with_phi(cr_image(pixels, bits_stored=12), study_uid)
    ds.StudyDate = "20251103"
    return ds


def make_ct(study_uid: str, n: int = CT_SLICES) -> list[Dataset]:
    rng = np.random.default_rng(2)
    volume = rng.normal(1000, 60, (n, 32, 32)).astype(np.int16)
    volume[n // 3 : n // 2, 10:20, 10:20] += 400
    return [_with_phi(ds, study_uid) for ds in ct_series(volume, spacing=(1.0, 1.0, 1.0))]


@pytest.fixture(scope="session")
def orthanc_bin() -> str:
    if not orthanc_available():
        pytest.fail(
            "Orthanc and its DICOMweb plugin are needed: apt-get install orthanc "
            "orthanc-dicomweb dcmtk (make test does it)"
        )
    return ORTHANC


@pytest.fixture(scope="session")
def orthanc(orthanc_bin, tmp_path_factory) -> Iterator[OrthancServer]:
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def studies(orthanc) -> Studies:
    cr = make_cr(generate_uid())
    orthanc.upload(cr)
    ct = make_ct(generate_uid())
    for ds in ct:
        orthanc.upload(ds)
    return Studies(
        str(cr.StudyInstanceUID),
        str(cr.SeriesInstanceUID),
        (str(cr.SOPInstanceUID),),
        str(ct[0].StudyInstanceUID),
        str(ct[0].SeriesInstanceUID),
        tuple(str(d.SOPInstanceUID) for d in ct),
    )


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    return {"CR": tiny_cr_package(root), "CT": tiny_ct_package(root)}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "medtl_home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    monkeypatch.delenv("MEDTL_DATABASE_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("MEDTL_PACS_") or name in ("MEDTL_AE_TITLE", "MEDTL_LISTEN_PORT"):
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def pacs_env(home, orthanc, monkeypatch, tmp_path) -> dict[str, str]:
    """Environment pointing medtl at the test Orthanc (DICOMweb and DIMSE)."""
    secret = tmp_path / "pacs_password"
    secret.write_text(PASSWORD + "\n")
    env = {**orthanc.env(), "MEDTL_PACS_PASSWORD_FILE": str(secret)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def cheap_store():
    """A review store in MEDTL_HOME with cheap argon2 costs."""
    from argon2 import PasswordHasher

    from medtl.review import ReviewStore

    return ReviewStore.open(hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def read_back(ds_bytes: bytes) -> Dataset:
    import io

    return pydicom.dcmread(io.BytesIO(ds_bytes))
