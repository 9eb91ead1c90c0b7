"""The source images an AI-result SR references, and where a reviewer's mark lies on them.

Two kinds of evidence:

* **Real headers** (the PACS push): the original instances the model saw, re-read from the
  PACS, with the study's original identifiers.
* **Pseudonymous headers** (the app's export, :func:`case_sources`): a case stored from
  de-identified DICOM bytes references that file's header as it is; a case stored as a
  de-identified scan (every upload and PACS case: PNG/JPEG, NIfTI, DICOM, series) has no
  DICOM image to reference, so one Secondary Capture header per slice is made up for it:
  the case pseudonym as patient ID and name, no other patient or study attribute, and
  UIDs derived deterministically from the case and the image's SHA-256
  (:func:`derived_uid`), so exporting the same case twice references the same
  (pseudonymous) study, series and instances. No original identifier is used.

A reviewer's mark (``Review.x``/``y``: column and row indices on the stored image,
``slice_index``: the slice of a volume) is referenced on the matching source instance
(:func:`mark_image`); the SR coordinate is the pixel's centre (``x + 0.5, y + 0.5``, PS3.3
C.18.6.1.2: the top left corner of the top left pixel is ``0, 0``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.review.schemas import ImageInfo
    from medtl.review.store import ReviewStore

#: Secondary Capture Image Storage: the SOP class of the made-up source headers.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: every patient/study attribute highdicom copies from the first evidence header
STUDY_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def complete_header(header: Dataset) -> Dataset:
    """A copy of ``header`` with every patient/study attribute highdicom reads (empty when
    the header lacks it), as highdicom's SR and Secondary Capture builders need them.

    Args:
        header: a source instance's header.

    Returns:
        The completed copy (``header`` is not changed).
    """
    out = copy.deepcopy(header)
    for keyword in STUDY_KEYWORDS:
        if keyword not in out:
            setattr(out, keyword, None)
    return out


def person_name(name: str) -> str:
    """A one-word name (a user name, a case pseudonym) as a DICOM PN: the family name
    followed by its component delimiter, so it is not read as the retired one-component
    form (nor printed by highdicom's warning about it)."""
    return name[:63] + "^"


def derived_uid(*parts: str) -> str:
    """A UID derived deterministically from ``parts``: ``2.25.`` and the integer of a
    name-based UUID (ISO/IEC 9834-8, as PS3.5 B.2 allows). (pydicom's ``generate_uid``
    ignores its entropy sources under the ``2.25`` root.)"""
    import uuid

    name = "urn:medtl:sr-source:" + "|".join(parts)
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def pseudonymous_headers(
    case_id: str,
    image_sha256: str,
    modality: str | None,
    shape: tuple[int, ...],
    body_part: str | None,
) -> list[Dataset]:
    """One Secondary Capture header per slice of a stored scan, named by the case only.

    Args:
        case_id: the case pseudonym (patient ID and name).
        image_sha256: the stored image's SHA-256 (makes the series and instance UIDs).
        modality: the scan's modality (kept: it names no one).
        shape: the scan array's shape (``(rows, columns)`` or ``(slices, rows, columns)``).
        body_part: BodyPartExamined of the source, if known.

    Returns:
        The headers, in slice order.
    """
    from pydicom.dataset import Dataset

    n_slices = shape[0] if len(shape) == 3 else 1
    study = derived_uid("study", case_id)
    series = derived_uid("series", case_id, image_sha256)
    out = []
    for k in range(n_slices):
        ds = Dataset()
        ds.PatientID = case_id
        ds.PatientName = person_name(case_id)
        for keyword in STUDY_KEYWORDS[2:]:
            setattr(ds, keyword, None)
        if len(case_id) <= 16:
            ds.StudyID = case_id
        ds.PatientIdentityRemoved = "YES"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = derived_uid("instance", case_id, image_sha256, str(k))
        ds.Modality = (modality or "OT")[:16]
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = int(shape[-2]), int(shape[-1])
        if body_part:
            ds.BodyPartExamined = body_part[:16]
        out.append(ds)
    return out


def case_sources(store: ReviewStore, image: ImageInfo) -> list[Dataset]:
    """The pseudonymous evidence of a stored case image (see the module docstring).

    Args:
        store: the review store.
        image: the case image the AI result was computed on.

    Returns:
        The header of a stored de-identified DICOM file, or made-up Secondary Capture
        headers of a stored scan (one per slice).
    """
    if image.kind == "dicom":
        import pydicom

        return [complete_header(pydicom.dcmread(image.path, stop_before_pixels=True))]
    scan: Any = store.load_image(image)
    meta = scan.meta or {}
    return pseudonymous_headers(
        image.case_id,
        image.sha256,
        scan.modality or image.modality,
        tuple(int(n) for n in scan.array.shape),
        meta.get("body_part"),
    )


def slice_order(sources: list[Dataset]) -> list[Dataset]:
    """``sources`` in the order :func:`medtl.io.load_scan` stacks slices: along the slice
    normal (ImagePositionPatient onto the cross product of ImageOrientationPatient), else
    by InstanceNumber, else as given."""
    import numpy as np

    if len(sources) < 2:
        return list(sources)
    try:
        iop = np.asarray([float(v) for v in sources[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        keys = [float(np.dot([float(v) for v in s.ImagePositionPatient], normal)) for s in sources]
    except (AttributeError, TypeError, ValueError):
        keys = [float(s.get("InstanceNumber") or 0) for s in sources]
    order = np.argsort(np.asarray(keys), kind="stable")
    return [sources[int(i)] for i in order]


def mark_image(sources: list[Dataset], slice_index: int | None) -> Any:
    """The ``highdicom.sr.SourceImageForRegion`` a reviewer's mark lies on.

    Args:
        sources: the SR's source headers.
        slice_index: the marked slice of a volume (``None``: a 2D image).

    Returns:
        The reference (with the frame number for a multi-frame instance).

    Raises:
        ValueError: the slice is outside the source images.
    """
    import highdicom as hd

    k = slice_index or 0
    ordered = slice_order(sources)
    frames = int(ordered[0].get("NumberOfFrames") or 1) if len(ordered) == 1 else 1
    if frames > 1:
        if not 0 <= k < frames:
            raise ValueError(f"the marked slice {k + 1} is outside the image's {frames} frames")
        ds, numbers = ordered[0], [k + 1]
    else:
        if not 0 <= k < len(ordered):
            raise ValueError(f"the marked slice {k + 1} is outside the {len(ordered)} images")
        ds, numbers = ordered[k], None
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=str(ds.SOPClassUID),
        referenced_sop_instance_uid=str(ds.SOPInstanceUID),
        referenced_frame_numbers=numbers,
    )
