"""A real Orthanc for tests and benchmarks, and tiny model packages to analyse with.

Shared by ``tests/pacs`` (its fixtures) and ``bench/pacs_bench.py``, which must not import
from ``tests/``. Nothing here runs at import time; Orthanc is started only by
:meth:`OrthancServer.start`.

Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) runs as a plain process with a JSON
config in a folder of its own: HTTP basic authentication on, the DICOM port restricted by
AE title (only the modalities named in ``DicomModalities`` may associate), the DICOMweb
plugin loaded. It is stopped with SIGTERM and waited for (about 5 s).

Example::

    server = OrthancServer(tmp_path / "orthanc")
    server.start()
    try:
        server.upload(dataset)
        env = server.env()           # MEDTL_PACS_* variables pointing at it
    finally:
        server.stop()
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl._net import free_port

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "medtl", "orthanc-test-pw"
PACS_AET, MEDTL_AET, SCU_AET = "ORTHANC", "MEDTL", "STORESCU"


def orthanc_available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed."""
    return Path(ORTHANC).exists() and Path(PLUGIN).exists()


@dataclass
class OrthancServer:
    """One Orthanc process with its config, storage and ports.

    Args:
        root: folder for the config, storage and log.
        http_port: REST and DICOMweb port.
        dicom_port: the archive's DICOM port (AE title :data:`PACS_AET`).
        medtl_port: where medtl's listener is registered (modality ``medtl``).
    """

    root: Path
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    medtl_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REST root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        """HTTP basic credentials."""
        return USER, PASSWORD

    def write_config(self) -> Path:
        """Write ``orthanc.json`` under :attr:`root` and return its path."""
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

    def start(self, timeout_s: float = 30.0) -> None:
        """Start Orthanc and wait until its REST API and DICOM port answer.

        Raises:
            RuntimeError: it exited or did not answer in time (the log is in the message).
        """
        import requests

        config = self.write_config()
        log = (self.root / "orthanc.log").open("ab")
        self.proc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log, cwd=self.root)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.root / 'orthanc.log').read_text()}")
            try:
                up = requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok
                if up and self._dicom_port_open():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within {timeout_s:.0f} s")

    def _dicom_port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.dicom_port)) == 0

    def stop(self) -> None:
        """SIGTERM and wait (kill after 30 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def upload(self, ds: Dataset) -> str:
        """Store one dataset through the REST API; returns Orthanc's instance ID."""
        import requests

        from medtl.io.testing import to_bytes

        r = requests.post(f"{self.url}/instances", data=to_bytes(ds), auth=self.auth, timeout=30)
        r.raise_for_status()
        return str(r.json()["ID"])

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        """Call the REST API and return its JSON answer."""
        import requests

        r = requests.request(
            method, f"{self.url}{path}", json=body, auth=self.auth, timeout=timeout
        )
        r.raise_for_status()
        return r.json() if r.content else None

    def study_id(self, study_uid: str) -> str:
        """Orthanc's ID of a study, by StudyInstanceUID."""
        found = self.rest(
            "POST", "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
        )
        if not found:
            raise KeyError("no such study in Orthanc")
        return str(found[0])

    def send_to_medtl(self, orthanc_ids: list[str], *, synchronous: bool = True) -> Any:
        """Have Orthanc C-STORE resources to medtl's listener (modality ``medtl``).

        Args:
            orthanc_ids: Orthanc IDs of studies, series or instances.
            synchronous: wait for the transfer (else Orthanc runs it as a job).

        Returns:
            Orthanc's answer (the job when asynchronous).
        """
        body = {"Resources": orthanc_ids, "Synchronous": synchronous}
        return self.rest("POST", "/modalities/medtl/store", body, timeout=300)

    def env(self, *, dicomweb: bool = True, dimse: bool = True) -> dict[str, str]:
        """The medtl environment variables that point at this server (no password: write
        :data:`PASSWORD` to a file named by ``MEDTL_PACS_PASSWORD_FILE``)."""
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


def tiny_cr_package(root: Path, name: str = "pacs-cxr", version: str = "1.2.0") -> Path:
    """A tiny calibrated chest-radiograph model package (random weights, 64x64 input)."""
    import torch

    from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 2, 1, 1, options={"widths": [4, 8]}, dropout=0.0, labels=[])
    card = ModelCard(
        name=name,
        version=version,
        preprocessing=default_preprocessing("cxr", [64, 64]).model_dump(mode="json"),
        labels=["no nodule", "nodule"],
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": 2},
        operating_points=[
            CardOperatingPoint(name="youden", threshold=0.5, sensitivity=0.9, specificity=0.8)
        ],
        target_domain="CR chest",
        target_task="nodule yes/no",
    )
    return save_package(model, card, root / name)


def tiny_ct_package(
    root: Path, name: str = "pacs-ct", version: str = "0.3.1", size: int = 16
) -> Path:
    """A tiny calibrated CT model package (random weights, ``size``-cubed input)."""
    import torch

    from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 3, 1, 1, options={"widths": [4, 8]})
    card = ModelCard(
        name=name,
        version=version,
        preprocessing=default_preprocessing("ct", [size, size, size]).model_dump(mode="json"),
        labels=["no nodule", "nodule"],
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": 2},
        operating_points=[CardOperatingPoint(name="youden", threshold=0.5)],
    )
    return save_package(model, card, root / name)
