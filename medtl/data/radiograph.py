"""From line integrals to a processed radiograph, and DICOM CR/DX / PNG writing.

The chain follows what a CR/DX acquisition and its console do:

1. **Exposure** (:func:`expose`): Beer-Lambert ``I = I0 exp(-L)`` with quantum (Poisson,
   Gaussian approximation) and electronic noise, taken back to the log domain.
2. **Detector blur**: a small Gaussian point-spread function.
3. **Console processing** (:func:`console_process`), all in the log domain: exposure
   recognition from the histogram of the body (percentiles, computed on a reference image
   so paired twins share them), multi-scale processing (large-scale dynamic-range
   compression + mid-scale detail gain + fine unsharp masking, the idea behind
   multi-scale image contrast amplification), then a sigmoid film-like tone curve with a
   gamma, giving an image in ``[0, 1]`` where bigger means more attenuation
   (MONOCHROME2: bone bright, lung dark).
4. **Storage** at 12 bits (:func:`to_stored`), as DICOM CR or DX (:func:`write_dicom`),
   MONOCHROME1 or MONOCHROME2, or as 16-bit PNG (:func:`write_png`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

BITS_STORED = 12
MAX_STORED = (1 << BITS_STORED) - 1
#: Magnification of a 180 cm PA radiograph, recorded as ImagerPixelSpacing / PixelSpacing.
MAGNIFICATION = 1.1


@dataclass(frozen=True)
class ProcessingParams:
    """Acquisition and console settings of one image (drawn per image).

    Attributes:
        photons: mean detected photons per pixel without the patient (sets quantum noise);
            ``0`` or less disables noise.
        noise_seed: seed of the noise draw (twins share it).
        psf_px: detector blur (Gaussian sigma, pixels).
        compress: large-scale dynamic-range compression (0 none, 1 flat).
        detail_gain: gain on mid-scale detail (structures of a few mm to a few cm).
        edge_gain: unsharp-masking gain on fine detail.
        contrast: slope of the sigmoid tone curve (bigger = more contrast).
        level: where the tone curve is centred, in normalised log units.
        gamma: output gamma applied after the tone curve.
    """

    photons: float = 8e4
    noise_seed: int = 0
    psf_px: float = 0.6
    compress: float = 0.5
    detail_gain: float = 0.6
    edge_gain: float = 0.5
    contrast: float = 5.5
    level: float = 0.45
    gamma: float = 1.0


def draw_processing(
    rng: np.random.Generator, photons: tuple[float, float], vary: float = 1.0
) -> ProcessingParams:
    """Draw the acquisition and console settings of one image.

    Args:
        rng: random generator.
        photons: range of the unattenuated photons per pixel (log-uniform).
        vary: 0 for the defaults, 1 for the full variation between images.

    Returns:
        The :class:`ProcessingParams`.
    """
    d = ProcessingParams()

    def jitter(value: float, rel: float) -> float:
        return float(value * (1.0 + vary * rng.uniform(-rel, rel)))

    lo, hi = photons
    return ProcessingParams(
        photons=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > 0 else 0.0,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        psf_px=jitter(d.psf_px, 0.3),
        compress=jitter(d.compress, 0.3),
        detail_gain=jitter(d.detail_gain, 0.35),
        edge_gain=jitter(d.edge_gain, 0.4),
        contrast=jitter(d.contrast, 0.2),
        level=d.level + vary * float(rng.uniform(-0.06, 0.06)),
        gamma=jitter(d.gamma, 0.15),
    )


def expose(line_integral: np.ndarray, params: ProcessingParams) -> np.ndarray:
    """Apply detector blur and quantum noise; return the noisy log image.

    Args:
        line_integral: ``(rows, cols)`` attenuation line integrals.
        params: the image's settings (``photons``, ``noise_seed``, ``psf_px``).

    Returns:
        float32 ``-log(I / I0)`` as measured by the detector.
    """
    line = line_integral.astype(np.float32)
    if params.psf_px > 0:
        line = ndimage.gaussian_filter(line, params.psf_px, mode="nearest")
    if params.photons <= 0:
        return line
    rng = np.random.default_rng(params.noise_seed)
    counts = params.photons * np.exp(-line.astype(np.float64))
    electronic = 3.0
    noisy = counts + rng.standard_normal(counts.shape) * np.sqrt(counts + electronic**2)
    return (-np.log(np.clip(noisy, 1.0, None) / params.photons)).astype(np.float32)


def exposure_reference(log_image: np.ndarray) -> tuple[float, float]:
    """Exposure recognition: the body's log-domain range (1st and 99.5th percentiles).

    Args:
        log_image: the detector's log image.

    Returns:
        ``(low, high)``: the values mapped to 0 and 1 before the tone curve.
    """
    body = log_image[log_image > 0.3]
    if body.size < 16:
        return 0.0, max(float(log_image.max()), 1e-3)
    lo, hi = np.percentile(body, [1.0, 99.5])
    return float(lo), float(max(hi, lo + 1e-3))


def console_process(
    log_image: np.ndarray,
    params: ProcessingParams,
    reference: tuple[float, float] | None = None,
    pixel_mm: float = 1.25,
) -> np.ndarray:
    """Console-style processing of a log image into a display-ready radiograph.

    Args:
        log_image: detector log image (``expose`` output).
        params: the image's settings.
        reference: exposure-recognition range (:func:`exposure_reference`); computed from
            ``log_image`` when ``None``. Paired twins pass the same reference.
        pixel_mm: pixel size, so filter scales are physical (not pixel) sizes.

    Returns:
        float32 image in ``[0, 1]``, MONOCHROME2 polarity.
    """
    lo, hi = reference if reference is not None else exposure_reference(log_image)
    t = (log_image - lo) / (hi - lo)
    large = _smooth(t, 30.0 / pixel_mm)
    mid = ndimage.gaussian_filter(t, 6.0 / pixel_mm, mode="reflect", truncate=3.0)
    fine = ndimage.gaussian_filter(t, 1.5 / pixel_mm, mode="reflect", truncate=3.0)
    anchor = 0.5
    out = (
        anchor
        + (large - anchor) * (1.0 - params.compress)
        + (mid - large) * (1.0 + params.detail_gain)
        + (fine - mid) * (1.0 + params.detail_gain + params.edge_gain)
        + (t - fine) * (1.0 + params.edge_gain)
    )
    y = 1.0 / (1.0 + np.exp(-params.contrast * (out - params.level)))
    y0 = 1.0 / (1.0 + np.exp(params.contrast * params.level))
    y1 = 1.0 / (1.0 + np.exp(-params.contrast * (1.0 - params.level)))
    y = np.clip((y - y0) / (y1 - y0), 0.0, 1.0) ** params.gamma
    return y.astype(np.float32)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a 4x decimated copy (same result, 16x cheaper)."""
    f = 4
    h, w = image.shape
    if sigma < 3 * f or h % f or w % f:
        return ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=3.0)
    small = image.reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode="reflect", truncate=3.0)
    return ndimage.zoom(small, f, order=1, mode="nearest", grid_mode=True)[:h, :w]


def to_stored(image: np.ndarray) -> np.ndarray:
    """Quantise a ``[0, 1]`` image to 12-bit stored values (uint16)."""
    return np.clip(np.rint(image * MAX_STORED), 0, MAX_STORED).astype(np.uint16)


def default_window(stored: np.ndarray) -> tuple[float, float]:
    """A display window covering the body (0.5th to 99.5th percentile), MONOCHROME2 values."""
    lo, hi = np.percentile(stored, [0.5, 99.5])
    return float(round((lo + hi) / 2.0)), float(max(round(hi - lo), 1.0))


def _code_item(code: object) -> object:
    """A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning) of a pydicom
    ``Code``."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value  # type: ignore[attr-defined]
    item.CodingSchemeDesignator = code.scheme_designator  # type: ignore[attr-defined]
    item.CodeMeaning = code.meaning  # type: ignore[attr-defined]
    return item


def _header(modality: str, photometric: str) -> dict[str, object]:
    """The acquisition attributes of the simulated PA chest radiograph, beyond pixels and
    identity, chosen so the object passes dciodvfy (see docs/dicom_conformance.md).

    Codes come from pydicom's copy of the DICOM context groups: the anatomic region is
    Chest from CID 4009 "DX Anatomy Imaged" (SCT 816094009), the view postero-anterior from
    CID 4010 "DX View" (SCT 272479007). The simulator models no physical detector and no
    positioner, so DetectorType and PositionerType (Type 2) are present and empty
    ("unknown"), and there is no acquisition context to report (empty Type 2 sequence).
    """
    from pydicom.sequence import Sequence
    from pydicom.sr.codedict import codes

    header: dict[str, object] = {
        "ImageLaterality": "U",  # the chest is an unpaired region (enumerated: R, L, U, B)
        "AnatomicRegionSequence": Sequence([_code_item(codes.cid4009.Chest)]),
        "LossyImageCompression": "00",  # never lossy-compressed
        # PixelSpacing is ImagerPixelSpacing divided by the known geometric magnification
        "PixelSpacingCalibrationType": "GEOMETRY",
        "PixelSpacingCalibrationDescription": "Corrected for the 1.1 PA magnification",
    }
    if modality == "DX":
        header.update(
            {
                # DX: IDENTITY for MONOCHROME2, INVERSE for MONOCHROME1 (PS3.3 C.8.11.3.1.6)
                "PresentationLUTShape": "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY",
                "ViewCodeSequence": Sequence([_code_item(codes.cid4010.PosteroAnterior)]),
                "DetectorType": "",
                "PositionerType": "",
                "AcquisitionContextSequence": Sequence(),
                "EstimatedRadiographicMagnificationFactor": f"{MAGNIFICATION:.6g}",
                "DistanceSourceToDetector": "1800",
            }
        )
    else:  # CR: the DX Positioning attributes (view code, magnification) are not in its IOD
        header["DistanceSourceToDetector"] = "1800"
    return header


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    patient_id: str,
    instance_key: str,
    pixel_mm: float,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    series_key: str | None = None,
) -> Path:
    """Write a de-identified synthetic chest radiograph as DICOM CR or DX (PA view).

    The header passes dicom3tools' ``dciodvfy`` with no error (anatomy and view coded,
    laterality, presentation LUT, lossy flag, detector and positioner attributes; see
    :func:`_header`); the pixel data are exactly ``stored``.

    Args:
        path: output file.
        stored: uint16 12-bit pixels in MONOCHROME2 polarity (inverted here for
            MONOCHROME1, so that bigger still means more attenuation after loading).
        patient_id: pseudonymous virtual-patient id (PatientID and PatientName).
        instance_key: unique, deterministic key of the image (seeds the SOP Instance UID).
        pixel_mm: pixel spacing at the patient, mm.
        modality: ``CR`` or ``DX``.
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``.
        series_key: key shared by a patient's images (seeds study/series UIDs).

    Returns:
        ``path``.
    """
    from pydicom.uid import generate_uid

    from medtl.io.testing import NO_PATIENT, radiograph_dataset

    series_key = series_key or patient_id
    ds = radiograph_dataset(
        stored,
        modality=modality,
        photometric=photometric,
        bits_stored=BITS_STORED,
        pixel_spacing=[f"{pixel_mm:.6g}"] * 2,
        imager_pixel_spacing=[f"{pixel_mm * MAGNIFICATION:.6g}"] * 2,
        window=default_window(stored),
        sop_instance_uid=generate_uid(
            entropy_srcs=["medtl-cxr-sop", instance_key, modality, photometric]
        ),
        study_uid=generate_uid(entropy_srcs=["medtl-cxr-study", series_key]),
        series_uid=generate_uid(entropy_srcs=["medtl-cxr-series", series_key, modality]),
        patient={**NO_PATIENT, "PatientName": patient_id, "PatientID": patient_id},
        Manufacturer="medtl CXR simulator",
        StudyID="",
        ImageType=["DERIVED", "PRIMARY"],
        PatientIdentityRemoved="YES",
        DeidentificationMethod="Synthetic image, no patient data (medtl CXR simulator)",
        BurnedInAnnotation="NO",
        PatientOrientation=["L", "F"],
        RescaleIntercept="0",
        RescaleSlope="1",
        RescaleType="US",
        **_header(modality, photometric),
    )
    ds.file_meta.ImplementationClassUID = generate_uid(entropy_srcs=["medtl-cxr-implementation"])
    ds.file_meta.ImplementationVersionName = "MEDTL_CXRSIM"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_png(path: Path, stored: np.ndarray) -> Path:
    """Write the 12-bit image as a 16-bit greyscale PNG (MONOCHROME2, values 0-4095).

    Args:
        path: output ``.png`` file.
        stored: uint16 12-bit pixels.

    Returns:
        ``path``.
    """
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored.astype(np.uint16)).save(str(path), format="PNG")
    return path
