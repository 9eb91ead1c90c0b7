"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

Orthanc runs as a plain process with a JSON config in a temp folder: HTTP basic
authentication on, the DICOM port restricted by AE title (only the modalities named in
``DicomModalities`` may associate), the DICOMweb plugin loaded. It is stopped with SIGTERM
and waited for. The studies stored into it are DICOM files written with pydicom, with a
patient name and ID that the PHI tests look for afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.io.dicom_factory import cr_image, ct_series, to_bytes

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "medtl", "orthanc-test-pw"
PACS_AET, MEDTL_AET, SCU_AET = "ORTHANC", "MEDTL", "STORESCU"
PHI_NAME = "PACSPHI^QUINTUS"
PHI_ID = "PACS-MRN-77120"
PHI_ACCESSION = "ACC-PACS-4411"
CT_SLICES = 40


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """One Orthanc process with its config, storage and ports."""

    root: Path
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    medtl_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def write_config(self) -> Path:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "medtl-test-pacs",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": PACS_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "DicomModalities": {
                "medtl": [MEDTL_AET, "127.0.0.1", self.medtl_port],
                "storescu": [SCU_AET, "127.0.0.1", 104],
            },
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowMove": False,
            "DicomAlwaysAllowGet": False,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpTimeout": 30,
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        return path

    def start(self) -> None:
        config = self.write_config()
        log = (self.root / "orthanc.log").open("ab")
        self.proc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log, cwd=self.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.root / 'orthanc.log').read_text()}")
            try:
                up = requests.get(f"{self.url}/system", auth=(USER, PASSWORD), timeout=1).ok
                if up and self._dicom_port_open():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("Orthanc did not answer within 30 s")

    def _dicom_port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.dicom_port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def upload(self, ds: Dataset) -> None:
        r = requests.post(
            f"{self.url}/instances", data=to_bytes(ds), auth=(USER, PASSWORD), timeout=30
        )
        r.raise_for_status()

    def env(self, *, dicomweb: bool = True, dimse: bool = True) -> dict[str, str]:
        """The medtl environment variables that point at this server."""
        out = {"MEDTL_PACS_USERNAME": USER, "MEDTL_AE_TITLE": MEDTL_AET}
        if dicomweb:
            out["MEDTL_PACS_DICOMWEB_URL"] = self.dicomweb_url
        if dimse:
            out.update(
                MEDTL_PACS_AE_TITLE=PACS_AET,
                MEDTL_PACS_HOST="127.0.0.1",
                MEDTL_PACS_PORT=str(self.dicom_port),
            )
        return out


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
    if not (Path(ORTHANC).exists() and Path(PLUGIN).exists()):
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


def _cr_package(root: Path) -> Path:
    import torch

    from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 2, 1, 1, options={"widths": [4, 8]}, dropout=0.0, labels=[])
    card = ModelCard(
        name="pacs-cxr",
        version="1.2.0",
        preprocessing=default_preprocessing("cxr", [64, 64]).model_dump(mode="json"),
        labels=["no nodule", "nodule"],
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": 2},
        operating_points=[
            CardOperatingPoint(name="youden", threshold=0.5, sensitivity=0.9, specificity=0.8)
        ],
        target_domain="CR chest",
        target_task="nodule yes/no",
    )
    return save_package(model, card, root / "pacs-cxr")


def _ct_package(root: Path) -> Path:
    import torch

    from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 3, 1, 1, options={"widths": [4, 8]})
    card = ModelCard(
        name="pacs-ct",
        version="0.3.1",
        preprocessing=default_preprocessing("ct", [16, 16, 16]).model_dump(mode="json"),
        labels=["no nodule", "nodule"],
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": 2},
        operating_points=[CardOperatingPoint(name="youden", threshold=0.5)],
    )
    return save_package(model, card, root / "pacs-ct")


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    return {"CR": _cr_package(root), "CT": _ct_package(root)}


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
