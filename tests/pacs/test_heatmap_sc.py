"""The heat-map Secondary Capture: conformant (dciodvfy), geometry and study copied from the
source header, and no person name printed while it is built."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medtl.pacs.heatmap_sc import build_sc, direction_letters, sc_geometry
from tests.conformance import dciodvfy
from tests.pacs.conftest import make_cr, make_ct

pytest.importorskip("highdicom")

ONE_WORD_NAMES = {"PatientName": "Quintessa", "ReferringPhysicianName": "Bartholomew"}


def as_metadata(ds: Dataset) -> Dataset:
    """``ds`` as DICOMweb metadata gives it back: the header without pixel data."""
    header = pydicom.Dataset.from_json(ds.to_json_dict(bulk_data_threshold=1e9))
    del header.PixelData
    return header


def cr_source() -> Dataset:
    ds = make_cr(generate_uid())
    ds.PatientOrientation = ["L", "F"]  # PA chest: rows to the patient's left, columns down
    ds.StudyDescription = "Chest PA"
    ds.PatientAge = "061Y"
    return as_metadata(ds)


def sc_of(source: Dataset, shape: tuple[int, int]) -> Dataset:
    rgb = np.zeros((*shape, 3), np.uint8)
    rgb[..., 0] = 200
    return build_sc(
        source,
        rgb,
        model="pacs-cxr@1.2.0",
        sop_instance_uid=generate_uid(),
        series_uid=generate_uid(),
    )


def conformant(sc: Dataset, tmp_path: Path) -> Dataset:
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    result = dciodvfy(path)
    assert result.errors == [], result.output
    return pydicom.dcmread(path)


def test_sc_of_a_cr_copies_orientation_body_part_and_study(tmp_path: Path) -> None:
    source = cr_source()
    sc = conformant(sc_of(source, (source.Rows, source.Columns)), tmp_path)
    assert list(sc.PatientOrientation) == ["L", "F"]  # the source's, not a made-up L\P
    assert sc.BodyPartExamined == "CHEST" and "Laterality" not in sc  # unpaired region
    assert sc.StudyDescription == "Chest PA" and sc.PatientAge == "061Y"
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientID == source.PatientID
    assert sc.AccessionNumber == source.AccessionNumber
    assert [float(v) for v in sc.PixelSpacing] == [0.2, 0.2]
    (ref,) = sc.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.BurnedInAnnotation == "YES" and "NOT FOR DIAGNOSIS" in sc.ImageComments


def test_sc_of_a_ct_slice_takes_its_orientation_from_the_image_plane(tmp_path: Path) -> None:
    source = as_metadata(make_ct(generate_uid(), n=3)[1])
    sc = conformant(sc_of(source, (source.Rows, source.Columns)), tmp_path)
    assert list(sc.PatientOrientation) == ["L", "P"]  # axial: IOP (1,0,0) (0,1,0)
    coronal = Dataset()
    coronal.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    assert sc_geometry(coronal, 8, 8)["PatientOrientation"] == ["L", "F"]


def test_paired_body_part_keeps_its_laterality(tmp_path: Path) -> None:
    source = cr_source()
    source.BodyPartExamined = "KNEE"
    source.Laterality = "R"
    sc = conformant(sc_of(source, (source.Rows, source.Columns)), tmp_path)
    assert sc.Laterality == "R"
    source.ImageLaterality = "L"
    del source.Laterality
    assert sc_geometry(source, 1, 1)["Laterality"] == "L"


def test_sc_from_a_minimal_c_find_header_is_conformant_with_empty_geometry(
    tmp_path: Path,
) -> None:
    """A DIMSE-only PACS gives study attributes and UIDs only: unknown stays empty."""
    full = cr_source()
    header = Dataset()
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(header, keyword, full[keyword].value)
    header.SeriesInstanceUID, header.SOPInstanceUID = full.SeriesInstanceUID, full.SOPInstanceUID
    header.SOPClassUID, header.Modality = full.SOPClassUID, "CR"
    sc = conformant(sc_of(header, (64, 64)), tmp_path)
    assert sc.PatientOrientation in ("", None, [])
    assert sc.Laterality in ("", None)  # Type 2C, body part unknown: present, empty
    assert "PixelSpacing" not in sc and "BodyPartExamined" not in sc


def test_one_word_names_are_never_printed_while_building(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], recwarn
) -> None:
    """highdicom warns about a one-word name *with the name*: the warning is captured and
    logged redacted; nothing reaches stderr, stdout or the warning machinery."""
    caplog.set_level(logging.DEBUG)
    source = cr_source()
    for keyword, name in ONE_WORD_NAMES.items():
        setattr(source, keyword, name)
    sc = conformant(sc_of(source, (source.Rows, source.Columns)), tmp_path)
    assert str(sc.PatientName) == "Quintessa"  # the original study's name, in the object
    out, err = capfd.readouterr()
    printed = [out, err, caplog.text, *(str(w.message) for w in recwarn)]
    for name in ONE_WORD_NAMES.values():
        assert not [text for text in printed if name in text], name
    assert any(
        "person name" in r.getMessage() and "<redacted>" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("vector", "letters"),
    [
        ((1, 0, 0), "L"),
        ((-1, 0, 0), "R"),
        ((0, 1, 0), "P"),
        ((0, -1, 0), "A"),
        ((0, 0, 1), "H"),
        ((0, 0, -1), "F"),
        ((0.8, 0.6, 0), "LP"),
        ((0.6, -0.8, 0.05), "AL"),
    ],
)
def test_direction_letters(vector: tuple[float, float, float], letters: str) -> None:
    assert direction_letters(np.asarray(vector, dtype=float)) == letters
