"""``predictions.csv``: the logits of every val/calibration/test record of a run.

Columns: ``split, index, patient_id, label`` and ``logit`` (binary) or ``logit_0 ..
logit_{K-1}`` (K classes). CSV carries no version field; the column set is the contract and
:func:`read_predictions` checks it, naming the file, row and column of any bad value.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.artifacts.base import ArtifactError

__all__ = [
    "PREDICTION_SPLITS",
    "PredictionRow",
    "SplitPredictions",
    "read_predictions",
    "write_predictions",
]

PREDICTION_SPLITS = ("val", "calibration", "test")
_BASE = ["split", "index", "patient_id", "label"]


@dataclass(frozen=True)
class PredictionRow:
    """One record's prediction (what the writer takes)."""

    split: str
    index: int
    patient_id: str
    label: int
    logits: tuple[float, ...]


@dataclass(frozen=True)
class SplitPredictions:
    """The predictions of one split as arrays.

    Attributes:
        index: manifest record index per image.
        patient_id: patient per image.
        label: integer label per image.
        logits: ``(n,)`` for binary runs, ``(n, K)`` otherwise.
    """

    index: np.ndarray
    patient_id: np.ndarray
    label: np.ndarray
    logits: np.ndarray

    def __getitem__(self, key: str) -> np.ndarray:
        # Mapping-style access kept for callers of the earlier dict-of-arrays reader.
        return getattr(self, key)


def _columns(num_outputs: int) -> list[str]:
    return _BASE + (["logit"] if num_outputs == 1 else [f"logit_{k}" for k in range(num_outputs)])


def write_predictions(
    path: str | Path, rows: Iterable[PredictionRow | dict[str, Any]], num_outputs: int
) -> Path:
    """Validate and write ``predictions.csv``.

    Args:
        path: destination.
        rows: :class:`PredictionRow` objects (or dicts with the CSV columns).
        num_outputs: logits per row (1 = binary).

    Returns:
        The path written.

    Raises:
        ArtifactError: a row has the wrong number of logits, an unknown split or a
            non-finite logit.
    """
    path = Path(path)
    columns = _columns(num_outputs)
    out = []
    for k, row in enumerate(rows):
        if isinstance(row, dict):
            row = PredictionRow(
                str(row["split"]),
                int(row["index"]),
                str(row["patient_id"]),
                int(row["label"]),
                tuple(float(row[c]) for c in columns[4:]),
            )
        if row.split not in PREDICTION_SPLITS:
            raise ArtifactError(str(path), f"row {k}: unknown split {row.split!r}", "split")
        if len(row.logits) != num_outputs:
            raise ArtifactError(
                str(path), f"row {k}: {len(row.logits)} logits, expected {num_outputs}", "logit"
            )
        if not all(math.isfinite(v) for v in row.logits):
            raise ArtifactError(str(path), f"row {k}: non-finite logit", "logit")
        values = [row.split, row.index, row.patient_id, row.label]
        out.append(dict(zip(columns, values + [f"{v:.6g}" for v in row.logits], strict=True)))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(out)
    return path


def _logit_order(key: str) -> int:
    return int(key.split("_")[1]) if "_" in key else 0


def read_predictions(path: str | Path) -> dict[str, SplitPredictions]:
    """Read ``predictions.csv`` into ``{split: SplitPredictions}``.

    Raises:
        ArtifactError: missing file, missing columns, or a value that does not parse.
    """
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise ArtifactError(str(path), f"cannot read: {err.strerror or err}") from err
    out: dict[str, dict[str, list[Any]]] = {}
    with fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        missing = [c for c in _BASE if c not in header]
        logit_cols = sorted((c for c in header if c.startswith("logit")), key=_logit_order)
        if missing or not logit_cols:
            raise ArtifactError(
                str(path), f"missing columns {missing or ['logit']}", (missing or ["logit"])[0]
            )
        for line, row in enumerate(reader, start=2):
            d = out.setdefault(
                row["split"], {"index": [], "patient_id": [], "label": [], "logits": []}
            )
            column = "index"
            try:
                d["index"].append(int(row["index"]))
                column = "label"
                d["label"].append(int(row["label"]))
                column = "logit"
                d["logits"].append([float(row[c]) for c in logit_cols])
            except (TypeError, ValueError) as err:
                raise ArtifactError(str(path), f"line {line}: {err}", column) from err
            d["patient_id"].append(row["patient_id"])
    result: dict[str, SplitPredictions] = {}
    for split, d in out.items():
        logits = np.asarray(d["logits"], dtype=np.float64).reshape(len(d["index"]), -1)
        result[split] = SplitPredictions(
            index=np.asarray(d["index"], dtype=np.int64),
            patient_id=np.asarray(d["patient_id"]),
            label=np.asarray(d["label"], dtype=np.int64),
            logits=logits[:, 0] if logits.shape[1] == 1 else logits,
        )
    return result
