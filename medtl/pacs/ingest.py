"""Retrieve a study from the PACS, de-identify it on arrival, create the case, analyse it.

No original header touches the disk: each instance is de-identified in memory
(:func:`medtl.io.deid.deidentify`, keyed by the site secret) before it is written to a
temporary folder under ``MEDTL_HOME/tmp``, loaded with :func:`medtl.io.load_scan` (the path
uploads take in the app) and stored as the case's image. The original study, series and
instance UIDs are kept only sealed (:mod:`medtl.pacs.records`).

Example::

    outcome = analyse_study(store, load_pacs_settings(), study_uid, "cxr-nodule@1.0")
    print(outcome.case_id, outcome.summary)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medtl.pacs.types import PacsError, SourceLink, StudyRefusedError

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.inference import PredictionResult, Predictor
    from medtl.io import Scan
    from medtl.pacs.settings import PacsSettings
    from medtl.review import ReviewStore, UserInfo

logger = logging.getLogger(__name__)

_FAMILY_MODALITIES = {"ct": {"CT"}, "mri": {"MR"}, "cxr": {"CR", "DX"}}


@dataclass
class SeriesBatch:
    """One series, de-identified on disk, with its original identity kept in memory."""

    folder: Path
    link: SourceLink
    modality: str | None = None
    body_part: str | None = None
    sop_class_uids: set[str] = field(default_factory=set)

    @property
    def n_instances(self) -> int:
        """How many instances arrived."""
        return len(self.link.sop_instance_uids)


@dataclass(frozen=True)
class AnalysisOutcome:
    """A study or series analysed: the case it became and the AI result recorded."""

    case_id: str
    prediction_id: int
    model: str
    summary: str
    new_case: bool


def site_key(key: bytes | None = None) -> bytes:
    """The site secret (``MEDTL_HOME/secrets/deid.key``) unless ``key`` is given."""
    from medtl.io.deid import load_key

    return key if key is not None else load_key()


def add_instance(
    batches: dict[str, SeriesBatch], ds: Dataset, root: Path, key: bytes, via: str
) -> SeriesBatch:
    """De-identify ``ds`` in memory and write it into its series folder under ``root``.

    Args:
        batches: series seen so far, by original SeriesInstanceUID (updated).
        ds: the instance as received (with PHI); changed in place.
        root: a private folder under ``MEDTL_HOME``.
        key: the site secret.
        via: ``dicomweb`` or ``dimse`` (how the study can be reached again).

    Returns:
        The series the instance joined.
    """
    from pydicom.dataset import FileMetaDataset

    from medtl.io.deid import deidentify, pseudonymous_uid

    study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    batch = batches.get(series)
    if batch is None:
        folder = root / pseudonymous_uid(series, key=key)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        batch = batches[series] = SeriesBatch(
            folder,
            SourceLink(study, series, [], via),
            ds.get("Modality"),
            ds.get("BodyPartExamined"),
        )
    if str(ds.SOPInstanceUID) not in batch.link.sop_instance_uids:  # a re-sent instance
        batch.link.sop_instance_uids.append(str(ds.SOPInstanceUID))
    batch.sop_class_uids.add(str(ds.SOPClassUID))
    clean = deidentify(ds, key=key, in_place=True)
    if getattr(clean, "file_meta", None) is None:
        clean.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in clean.file_meta:
        from pydicom.uid import ExplicitVRLittleEndian

        clean.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    clean.save_as(batch.folder / f"{clean.SOPInstanceUID}.dcm", enforce_file_format=True)
    return batch


def retrieve(
    settings: PacsSettings, study_uid: str, root: Path, key: bytes
) -> dict[str, SeriesBatch]:
    """Retrieve a study's image instances and de-identify them into ``root``.

    Returns:
        Series by original SeriesInstanceUID.
    """
    from medtl.pacs import client
    from medtl.pacs.dimse import IMAGE_STORAGE

    via = client.preferred_path(settings)
    batches: dict[str, SeriesBatch] = {}
    skipped = 0
    for ds in client.iter_study(settings, study_uid):
        if str(ds.get("SOPClassUID", "")) not in IMAGE_STORAGE:
            skipped += 1
            continue
        add_instance(batches, ds, root, key, via)
    if not batches:
        raise PacsError("the study holds no image series medtl can analyse")
    logger.info("pacs: retrieved %d series (%d non-image objects skipped)", len(batches), skipped)
    return batches


def pick_series(batches: Iterable[SeriesBatch], family: str | None) -> SeriesBatch:
    """The series a model of ``family`` (ct, mri, cxr) should see: matching modality,
    then the most instances."""
    wanted = _FAMILY_MODALITIES.get(family or "", set())
    ranked = sorted(
        batches, key=lambda b: ((b.modality or "") in wanted, b.n_instances), reverse=True
    )
    if not ranked:
        raise PacsError("no series to analyse")
    return ranked[0]


_PREDICTORS: dict[str, Predictor] = {}


def get_predictor(model: str) -> Predictor:
    """The predictor of a package name, name@version or folder (loaded once per process)."""
    from medtl.inference import Predictor

    if model not in _PREDICTORS:
        _PREDICTORS[model] = Predictor.from_package(model)
    return _PREDICTORS[model]


def record_analysis(
    store: ReviewStore,
    actor: UserInfo | None,
    scan: Scan,
    result: PredictionResult,
    link: SourceLink,
    key: bytes,
    *,
    reuse: bool = False,
    model_ref: str | None = None,
) -> AnalysisOutcome:
    """Create (or reuse) the case of ``scan``, record ``result`` and seal the study link.

    With ``reuse`` (a retried job), an existing case whose latest result comes from the
    same model version keeps it instead of getting a second one. ``model_ref`` (the package
    name, name@version or folder the caller used) is kept to run the model again for the
    heat-map image of a push.
    """
    from medtl.pacs.records import save_link
    from medtl.review import CaseExistsError, record_result

    study, series = scan.meta.get("study_uid"), scan.meta.get("series_uid")
    source = f"{study}|{series}" if study and series else None
    try:
        case = store.create_case(actor, scan, source_key=source)
        case_id, image_id, new = case.case_id, store.get_images(case.case_id)[0].id, True
    except CaseExistsError as err:
        case_id, image_id, new = err.case_id, None, False
    save_link(store.db, case_id, link, key)
    name, _, version = result.package.partition("@")
    latest = store.get_case(case_id).latest_prediction if reuse and not new else None
    if latest is not None and (latest.model_name, latest.model_version) == (name, version):
        return AnalysisOutcome(case_id, latest.id, result.package, result.summary_line(), False)
    pred = record_result(
        store,
        actor,
        case_id,
        result,
        image_id=image_id,
        source="pacs",
        model_ref=model_ref or result.package,
    )
    logger.info("pacs: case %s analysed with %s", case_id, result.package)
    return AnalysisOutcome(case_id, pred.id, result.package, result.summary_line(), new)


def analyse_batch(
    store: ReviewStore,
    batch: SeriesBatch,
    model: str,
    *,
    actor: UserInfo | None = None,
    key: bytes | None = None,
    reuse: bool = False,
) -> AnalysisOutcome:
    """Load a de-identified series folder, predict with ``model`` and record the case
    (``reuse``: see :func:`record_analysis`).

    Raises:
        StudyRefusedError: the images cannot be read, or the package refused them (domain
            guard, modality, dimensionality): no case and no AI result are recorded.
    """
    from medtl.io import ScanError, load_scan

    key = site_key(key)
    predictor = get_predictor(model)
    try:
        scan = load_scan(batch.folder)
    except ScanError as err:
        raise StudyRefusedError([f"the images could not be read: {err}"]) from err
    result = predictor.predict(scan)
    if result.refused or result.probability is None:
        raise StudyRefusedError(result.domain.reasons)
    return record_analysis(
        store, actor, scan, result, batch.link, key, reuse=reuse, model_ref=model
    )


def analyse_study(
    store: ReviewStore,
    settings: PacsSettings,
    study_uid: str,
    model: str,
    *,
    actor: UserInfo | None = None,
    key: bytes | None = None,
    reuse: bool = False,
) -> AnalysisOutcome:
    """Retrieve a study, de-identify it, create the case and record the AI result.

    Args:
        store: the review store.
        settings: the PACS settings.
        study_uid: the original StudyInstanceUID (never stored in clear).
        model: model package (registered name, name@version or folder).
        actor: the signed-in user (``None``: the local operator).
        key: the site secret (default ``MEDTL_HOME/secrets/deid.key``).
        reuse: keep an existing result of the same model version (retried jobs).

    Returns:
        The case and AI result. Analysing the same series again adds a result to the
        existing case instead of creating a second one.

    Raises:
        PacsError: the PACS could not be reached or the study holds no image.
        StudyRefusedError: the package refused the study (nothing is recorded).
    """
    from medtl.paths import home_subdir

    key = site_key(key)
    predictor = get_predictor(model)
    with tempfile.TemporaryDirectory(dir=home_subdir("tmp"), prefix="pacs-") as tmp:
        batches = retrieve(settings, study_uid, Path(tmp), key)
        batch = pick_series(batches.values(), predictor.spec.modality)
        return analyse_batch(store, batch, model, actor=actor, key=key, reuse=reuse)
