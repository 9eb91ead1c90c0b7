"""Cleaning of descriptive free text outside PS3.15 Table E.1-1.

Table E.1-1 lists the attributes known to carry identity, but devices and sites put free
text in many others: a post-processing function named after the site (``STMARY-CT2 LUNG``),
a coil or window explanation with a technologist's initials. medtl cleans such text the way
the Clean Descriptors option (PS3.15 E.3.5) asks for descriptors: the value is replaced by
one "of similar meaning known not to identify". medtl cannot recognise names, so it keeps
what it *can* vouch for instead: words of a fixed imaging vocabulary (:data:`VOCABULARY`),
numbers and numbers with units. Every other word is dropped; a value left with no word is
removed (or kept empty, when the object's IOD requires the attribute: see
:mod:`medtl.io.deid_iod`). ``"STMARY-CT2 lung sharp 5mm"`` becomes ``"lung sharp 5mm"``.

A word holding a run of four or more digits is dropped too, number or not: such runs are
dates (``020395``, ``19450317``), times, IDs and accession or phone numbers far more often
than imaging parameters, so ``UKE_pa_020395`` becomes ``pa``. The price is a rare genuine
parameter of four digits or more (a matrix of ``1024``) being dropped with them.

Which attributes: every text attribute (VR LO, LT, SH, ST, UC, UT) that is neither in the
table (whose actions apply instead) nor a coded or product value in :data:`KEPT_TEXT`
(code values and meanings, manufacturer and model, software version, kernel and sequence
names).

Site opt-out: a site whose devices are known to write only safe text can keep such text
as it is by setting the environment variable ``MEDTL_DEID_KEEP_FREE_TEXT=1`` (or by passing
``clean_free_text=False`` to :func:`medtl.io.deidentify`). The table's own actions still
apply.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

ENV_KEEP_FREE_TEXT = "MEDTL_DEID_KEEP_FREE_TEXT"

#: VRs of free text.
FREE_TEXT_VRS: frozenset[str] = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})

#: Text attributes outside the table that hold codes or product identifiers, not prose.
KEPT_TEXT: frozenset[str] = frozenset(
    {
        "CodeValue",
        "LongCodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "MappingResource",
        "MappingResourceName",
        "ContextGroupLocalVersion",
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "ConvolutionKernel",
        "SequenceName",
        "PulseSequenceName",
        "DeidentificationMethod",
        "RescaleType",  # defined terms: HU, US, OD...
        "ImagedNucleus",  # 1H, 31P...
    }
)

# Words that describe images and never identify anyone. Kept deliberately free of words
# that double as personal or place names (no "general", "saint", "may", "rose", ...).
_VOCABULARY_WORDS = """
ct mr mri pet spect us xr dx cr mg nm pt xa rf ot cta mra cbct dxa fluoro x ray xray
axial ax coronal cor sagittal sag oblique obl transverse tra ap pa lat lateral left
right lt rt bilateral bilat frontal supine prone decubitus upright erect portable view
views head brain neck chest thorax thoracic lung lungs pulmonary heart cardiac coronary
aorta aortic abdomen abd abdominal pelvis pelvic spine cervical thoracolumbar lumbar
sacral liver hepatic kidney kidneys renal pancreas spleen bladder prostate breast bone
bones knee hip shoulder ankle wrist hand foot elbow extremity extremities skull sinus
sinuses orbit orbits face facial mediastinum mediastinal vessel vessels vascular soft
tissue body whole wb lower upper temporal pituitary iac carotid airway airways rib ribs
contrast non noncontrast nc with without wo w iv oral arterial venous portal delayed
phase early late native enhanced plain pre post dual energy single multi helical spiral
sequential scout localizer localiser topogram survey recon reconstruction reconstructed
reformat reformatted mpr mip minip vr vrt 2d 3d 4d thin thick slice slices sharp sharper
smooth smoother standard std detail edge enhance enhancement filter filtered kernel
iterative fbp window level high low resolution hr hrct dose ldct screening ultra routine
protocol series image images processed processing original primary secondary derived
subtraction sub fused fusion mask summary key t1 t2 t1w t2w pd flair dwi adc swi gre se
tse fse spgr mprage stir fat sat fs water dixon in out opp perfusion diffusion tensor
dti bold trace map maps gad gd cine tof and or of the for to on no yes none qa phantom
calibration calibrated cad ai default auto automatic manual normal abnormal nodule
nodules mass lesion lesions tumor tumour fracture pneumonia edema oedema emphysema
effusion embolism pe angio angiography angiogram study exam examination follow up fu
baseline noise reduction denoise denoised denoising sharpen sharpening smoothing
equalization equalisation gamma grayscale greyscale inverted invert magnified zoom crop
cropped rotated flip flipped resampled resample registered registration motion corrected
correction attenuation ac nac scatter algorithm adaptive iterative deep learning
filtering full partial volume surface rendering projection maximum minimum average mean
sum
"""
VOCABULARY: frozenset[str] = frozenset(_VOCABULARY_WORDS.split())

_SPLIT = re.compile(r"[\s_/\\\-+:;,|()\[\]{}<>\"'=*#&^~`!?@$]+")
_LONG_DIGIT_RUN = re.compile(r"\d{4,}")
_NUMBER = re.compile(
    r"^\d+(?:\.\d+)?(?:mm|cm|m|kv|kvp|ma|mas|ms|s|t|deg|hu|x|mgy|mbq|%)?$", re.IGNORECASE
)


def keep_free_text_setting() -> bool:
    """True when the site opted out of free-text cleaning (``MEDTL_DEID_KEEP_FREE_TEXT``)."""
    value = os.environ.get(ENV_KEEP_FREE_TEXT, "").strip().lower()
    return value in {"1", "true", "yes", "on"}


def _safe_word(word: str) -> bool:
    if _LONG_DIGIT_RUN.search(word):  # a date, time or ID (see the module docstring)
        return False
    return word.lower() in VOCABULARY or bool(_NUMBER.match(word))


def clean_text(value: str) -> str:
    """Return ``value`` with every word outside the vocabulary dropped (words re-joined by
    single spaces; empty when nothing safe remains).

    Example:
        >>> clean_text("STMARY-CT2 LUNG/SHARP 5mm")
        'LUNG SHARP 5mm'
    """
    return " ".join(w for w in _SPLIT.split(str(value)) if w and _safe_word(w))


def clean_values(values: Iterable[str]) -> list[str]:
    """Clean each value of a multi-valued element, dropping values that end up empty."""
    return [text for text in (clean_text(v) for v in values) if text]
