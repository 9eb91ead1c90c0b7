"""A persistent (on-disk) dataset cache stored as safetensors instead of pickles.

MONAI's ``PersistentDataset`` writes each preprocessed sample with ``torch.save`` and reads it
back with ``torch.load``: a pickle, and the slowest step of a warm-cache epoch (measured here:
about 0.8 ms per 128x128 sample with ``weights_only=True`` against 0.2 ms for safetensors).
:class:`SafetensorsPersistentDataset` keeps MONAI's keying, atomic writes and corrupt-file
recovery, and stores a sample that is a flat dict of tensors, arrays and JSON values as one
``.safetensors`` file (tensors) with the other values in its metadata. Reading it runs no
unpickler at all. Samples of any other shape (nested, MetaTensors carrying metadata, custom
objects) fall back to MONAI's pickle path.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, PersistentDataset

logger = logging.getLogger(__name__)

SUFFIX = ".safetensors"
_META_KEY = "medtl_sample"


def encode_sample(sample: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """Split a flat dict sample into tensors and JSON metadata; None if it does not fit."""
    if not isinstance(sample, dict):
        return None
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, Any] = {}
    for key, value in sample.items():
        if not isinstance(key, str):
            return None
        if isinstance(value, MetaTensor):
            return None  # metadata a plain tensor would lose: keep MONAI's format
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
        elif isinstance(value, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, np.generic):
            values[key] = value.item()
        elif value is None or isinstance(value, bool | int | float | str):
            values[key] = value
        else:
            return None
    order = list(sample)
    meta = {_META_KEY: json.dumps({"values": values, "order": order})}
    return tensors, meta


def decode_sample(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_sample` (keys in their original order)."""
    info = json.loads(meta[_META_KEY])
    merged = {**info["values"], **tensors}
    return {key: merged[key] for key in info["order"]}


def _read(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if _META_KEY not in meta:
        raise ValueError("not a medtl cache file")
    return decode_sample(tensors, meta)


class SafetensorsPersistentDataset(PersistentDataset):
    """``PersistentDataset`` whose cache files are safetensors (see the module docstring)."""

    def _cachecheck(self, item_transformed: Any) -> Any:
        if self.cache_dir is None:
            return super()._cachecheck(item_transformed)
        key = self.hash_func(item_transformed).decode("utf-8") + self.transform_hash
        path = Path(self.cache_dir) / f"{key}{SUFFIX}"
        if path.is_file():
            try:
                return _read(path)
            except Exception as exc:  # a torn or foreign file: recompute and replace it
                logger.warning("unreadable cache file %s (%s); recomputing", path.name, exc)
                path.unlink(missing_ok=True)
        elif (Path(self.cache_dir) / f"{key}.pt").is_file():
            return super()._cachecheck(item_transformed)  # a sample stored by the fallback
        sample = self._pre_transform(deepcopy(item_transformed))
        encoded = encode_sample(sample)
        if encoded is None:
            return super()._cachecheck(item_transformed)
        self._write(path, *encoded)
        return sample

    @staticmethod
    def _write(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full cache folder must not stop training
            logger.warning("could not write cache file %s: %s", path.name, exc)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
