"""No PHI survives de-identification: written bytes, safe_meta, Scan.meta and logs.

The DICOM files carry PHI in the usual places (name, ID, birth date, institution, referring
physician, accession number, other patient IDs), in a private tag, in sequence items and
in the original file name; none of it may appear anywhere downstream.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medtl.io.deid import deidentify, pseudonym, safe_meta, write_deidentified

KEY = b"phi-test-key-0123456789abcdef012"
OTHER_KEY = b"another-key-0123456789abcdef0123"

PHI = {
    "PatientName": "DOE^JANE",
    "PatientID": "MRN-8675309",
    "PatientBirthDate": "19700101",
    "InstitutionName": "Mercy General Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "AccessionNumber": "ACC-5551234",
    "OtherPatientIDs": "OLD-424242",
}
#: Fragments that must not appear (case-insensitive) in anything derived from the files.
FORBIDDEN = [
    "DOE^",
    "DOE_",
    "DOE JANE",
    "JANE",
    "8675309",
    "19700101",
    "Mercy",
    "HOUSE",
    "GREGORY",
    "5551234",
    "424242",
    "Elm Street",
    "ACME_SECRET",
]


def phi_dataset(study_uid: str, series_uid: str, z: float) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.SourceApplicationEntityTitle = "MERCY_PACS"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.PatientAddress = "12 Elm Street, Springfield"
    ds.StudyDate = "20240110"
    ds.StudyDescription = "CT chest DOE JANE"
    ds.Modality = "CT"
    ds.PatientSex = "F"
    # a private tag carrying the name
    ds.private_block(0x0019, "ACME_SECRET 1.0", create=True).add_new(0x10, "LO", "DOE^JANE")
    # sequence items carrying the ID and the name
    other = Dataset()
    other.PatientID = "MRN-8675309"
    other.IssuerOfPatientID = "Mercy General Hospital"
    ds.OtherPatientIDsSequence = Sequence([other])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.PatientID = "MRN-8675309"
    ref.PatientName = "DOE^JANE"
    ds.SourceImageSequence = Sequence([ref])
    # a valid CT slice
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.8, 0.8]
    ds.SliceThickness = 2.0
    ds.Rows = 8
    ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.PixelData = (np.arange(64, dtype=np.int16).reshape(8, 8) + int(z)).tobytes()
    return ds


def assert_no_phi(text: str | bytes, where: str) -> None:
    haystack = text.lower() if isinstance(text, str) else text.decode("latin-1").lower()
    for fragment in FORBIDDEN:
        assert fragment.lower() not in haystack, f"{fragment!r} leaked into {where}"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "medtl_home"))
    return tmp_path / "medtl_home"


@pytest.fixture()
def phi_files(tmp_path: Path) -> tuple[list[Path], list[Dataset]]:
    study, series = generate_uid(), generate_uid()
    folder = tmp_path / "DOE_JANE_MRN-8675309"
    folder.mkdir()
    datasets = [phi_dataset(study, series, z) for z in (0.0, 2.0)]
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"DOE_JANE_{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    # sanity: the PHI really is in the source bytes (so the assertions below can fail)
    raw = paths[0].read_bytes()
    assert b"DOE^JANE" in raw and b"MRN-8675309" in raw and b"ACME_SECRET" in raw
    return paths, datasets


def test_written_files_safe_meta_and_logs_hold_no_phi(
    phi_files, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths, originals = phi_files
    caplog.set_level(logging.DEBUG)
    written = write_deidentified(paths, tmp_path / "out", key=KEY)
    assert len(written) == 2
    for path, original in zip(written, originals, strict=True):
        assert_no_phi(path.name, "file name")
        raw = path.read_bytes()
        assert_no_phi(raw, f"bytes of {path.name}")
        for uid in (
            original.StudyInstanceUID,
            original.SeriesInstanceUID,
            original.SOPInstanceUID,
            original.FrameOfReferenceUID,
        ):
            assert uid.encode() not in raw  # original UIDs are linkable identifiers
        back = pydicom.dcmread(path)
        assert back.PatientID == pseudonym("MRN-8675309", key=KEY)
        assert back.PatientIdentityRemoved == "YES"
        meta = safe_meta(back)
        assert_no_phi(json.dumps(meta), "safe_meta")
        assert meta["patient_pseudonym"] == back.PatientID
    a, b = (pydicom.dcmread(p) for p in written)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID != originals[0].FrameOfReferenceUID
    assert a.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert_no_phi(caplog.text, "logs")
    for record in caplog.records:
        assert_no_phi(str(record.args), "log arguments")


def test_different_keys_give_different_pseudonyms(phi_files) -> None:
    _, originals = phi_files
    one = deidentify(originals[0], key=KEY)
    two = deidentify(originals[0], key=OTHER_KEY)
    assert one.PatientID != two.PatientID
    assert one.StudyInstanceUID != two.StudyInstanceUID
    assert one.SeriesInstanceUID != two.SeriesInstanceUID
    assert deidentify(originals[1], key=KEY).StudyInstanceUID == one.StudyInstanceUID


def test_load_scan_end_to_end_has_no_phi(
    phi_files, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load = pytest.importorskip("medtl.io.load")
    paths, _ = phi_files
    caplog.set_level(logging.DEBUG)
    for source in (paths[0].parent, paths[0], paths[0].read_bytes()):
        scan = load.load_scan(source)
        assert scan.modality == "CT"
        assert_no_phi(json.dumps(scan.summary(), default=str), "Scan.summary()")
        assert str(scan.meta.get("patient_pseudonym", "")).startswith("PSN-")
    assert (home / "secrets" / "deid.key").exists()  # the site key, created on first use
    assert_no_phi(caplog.text, "logs of load_scan")


def test_nifti_and_png_text_never_reach_the_scan(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load = pytest.importorskip("medtl.io.load")
    caplog.set_level(logging.DEBUG)
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4))
    img.header["descrip"] = b"DOE^JANE MRN-8675309"
    img.header["aux_file"] = b"Mercy"
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "DOE^JANE MRN-8675309 19700101")
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, pnginfo=info)
    for source in (gzip.compress(img.to_bytes()), png):
        scan = load.load_scan(source)
        assert_no_phi(json.dumps(scan.summary(), default=str), "Scan.summary()")
    assert_no_phi(caplog.text, "logs")
