"""The modality a dataset's images were declared as, when their files cannot say it.

PNG, JPEG and NIfTI files record no imaging modality; ``medtl data import --modality DX``
writes the user's statement into every record. A model trained on such records has seen
"DX" only through that statement, so a PNG sent to it later is as much a DX image as its
training images were: :func:`declared_modality` names that modality, and the model
package's domain guard takes such files as it instead of cautioning about every one.
"""

from __future__ import annotations

from pathlib import Path

from medtl.data.manifest import Manifest, manifest_file, resolve_image

__all__ = ["declared_modality"]

_UNKNOWN = {"", "OT"}


def declared_modality(
    manifest: Manifest, path: str | Path, split: str = "train", sample: int = 32
) -> str | None:
    """The modality stated for a split's images whose files record none.

    Args:
        manifest: the dataset manifest.
        path: the dataset folder or manifest file (image paths resolve from its folder).
        split: the split to look at (the model learned from ``train``).
        sample: how many of its files are sniffed (their first bytes only).

    Returns:
        The modality code (``"DX"``) when every record of the split states the same known
        modality and its files are PNG, JPEG or NIfTI; ``None`` otherwise (DICOM files
        state their own modality, and mixed or unknown modalities declare nothing).
    """
    from medtl.io.sniff import Format, sniff

    records = manifest.by_split(split)
    modalities = {r.modality.strip().upper() for r in records}
    if len(modalities) != 1 or modalities & _UNKNOWN:
        return None
    folder = manifest_file(path).parent
    silent = (Format.PNG, Format.JPEG, Format.NIFTI)
    files = [resolve_image(folder, r.image) for r in records[:sample]]
    formats = {sniff(f) for f in files if f.is_file()}
    if not formats or not formats <= set(silent):
        return None
    return modalities.pop()
