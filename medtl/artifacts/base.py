"""The base of every artifact: a schema version, an upgrade step, validated read and write.

An artifact is a pydantic model written as JSON by one stage and read by another. Readers
never see a raw dict: :meth:`Artifact.read` validates the file and raises
:class:`ArtifactError` naming the file and the offending field. Files written before the
artifact carried a ``schema_version`` (version 0) or by an older release are brought to the
current version by :meth:`Artifact.upgrade` before validation, so old run folders and
packages keep loading.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Artifact", "ArtifactError", "finite_or_none"]


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable, or does not match its schema.

    Attributes:
        source: the file (or a description of the object) that failed.
        field: dotted path of the first invalid field (``None`` when the whole file failed).
    """

    def __init__(self, source: str, message: str, field: str | None = None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{source}{where}: {message}")
        self.source = source
        self.field = field


def finite_or_none(value: Any) -> float | None:
    """``float(value)``, or ``None`` for missing, NaN and infinite values (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _field(err: ValidationError) -> str:
    first = err.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "<root>"


class Artifact(BaseModel):
    """Base class: subclasses set :attr:`SCHEMA_VERSION` and override :meth:`upgrade`.

    NaN and infinite floats are written as JSON ``null`` (so the files are standard JSON)
    and fields that may be undefined are typed ``float | None``.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    #: the version this release writes.
    SCHEMA_VERSION: ClassVar[int] = 1
    #: the usual file name (documentation and error messages).
    FILE: ClassVar[str] = ""

    schema_version: int = 1

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Bring ``data`` written at ``version`` to :attr:`SCHEMA_VERSION` (default: as is)."""
        return data

    @classmethod
    def parse(cls, data: Any, source: str = "<object>") -> Self:
        """Validate a decoded JSON value (upgrading older versions first).

        Args:
            data: the decoded JSON.
            source: the file name or description used in error messages.

        Raises:
            ArtifactError: the data does not match the schema (message names the field).
        """
        if isinstance(data, dict):
            version = data.get("schema_version", 0)
            if not isinstance(version, int) or isinstance(version, bool):
                raise ArtifactError(
                    source, f"schema_version {version!r} is not an integer", "schema_version"
                )
            if version > cls.SCHEMA_VERSION:
                raise ArtifactError(
                    source,
                    f"schema version {version} is newer than this medtl reads "
                    f"({cls.SCHEMA_VERSION}); upgrade medtl",
                    "schema_version",
                )
            if version < cls.SCHEMA_VERSION:
                data = {**cls.upgrade(dict(data), version), "schema_version": cls.SCHEMA_VERSION}
        else:
            data = cls.upgrade(data, 0)  # type: ignore[arg-type]
            if isinstance(data, dict):
                data = {**data, "schema_version": cls.SCHEMA_VERSION}
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            raise ArtifactError(source, first["msg"], _field(err)) from err

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Read and validate a JSON file.

        Raises:
            ArtifactError: missing file, invalid JSON, or a field that does not validate.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ArtifactError(str(path), f"cannot read: {err.strerror or err}") from err
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ArtifactError(str(path), f"not valid JSON: {err}") from err
        return cls.parse(data, str(path))

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (NaN as ``None``), validated on the way out."""
        data = json.loads(self.model_dump_json(warnings=False))
        type(self).parse(data, f"{type(self).__name__} being written")
        return data

    def write(self, path: str | Path) -> Path:
        """Validate and write as indented JSON (creating the folder).

        Raises:
            ArtifactError: the object does not validate (it was changed after construction
                with values its schema forbids).
        """
        path = Path(path)
        data = self.to_json_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path
