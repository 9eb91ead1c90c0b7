"""De-identification: the PS3.15 Basic Profile actions, keyed UIDs, pseudonyms, safe_meta."""

from __future__ import annotations

import json
import logging
import re
import stat

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medtl.io import deid
from medtl.io.deid import (
    burned_in_status,
    deidentify,
    load_key,
    pseudonym,
    pseudonymous_uid,
    safe_meta,
    write_deidentified,
)
from medtl.io.deid_tables import BEYOND_TABLE, KEPT_UIDS, STRICTER_THAN_TABLE, profile_table
from medtl.io.errors import CorruptScanError

KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def make_ct(study_uid: str | None = None, series_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.SourceApplicationEntityTitle = "HOSP_PACS"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "ROE^RICHARD"
    ds.PatientID = "MRN-1234"
    ds.PatientBirthDate = "19600615"
    ds.PatientSex = "M"
    ds.StudyDate = "20240110"
    ds.StudyTime = "101500"
    ds.SeriesDate = "20240110"
    ds.AccessionNumber = "ACC-777"
    ds.InstitutionName = "General Hospital"
    ds.ReferringPhysicianName = "WHO^DOCTOR"
    ds.SeriesDescription = "Chest ROE RICHARD"
    ds.DeviceSerialNumber = "SN-4242"
    ds.Manufacturer = "ACME"
    ds.ManufacturerModelName = "Scanner 9000"
    ds.BodyPartExamined = "CHEST"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(16, dtype=np.int16).reshape(4, 4).tobytes()
    return ds


def test_medtl_choices_name_real_attributes_and_are_never_milder_than_the_table() -> None:
    for table in (BEYOND_TABLE, STRICTER_THAN_TABLE, KEPT_UIDS):
        for keyword in table:
            assert tag_for_keyword(keyword) is not None, keyword
    for keyword, action in STRICTER_THAN_TABLE.items():
        assert action == "X", keyword
        assert profile_table().basic_action(tag_for_keyword(keyword)) is not None, keyword
    for keyword, action in BEYOND_TABLE.items():
        assert profile_table().basic_action(tag_for_keyword(keyword)) is None, keyword
        assert action in {"X", "U", "K"}, keyword
        if action == "U":
            assert dictionary_VR(tag_for_keyword(keyword)) == "UI", keyword


def test_pseudonym_format_deterministic_and_keyed() -> None:
    first = pseudonym("MRN-1234", key=KEY)
    assert re.fullmatch(r"PSN-[0-9A-F]{10}", first)
    assert pseudonym(" MRN-1234 ", key=KEY) == first
    assert pseudonym("MRN-1235", key=KEY) != first
    assert pseudonym("MRN-1234", key=OTHER_KEY) != first
    case = pseudonym("MRN-1234", key=KEY, prefix="CASE")
    assert case.startswith("CASE-") and case[5:] != first[4:]


def test_pseudonymous_uid_is_valid_and_stable() -> None:
    original = "1.2.826.0.1.3680043.8.498.1234567890"
    new = pseudonymous_uid(original, key=KEY)
    assert new.startswith("2.25.") and len(new) <= 64
    assert UID(new).is_valid
    assert pseudonymous_uid(original + "\x00", key=KEY) == new
    assert pseudonymous_uid(original, key=OTHER_KEY) != new


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        pseudonym("x", key=b"short")


def test_deidentify_applies_profile_and_leaves_input_alone() -> None:
    ds = make_ct()
    original_sop = ds.SOPInstanceUID
    out = deidentify(ds, key=KEY)
    assert ds.PatientName == "ROE^RICHARD" and ds.SOPInstanceUID == original_sop
    assert out.PatientID == pseudonym("MRN-1234", key=KEY)
    assert str(out.PatientName) == out.PatientID
    assert out.PatientBirthDate == "" and out.StudyDate == "" and out.StudyTime == ""
    assert out.AccessionNumber == "" and out.ReferringPhysicianName == ""
    for removed in ("InstitutionName", "SeriesDescription", "DeviceSerialNumber", "SeriesDate"):
        assert removed not in out, removed
    assert out.SOPInstanceUID == pseudonymous_uid(original_sop, key=KEY)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.SOPClassUID == CTImageStorage
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.Manufacturer == "ACME" and out.BodyPartExamined == "CHEST"
    assert out.PatientSex == "M" and out.PatientAge == "063Y"  # derived from the dates
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113108"]
    assert out.pixel_array.tolist() == ds.pixel_array.tolist()


def test_in_place_modifies_the_given_dataset() -> None:
    ds = make_ct()
    out = deidentify(ds, key=KEY, in_place=True)
    assert out is ds and ds.PatientID.startswith("PSN-")


def test_private_tags_removed_recursively_and_sequences_cleaned() -> None:
    ds = make_ct()
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "ROE^RICHARD")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
    ds.add_new(0x60004000, "LT", "ROE RICHARD")  # overlay comments
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.PatientID = "MRN-1234"
    item.PatientName = "ROE^RICHARD"
    item.private_block(0x0031, "ACME 1.0", create=True).add_new(0x01, "LO", "secret")
    ds.ReferencedImageSequence = Sequence([item])
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OLD-99"

    out = deidentify(ds, key=KEY)
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert not any(0x6000 <= elem.tag.group <= 0x60FF for elem in out)
    assert "OtherPatientIDsSequence" not in out
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == out.SOPInstanceUID  # consistent U mapping
    assert ref.ReferencedSOPClassUID == CTImageStorage
    assert ref.PatientID == out.PatientID
    assert ref.PatientName == ""


def test_safety_nets_for_unlisted_names_dates_and_uids() -> None:
    ds = make_ct()
    for keyword in ("EvaluatorName", "DateOfGainCalibration", "TableFrameOfReferenceUID"):
        assert profile_table().basic_action(tag_for_keyword(keyword)) is None, keyword
    ds.EvaluatorName = "SMITH^JOHN"
    ds.DateOfGainCalibration = "20240111"
    ds.TableFrameOfReferenceUID = "1.2.3.4.5.6"
    ds.add_new(0x00091001, "LO", "x")  # private, for good measure
    out = deidentify(ds, key=KEY)
    assert out.EvaluatorName == ""
    assert "DateOfGainCalibration" not in out
    assert out.TableFrameOfReferenceUID == pseudonymous_uid("1.2.3.4.5.6", key=KEY)


def test_registry_uids_are_never_replaced() -> None:
    ds = make_ct()
    ds.UID = "1.2.840.10008.5.1.4.1.1.2"  # a DICOM-registry UID in a U attribute
    out = deidentify(ds, key=KEY)
    assert out.UID == "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")
@pytest.mark.parametrize(
    ("given", "expected"), [("045Y", "045Y"), ("095Y", "090Y"), ("006M", "006M"), ("abc", None)]
)
def test_patient_age_retained_and_capped(given: str, expected: str | None) -> None:
    ds = make_ct()
    ds.PatientAge = given
    del ds.PatientBirthDate
    out = deidentify(ds, key=KEY)
    assert out.get("PatientAge") == expected


def test_age_over_89_from_dates_is_capped() -> None:
    ds = make_ct()
    ds.PatientBirthDate = "19200101"
    assert deidentify(ds, key=KEY).PatientAge == "090Y"


def test_without_patient_characteristics_option() -> None:
    ds = make_ct()
    ds.PatientWeight = 70
    out = deidentify(ds, key=KEY, retain_patient_characteristics=False)
    for keyword in ("PatientAge", "PatientWeight"):  # Type 3: removed
        assert keyword not in out
    assert out["PatientSex"].value in ("", None)  # Type 2 in the CT IOD: kept, empty
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]


def test_missing_patient_id_uses_study_not_a_shared_pseudonym() -> None:
    a, b = make_ct(), make_ct()
    for ds in (a, b):
        del ds.PatientID
    pa, pb = deidentify(a, key=KEY).PatientID, deidentify(b, key=KEY).PatientID
    assert pa.startswith("PSN-") and pb.startswith("PSN-") and pa != pb


def test_deidentify_twice_is_idempotent() -> None:
    once = deidentify(make_ct(), key=KEY)
    twice = deidentify(once, key=KEY)
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert twice[keyword].value == once[keyword].value


def test_same_study_maps_to_same_uids_across_files() -> None:
    study, series = generate_uid(), generate_uid()
    a = deidentify(make_ct(study, series), key=KEY)
    b = deidentify(make_ct(study, series), key=KEY)
    assert a.StudyInstanceUID == b.StudyInstanceUID != study
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != series
    assert a.SOPInstanceUID != b.SOPInstanceUID


def test_safe_meta_whitelist_and_refusal() -> None:
    ds = make_ct()
    with pytest.raises(ValueError, match="de-identified"):
        safe_meta(ds)
    meta = safe_meta(deidentify(ds, key=KEY))
    json.dumps(meta)
    assert meta["modality"] == "CT"
    assert meta["sop_class_name"] == "CT Image Storage"
    assert meta["patient_pseudonym"] == pseudonym("MRN-1234", key=KEY)
    assert meta["study_uid"].startswith("2.25.") and meta["series_uid"].startswith("2.25.")
    assert (meta["rows"], meta["columns"], meta["bits_stored"]) == (4, 4, 12)
    assert meta["patient_sex"] == "M" and meta["patient_age"] == "063Y"
    assert meta["manufacturer_model"] == "Scanner 9000"
    assert (meta["burned_in_annotation"], meta["burned_in_warning"]) == ("UNKNOWN", False)
    text = json.dumps(meta)
    for phi in ("ROE", "MRN-1234", "19600615", "General Hospital", "ACC-777", "SN-4242"):
        assert phi not in text


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize(
    ("modality", "sop_class", "flag", "expected"),
    [
        ("CT", CTImageStorage, None, ("UNKNOWN", False)),
        ("CT", CTImageStorage, "YES", ("YES", True)),
        ("US", "1.2.840.10008.5.1.4.1.1.6.1", "NO", ("NO", False)),
        ("US", "1.2.840.10008.5.1.4.1.1.6.1", None, ("UNKNOWN", True)),
        ("CT", SC_STORAGE, None, ("UNKNOWN", True)),
        ("XA", "1.2.840.10008.5.1.4.1.1.12.1", "maybe", ("UNKNOWN", True)),
        ("DX", "1.2.840.10008.5.1.4.1.1.1.1", "no", ("NO", False)),
    ],
)
def test_burned_in_rule(
    modality: str, sop_class: str, flag: str | None, expected: tuple[str, bool]
) -> None:
    ds = Dataset()
    ds.Modality = modality
    ds.SOPClassUID = sop_class
    if flag is not None:
        ds.BurnedInAnnotation = flag
    assert burned_in_status(ds) == expected


def test_site_key_created_on_first_use_with_mode_0600(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    key_path = tmp_path / "home" / "secrets" / "deid.key"
    assert not key_path.exists()
    first = pseudonym("MRN-1234")
    assert key_path.exists()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert len(key_path.read_bytes()) == 32
    assert pseudonym("MRN-1234") == first  # the key is reused, not regenerated
    assert load_key() == key_path.read_bytes()
    assert deid.default_key_path() == key_path


def test_truncated_key_file_is_reported(tmp_path) -> None:
    path = tmp_path / "deid.key"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="too short"):
        load_key(path)


def test_write_deidentified_names_files_by_new_uid(tmp_path) -> None:
    src = tmp_path / "ROE_RICHARD_MRN-1234.dcm"
    ds = make_ct()
    ds.preamble = b"ROE^RICHARD".ljust(128, b"\x00")
    ds.save_as(src, enforce_file_format=True)
    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    assert written.name == f"{pseudonymous_uid(ds.SOPInstanceUID, key=KEY)}.dcm"
    raw = written.read_bytes()
    assert raw[:128] == b"\x00" * 128 and raw[128:132] == b"DICM"
    back = pydicom.dcmread(written)
    assert back.PatientID == pseudonym("MRN-1234", key=KEY)
    assert back.pixel_array.tolist() == ds.pixel_array.tolist()


def test_write_deidentified_refuses_non_dicom_without_naming_it(tmp_path) -> None:
    bad = tmp_path / "DOE_JANE.dcm"
    bad.write_bytes(b"not a dicom file at all")
    with pytest.raises(CorruptScanError) as err:
        write_deidentified([bad], tmp_path / "out", key=KEY)
    assert "DOE" not in str(err.value) and "1 of 1" in str(err.value)


def test_write_deidentified_accepts_bare_datasets_without_preamble(tmp_path) -> None:
    ds = make_ct()
    del ds.file_meta
    src = tmp_path / "bare.dcm"
    ds.save_as(src, implicit_vr=True, little_endian=True)
    assert src.read_bytes()[128:132] != b"DICM"
    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    back = pydicom.dcmread(written)  # a proper part-10 file now
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.PatientID == pseudonym("MRN-1234", key=KEY)
    assert back.pixel_array.tolist() == np.arange(16).reshape(4, 4).tolist()


def test_empty_and_dummy_actions_on_sequences_and_names() -> None:
    ds = make_ct()
    code = Dataset()
    code.CodeValue = "12345"
    code.CodingSchemeDesignator = "L"
    ds.VerifyingObserverIdentificationCodeSequence = Sequence([code])  # Z
    ds.PersonName = "SMITH^ANNA"  # D
    ds.ContainerIdentifier = "BLOCK-A1-ROE"  # D
    out = deidentify(ds, key=KEY)
    assert len(out.VerifyingObserverIdentificationCodeSequence) == 0
    assert out.PersonName == "ANONYMOUS"
    assert out.ContainerIdentifier == "ANONYMIZED"


def test_pydicom_value_warnings_are_redacted_in_logs(tmp_path, caplog) -> None:
    ds = make_ct()
    with pytest.warns(UserWarning):
        ds.PatientBirthDate = "1960-06-15"  # malformed DA: pydicom quotes it when read
    src = tmp_path / "bad_date.dcm"
    ds.save_as(src, enforce_file_format=True)
    raw = pydicom.dcmread(src)  # values stay raw (unconverted) until accessed
    caplog.set_level(logging.DEBUG)
    out = deidentify(raw, key=KEY)
    assert out.PatientBirthDate == ""
    assert "Invalid value for VR DA" in caplog.text  # pydicom did log it ...
    assert "1960-06-15" not in caplog.text  # ... without the value


def test_element_swallowing_its_neighbours_is_dropped(tmp_path) -> None:
    """A corrupt length makes Modality swallow the following elements, PatientName included."""
    src = tmp_path / "swallow.dcm"
    make_ct().save_as(src, enforce_file_format=True)
    raw = bytearray(src.read_bytes())
    header = b"\x08\x00\x60\x00CS"
    at = raw.index(header)
    value_start = at + 8
    end = raw.index(b"ROE^RICHARD") + len("ROE^RICHARD")
    length = end - value_start + ((end - value_start) % 2)
    raw[at + 6 : at + 8] = length.to_bytes(2, "little")
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(bytes(raw))
    ds = pydicom.dcmread(damaged)
    assert "ROE^RICHARD" in str(ds["Modality"].value)  # the neighbours really were swallowed
    (written,) = write_deidentified([damaged], tmp_path / "out", key=KEY)
    data = written.read_bytes()
    for phi in (b"ROE^RICHARD", b"General Hospital", b"WHO^DOCTOR"):
        assert phi not in data
    assert "Modality" not in pydicom.dcmread(written)


def test_key_created_once_by_racing_processes(tmp_path) -> None:
    """Parallel dataset workers create the site key at the same moment; all read the same."""
    import multiprocessing

    from medtl.io.deid import load_key

    path = tmp_path / "secrets" / "deid.key"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        keys = pool.map(load_key, [path] * 8)
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert sorted(p.name for p in path.parent.iterdir()) == ["deid.key"]
