"""Test helpers for the app: a tiny registered model package, DICOM bytes with PHI in the
header, users with cheap argon2 parameters, and bad uploads."""

from __future__ import annotations

import contextlib
import io
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ComputedRadiographyImageStorage

from medtl.artifacts import PredictionDetails
from medtl.io import load_scan
from medtl.io.testing import image_dataset, to_bytes
from medtl.review import ReviewStore

APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
PHI_NAME = "ZYXWV^QUENTIN"
PHI_ID = "MRN-90817-55"
PASSWORD = "correct horse battery"
SIZE = 64
REPORT_MARKER = "Validation report of the tiny test model"


def cheap_hasher():
    """An argon2 hasher with tiny costs: signing in stays fast in tests."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def make_package(
    root: Path,
    name: str = "tinycxr",
    version: str = "1.0.0",
    *,
    report_html: str | None = None,
    **card_fields,
) -> Path:
    """Build and register a small (untrained, seeded) 2D CR package with calibration,
    operating points and a validation report. Needs MEDTL_HOME set.

    ``report_html`` replaces the report; ``card_fields`` override model card fields.

    Returns:
        The registered package folder.
    """
    import torch

    from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
    from medtl.models.package import register_package, resolve_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 2, 1, 1, options={"widths": [4, 8]}, dropout=0.0, labels=[])
    card = ModelCard(
        name=name,
        version=version,
        preprocessing=default_preprocessing("cxr", [SIZE, SIZE]).model_dump(mode="json"),
        labels=["no nodule", "nodule"],
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": 2},
        operating_points=[
            CardOperatingPoint(
                name="youden",
                threshold=0.5,
                sensitivity=0.88,
                specificity=0.81,
                goal="maximise Youden's J",
            )
        ],
        target_domain="CR chest",
        target_task="nodule yes/no",
        intended_use="Test model: flags chest radiographs for a second look.",
    )
    if card_fields:
        card = card.model_copy(update=card_fields)
    report = report_html or f"<html><body><h1>{REPORT_MARKER}</h1><p>AUROC 0.5</p></body></html>"
    folder = save_package(model, card, root / f"{name}-{version}", report_html=report)
    register_package(folder)
    return resolve_package(f"{name}@{version}")


def dicom_bytes(
    seed: int = 0, modality: str = "CR", burned_in: bool = False, spacing: float = 0.2
) -> bytes:
    """A 64x64 16-bit MONOCHROME2 DICOM with a patient name and ID in its header."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(1000, 80, (SIZE, SIZE)), 0, 4095).astype(np.uint16)
    pixels[20:32, 24:36] += 500
    ds = image_dataset(
        pixels,
        modality=modality,
        sop_class_uid=ComputedRadiographyImageStorage,
        pixel_spacing=(spacing, spacing),
        bits_stored=12,
        patient={"PatientName": PHI_NAME, "PatientID": PHI_ID, "PatientBirthDate": "19580412"},
        BodyPartExamined="CHEST",
        **({"BurnedInAnnotation": "YES"} if burned_in else {}),
    )
    return to_bytes(ds)


def seg_bytes() -> bytes:
    """A DICOM Segmentation Storage object (not an image to analyse)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=5)))
    seg_uid = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.SOPClassUID = seg_uid
    ds.file_meta.MediaStorageSOPClassUID = seg_uid
    ds.Modality = "SEG"
    return to_bytes(ds)


def fake_pdf() -> bytes:
    """A small PDF document (to be uploaded under a .dcm name)."""
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n"
        b"%%EOF\n"
    )


def bomb_png(side: int = 60000) -> bytes:
    """A PNG declaring ``side`` x ``side`` grey pixels with almost no data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\0" * (side + 1) * 4, 9)  # a few rows; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# --- driving the app through AppTest ------------------------------------------------------
def new_app(timeout: float = 60.0):
    """A fresh AppTest of app/main.py (one browser session)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP_MAIN), default_timeout=timeout)


def sign_in(at, username: str, password: str = PASSWORD):
    """Fill and submit the sign-in form; returns the AppTest after the run."""
    if not at.text_input:
        at.run()
    at.text_input(key="sign_in_username").input(username)
    at.text_input(key="sign_in_password").input(password)
    at.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
    return at


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape(text: str) -> str:
    """Markdown source with the backslash escapes and invisible word joiners of outside
    text resolved (what a reader sees)."""
    return _ESCAPED.sub(r"\1", text).replace("\u2060", "")


def page_text(at) -> str:
    """Every piece of text the page shows (elements, labels, tables), joined by newlines,
    with Markdown backslash escapes resolved (the characters a reader sees)."""
    parts: list[str] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "text",
        "error",
        "warning",
        "info",
        "success",
        "exception",
        "code",
        "latex",
        "json",
    ):
        for element in getattr(at, kind, []):
            parts.append(str(getattr(element, "value", element)))
    for element in at.metric:
        parts.extend([str(element.label), str(element.value)])
    for frame in at.dataframe:
        parts.append(frame.value.to_string())
    for kind in (
        "button",
        "selectbox",
        "radio",
        "text_input",
        "text_area",
        "checkbox",
        "number_input",
        "slider",
        "multiselect",
        "toggle",
        "file_uploader",
    ):
        for widget in getattr(at, kind, []):
            parts.append(str(getattr(widget, "label", "")))
            options = getattr(widget, "options", None)
            if options:
                parts.extend(str(o) for o in options)
    for image in at.get("image"):
        parts.extend(str(i.caption) for i in image.proto.imgs)
    for kind in ("expandable", "status", "tab"):
        parts.extend(str(getattr(block, "label", "")) for block in at.get(kind))
    return unescape("\n".join(parts))


def upload(at, content: bytes, name: str = "scan.dcm", mime: str = "application/dicom"):
    """Put a file in the upload widget and run."""
    uploader = at.file_uploader[0]
    uploader.set_value((name, content, mime))
    return at.run()


def analyse(at):
    """Press Analyse and run."""
    return at.button(key="analyse").click().run()


def errors(at) -> list[str]:
    """The texts of every st.error on the page (escapes resolved)."""
    return [unescape(str(e.value)) for e in at.error]


def inline_images(at) -> list[str]:
    """The ``data:`` URIs of the pictures the viewer drew inline (st.html elements)."""
    found = []
    for element in at.get("html"):
        found += re.findall(r'src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', element.proto.body)
    return found


def seed_case(seed: int = 0, probability: float = 0.73) -> str:
    """A case with one de-identified image and one AI result, uploaded by alice."""
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        case = store.create_case(alice, load_scan(dicom_bytes(seed=seed)))
        store.record_prediction(
            alice,
            case.case_id,
            model_name="tinycxr",
            model_version="1.0.0",
            label="nodule",
            probability=probability,
            threshold=0.5,
            details=PredictionDetails(labels=["no nodule", "nodule"], operating_point="youden"),
        )
        return case.case_id


# --- hostile values (issue 15: markup from headers, packages and users) -------------------
EVIL_HOST = "evil.example"
#: Markdown and HTML payloads, each of which a Markdown/HTML renderer would turn into an
#: element fetching from (or pointing to) another host.
HOSTILE = {
    "modality": f"![](//{EVIL_HOST}/m)",
    "body_part": f"<img src=//{EVIL_HOST}/b>",
    "series": f"[x](javascript:alert(1)) ![a](https://{EVIL_HOST}/s) www.{EVIL_HOST}",
    "comment": (
        f'<img src="https://{EVIL_HOST}/c"> ![c](//{EVIL_HOST}/c2) [click](javascript:alert(2))'
    ),
    "intended_use": f"Use it. ![](https://{EVIL_HOST}/iu) <form action=//{EVIL_HOST}/f>",
    "label": f"nodule ![](//{EVIL_HOST}/l)",
    "directive": f":red[alert] :material/warning: $x^2$ <b>bold</b> [y]({EVIL_HOST})",
}


def hostile_dicom_bytes(seed: int = 21) -> bytes:
    """:func:`dicom_bytes` with Markdown/HTML payloads in Modality, BodyPartExamined and
    SeriesDescription (values longer than their VR allows, as an attacker would write)."""
    import warnings

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=seed)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the over-long CS values
        ds.Modality = HOSTILE["modality"]
        ds.BodyPartExamined = HOSTILE["body_part"]
        ds.SeriesDescription = HOSTILE["series"]
        buf = io.BytesIO()
        ds.save_as(buf)
    return buf.getvalue()


@contextlib.contextmanager
def serving_app(
    folder: Path, env: dict[str, str], timeout: float = 90, **launch: object
) -> Iterator[str]:
    """A real ``streamlit run`` server of the app on a free port; yields its URL.

    The server log is kept as ``folder/server.log.keep`` for a failing test to read.
    """
    import shutil
    import subprocess

    from medtl.app_launcher import free_port, launch_app, wait_until_ready

    port = free_port()
    log = folder / "server.log"
    proc = launch_app(port=port, env=env, log_file=log, **launch)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=timeout, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a stuck server must not hide the test result
            proc.kill()
        if log.is_file():
            shutil.copyfile(log, folder / "server.log.keep")


def sign_in_browser(page, name: str, password: str) -> None:
    """Fill the sign-in form of a real browser page and submit it (Playwright)."""
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
