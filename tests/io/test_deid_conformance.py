"""De-identified copies stay valid for their IOD: dicom3tools' ``dciodvfy`` finds no error.

Each source is a complete, conformant object (``dciodvfy`` finds no error in it either, so a
failure is de-identification's) full of PHI and of attributes the profile removes, empties
or cleans; among them Type 2 attributes whose text the free-text cleaner empties (CT's
Position Reference Indicator) and DX's Acquisition Context Sequence (``X/Z``). The Type 1 /
Type 2 rule itself (:mod:`medtl.io.deid_iod`) is checked on attributes of the Enhanced CT
IOD too, without ``dciodvfy``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medtl.io import deid_iod
from medtl.io.deid import deidentify, write_deidentified
from medtl.io.deid_actions import conformant_action
from medtl.io.testing import AXIAL, chest_pixels, image_dataset, radiograph_dataset
from tests.conformance import dciodvfy

KEY = b"0123456789abcdef0123456789abcdef"

#: Identifying values put into every source; none may be in a de-identified file.
PHI = {
    "PatientName": "Doe^Jane^Secret",
    "PatientID": "PID-98765-PHI",
    "PatientBirthDate": "19450317",
    "AccessionNumber": "ACC-PHI-1",
    "ReferringPhysicianName": "Who^Doctor",
    "InstitutionName": "General Hospital PHI",
    "OperatorsName": "Tech^Tom",
    "PerformingPhysicianName": "Doc^Perf",
    "StationName": "STMARY-CT2",
    "DeviceSerialNumber": "SN-4411",
    "StudyDescription": "CHEST Dr Smith 020395",
    "SeriesDescription": "Chest UKE_pa_020395",
    "ProtocolName": "CHEST Dr Smith",
    "ImageComments": "seen by Dr Who",
}
DATES = {
    "PatientSex": "F",
    "PatientAge": "079Y",
    "StudyDate": "20240102",
    "StudyTime": "101500",
    "SeriesDate": "20240102",
    "SeriesTime": "101600",
    "ContentDate": "20240102",
    "ContentTime": "101600",
    "AcquisitionDate": "20240102",
    "AcquisitionTime": "101600",
    "BurnedInAnnotation": "NO",
}
SECRETS = [b"Doe^Jane", b"PID-98765", b"ACC-PHI", b"Who^Doctor", b"General Hospital", b"Tech^Tom"]
SECRETS += [b"STMARY", b"SN-4411", b"Smith", b"020395", b"STERNUM ACME", b"19450317"]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _fields(body_part: str = "CHEST") -> dict[str, object]:
    return {"patient": {}, **PHI, **DATES, "BodyPartExamined": body_part, "StudyID": "1"}


def ct() -> Dataset:
    return image_dataset(
        np.zeros((16, 16), np.int16),
        modality="CT",
        rescale=(1.0, -1024.0),
        position=(0.0, 0.0, 0.0),
        orientation=AXIAL,
        slice_thickness=1.0,
        FrameOfReferenceUID=generate_uid(),
        PositionReferenceIndicator="STERNUM ACME",  # free text the cleaner empties; Type 2
        ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
        KVP="120",
        AcquisitionNumber=1,
        PatientPosition="HFS",
        **_fields(),
    )


def mr() -> Dataset:
    return image_dataset(
        np.zeros((16, 16), np.uint16),
        modality="MR",
        position=(0.0, 0.0, 0.0),
        orientation=AXIAL,
        slice_thickness=3.0,
        FrameOfReferenceUID=generate_uid(),
        PositionReferenceIndicator="STERNUM ACME",
        ImageType=["ORIGINAL", "PRIMARY", "OTHER"],
        ScanningSequence="SE",
        SequenceVariant="NONE",
        ScanOptions="",
        MRAcquisitionType="2D",
        RepetitionTime="500",
        EchoTime="10",
        EchoTrainLength="1",
        PatientPosition="HFS",
        **_fields(),
    )


def cr() -> Dataset:
    fields = _fields()
    del fields["BodyPartExamined"]
    return radiograph_dataset(
        chest_pixels(64),
        modality="CR",
        photometric="MONOCHROME1",
        PatientOrientation=["L", "F"],
        ImageType=["ORIGINAL", "PRIMARY"],
        **fields,
    )


def dx() -> Dataset:
    fields = _fields()
    del fields["BodyPartExamined"]
    return radiograph_dataset(
        chest_pixels(64),
        modality="DX",
        pixel_spacing=None,
        imager_pixel_spacing=(0.2, 0.2),
        window=(2048, 4096),
        PatientOrientation=["L", "F"],
        ImageType=["ORIGINAL", "PRIMARY"],
        ImageLaterality="U",
        LossyImageCompression="00",
        PresentationLUTShape="IDENTITY",
        RescaleIntercept="0",
        RescaleSlope="1",
        RescaleType="US",
        DetectorType="SCINTILLATOR",
        DetectorID="DET-SN-77",
        PositionerType="COLUMN",
        AnatomicRegionSequence=Sequence([_code("816094009", "SCT", "Chest")]),
        ViewCodeSequence=Sequence([_code("272479007", "SCT", "postero-anterior")]),
        AcquisitionContextSequence=Sequence(),
        **fields,
    )


def sc() -> Dataset:
    return image_dataset(
        np.zeros((16, 16), np.uint8),
        modality="OT",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        pixel_spacing=None,
        ConversionType="WSD",
        PatientOrientation="",
        **_fields(),
    )


SOURCES: dict[str, Callable[[], Dataset]] = {"CT": ct, "MR": mr, "CR": cr, "DX": dx, "SC": sc}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_deidentified_copy_passes_dciodvfy(kind: str, tmp_path: Path) -> None:
    src = tmp_path / f"{kind}.dcm"
    SOURCES[kind]().save_as(src, enforce_file_format=True)
    before = dciodvfy(src)
    assert before.errors == [], f"the {kind} source itself is not conformant:\n{before.output}"
    assert all(secret in src.read_bytes() for secret in SECRETS[:6])

    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    after = dciodvfy(written)
    assert after.errors == [], f"de-identified {kind}:\n{after.output}"
    data = written.read_bytes()
    leaked = [secret for secret in SECRETS if secret in data]
    assert not leaked, leaked
    out = pydicom.dcmread(written)
    for keyword in ("PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyDate"):
        assert keyword in out and out[keyword].value in ("", None), keyword  # Type 2: emptied
    if kind in ("CT", "MR"):  # Type 2, emptied by the free-text cleaner: still present
        assert "PositionReferenceIndicator" in out
        assert out.PositionReferenceIndicator in ("", None)


def test_x_z_sequence_is_emptied_where_the_iod_requires_it() -> None:
    """DX: Acquisition Context Sequence (X/Z, Type 2) loses its items but stays present; a
    CT (where it is Type 3) loses it."""
    item = Dataset()
    item.ConceptNameCodeSequence = Sequence([_code("113703", "DCM", "Operator")])
    item.TextValue = "Tech^Tom"
    for make, kept in ((dx, True), (ct, False)):
        ds = make()
        ds.AcquisitionContextSequence = Sequence([item])
        out = deidentify(ds, key=KEY)
        assert ("AcquisitionContextSequence" in out) is kept
        if kept:
            assert len(out.AcquisitionContextSequence) == 0


def test_type_1_attributes_get_dummy_values_not_removed() -> None:
    """Enhanced CT: Device Serial Number (X/Z/D) and Content Date (Z/D) are Type 1."""
    ds = ct()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    out = deidentify(ds, key=KEY)
    assert out.DeviceSerialNumber == "ANONYMIZED"
    assert out.ContentDate == "19000101"
    assert out["StudyDate"].value in ("", None)  # Type 2: empty
    assert "ImageComments" not in out and "SeriesDate" not in out  # Type 3: removed


@pytest.mark.parametrize(
    ("action", "kind", "expected"),
    [
        ("X", None, "X"),
        ("X", "2", "Z"),
        ("X", "2C", "Z"),
        ("X", "1", "D"),
        ("X", "1C", "D"),
        ("Z", "1", "D"),
        ("Z", "2", "Z"),
        ("Z", None, "Z"),
        ("U", "1", "U"),
        ("K", "2", "K"),
    ],
)
def test_conformant_action(action: str, kind: str | None, expected: str) -> None:
    assert conformant_action(action, kind) == expected


def test_required_types_come_from_the_iod() -> None:
    ct_types = deid_iod.required_types("1.2.840.10008.5.1.4.1.1.2")
    assert ct_types["PositionReferenceIndicator"] == "2"
    assert ct_types["PatientName"] == "2" and ct_types["Modality"] == "1"
    assert "StudyDescription" not in ct_types  # Type 3
    dx_types = deid_iod.required_types("1.2.840.10008.5.1.4.1.1.1.1")
    assert dx_types["AcquisitionContextSequence"] == "2"
    assert dx_types["ImageLaterality"] == "1"
    unknown = deid_iod.required_types("1.2.3.4")  # strictest type over the table's IODs
    assert unknown["DeviceSerialNumber"] == "1" and unknown["PatientSex"] == "2"
    assert "EncryptedAttributesSequence" not in unknown


def test_generator_reproduces_the_committed_types(tmp_path: Path) -> None:
    """The committed JSON is what the generator makes from the installed highdicom."""
    pytest.importorskip("highdicom", reason="the generator reads highdicom's PS3.3 tables")
    out = tmp_path / "types.json"
    subprocess.run(
        [sys.executable, "-m", "medtl.io._deid_iod_gen", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    committed = json.loads(Path(deid_iod.__file__).with_name(deid_iod.TYPES_FILE).read_text())
    fresh = json.loads(out.read_text())
    assert fresh["sop_classes"] == committed["sop_classes"]
    assert fresh["iods"] == committed["iods"], "regenerate: python -m medtl.io._deid_iod_gen"
