"""The code an exported MONAI bundle runs besides MONAI: copied into it as ``scripts/runtime.py``.

This module must import nothing from medtl (the bundle runs where medtl is not installed):
only MONAI, PyTorch, NumPy and pydicom (MONAI's DICOM reader needs it). The bundle's
``configs/inference.json`` names :class:`PositionSortedDicomReader` as its DICOM reader and
:func:`run` as its ``run`` step; MONAI puts the bundle folder on ``sys.path`` before it runs
a bundle, so ``scripts.runtime`` imports from there.

Why a reader of our own: MONAI's ``PydicomReader`` stacks a series by ``InstanceNumber``,
which many archives do not keep in step with the slice positions, and it leaves
``MONOCHROME1`` images inverted. medtl's loader (``medtl.io``) sorts slices by their
position along the slice normal and flips ``MONOCHROME1`` to ``MONOCHROME2`` as
``lo + hi - value`` over the range the stored bits can hold (in modality units); this reader
does the same within MONAI's reader, so the bundle sees the arrays ``medtl predict`` sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import PydicomReader

__all__ = ["OUTPUT_KINDS", "PositionSortedDicomReader", "run"]

#: what the bundle's ``run`` step can write
OUTPUT_KINDS = ("probabilities", "logits", "embedding")


def _number(ds: Any, keyword: str, default: float) -> float:
    value = getattr(ds, keyword, None)
    try:
        return float(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


class PositionSortedDicomReader(PydicomReader):
    """MONAI's ``PydicomReader``, with slices sorted along the normal and MONOCHROME1 flipped.

    Args:
        **kwargs: ``PydicomReader`` arguments.
    """

    def verify_suffix(self, filename: Any) -> bool:
        """Only DICOM files and folders (MONAI's reader says yes to any file)."""
        import pydicom

        names = filename if isinstance(filename, (list, tuple)) else [filename]
        return all(Path(f).is_dir() or pydicom.misc.is_dicom(str(f)) for f in names)

    def _combine_dicom_series(self, data: Any, filenames: Any) -> Any:
        """Stack the slices in the order of their position along the slice normal."""
        pairs = list(zip(data, filenames, strict=True))
        with_geometry = all(
            hasattr(ds, "ImagePositionPatient") and hasattr(ds, "ImageOrientationPatient")
            for ds, _ in pairs
        )
        if with_geometry:
            iop = np.asarray(pairs[0][0].ImageOrientationPatient, dtype=np.float64)
            normal = np.cross(iop[:3], iop[3:])
            pairs.sort(key=lambda p: float(np.asarray(p[0].ImagePositionPatient, float) @ normal))
            # MONAI's reader stacks by InstanceNumber: number the slices (in memory only) in
            # the order of their positions
            for rank, (ds, _) in enumerate(pairs):
                ds.InstanceNumber = rank + 1
        return super()._combine_dicom_series([p[0] for p in pairs], [p[1] for p in pairs])

    def _get_array_data(self, img: Any, filename: Any) -> Any:
        """Modality units (MONAI's rescale), MONOCHROME1 flipped to MONOCHROME2."""
        data = super()._get_array_data(img, filename)
        photometric = str(getattr(img, "PhotometricInterpretation", "") or "").strip().upper()
        if photometric != "MONOCHROME1":
            return data
        bits = int(_number(img, "BitsStored", _number(img, "BitsAllocated", 16)))
        if int(_number(img, "PixelRepresentation", 0)) == 1:
            lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
        else:
            lo, hi = 0.0, 2.0**bits - 1
        slope = _number(img, "RescaleSlope", 1.0)
        intercept = _number(img, "RescaleIntercept", 0.0)
        ends = sorted((lo * slope + intercept, hi * slope + intercept))
        return np.float32(ends[0] + ends[1]) - np.asarray(data, dtype=np.float32)


def run(
    network: Any,
    preprocessing: Any,
    input_file: str,
    output_file: str,
    output_kind: str = "probabilities",
    postprocessing: Any = None,
    device: Any = "cpu",
) -> np.ndarray:
    """The bundle's ``run`` step: one scan in; probabilities, logits or embedding out (``.npy``).

    Args:
        network: the TorchScript network (``forward``: logits, ``embed``: pooled features).
        preprocessing: the MONAI transforms: scan file -> ``(C, *spatial)`` network input.
        input_file: the scan (a DICOM file or series folder, NIfTI, PNG/JPEG).
        output_file: where to save the array (``""``: do not save).
        output_kind: one of :data:`OUTPUT_KINDS`.
        postprocessing: logits ``(k,)`` -> probabilities (the config's ``postprocessing``).
        device: where the network runs.

    Returns:
        The float32 array written: ``(1,)`` P(positive label) or ``(k,)`` class
        probabilities, ``(k,)`` logits, or a ``(D,)`` embedding.

    Raises:
        ValueError: no input file, an unknown ``output_kind``, or probabilities asked without
            a postprocessing step.
    """
    if not input_file:
        raise ValueError("set --input_file to the scan to run on")
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}")
    if output_kind == "probabilities" and postprocessing is None:
        raise ValueError("output_kind probabilities needs the config's postprocessing")
    x = preprocessing(input_file)
    x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)  # a MetaTensor: plain
    x = x.float()[None].to(device)
    with torch.inference_mode():
        if output_kind == "embedding":
            out = network.embed(x)[0]
        else:
            out = network(x)[0]
            if output_kind == "probabilities":
                out = torch.as_tensor(postprocessing(out.cpu()))
    array = np.asarray(out.detach().cpu().float().numpy(), dtype=np.float32)
    if output_file:
        np.save(output_file, array)
    return array
