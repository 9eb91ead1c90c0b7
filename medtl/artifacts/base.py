"""The base of every artifact: a schema version, an upgrade step, validated read and write.

An artifact is a pydantic model written as JSON by one stage and read by another. Readers
never see a raw dict: :meth:`Artifact.read` validates the file and raises
:class:`ArtifactError` naming the file and the offending field. Files written before the
artifact carried a ``schema_version`` (version 0) or by an older release are brought to the
current version by :meth:`Artifact.upgrade` before validation, so old run folders and
packages keep loading.

A **document** (a file, a stored JSON value) must carry every field its writer always writes
(:attr:`DocumentModel.REQUIRED_IN_FILE`), while Python code building an artifact may leave
such fields to their defaults (``created``, ``versions``; :func:`save_package` fills
``architecture``). :meth:`Artifact.parse` validates with the document rule, and the JSON
Schemas in ``data_schemas/`` list those fields as ``required``, so both refuse a file that
lacks them. Fields added after files without them were written stay optional.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

__all__ = ["DOCUMENT", "Artifact", "ArtifactError", "DocumentModel", "finite_or_none"]

#: Validation-context key: ``Model.model_validate(data, context={DOCUMENT: True})`` validates
#: ``data`` as a document (every :attr:`DocumentModel.REQUIRED_IN_FILE` field present).
DOCUMENT = "medtl_document"


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


class DocumentModel(BaseModel):
    """Base of every model a file holds: unknown keys refused, NaN written as ``null``.

    :attr:`REQUIRED_IN_FILE` names the fields that have a default for code building the
    object but that every document carries (its writer always wrote them). Validating with
    ``context={DOCUMENT: True}`` (what :meth:`Artifact.parse` does, nested models included)
    refuses a document without them, and the generated JSON Schema lists them as
    ``required``.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    #: fields with a default that every document nevertheless carries.
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def required_in_file(cls) -> tuple[str, ...]:
        """The fields every document of this model carries (besides those without default)."""
        return cls.REQUIRED_IN_FILE

    @classmethod
    def _file_key(cls, name: str) -> str:
        field = cls.model_fields[name]
        return field.alias or name

    @model_validator(mode="before")
    @classmethod
    def _document_is_complete(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get(DOCUMENT):
            missing = [
                cls._file_key(name)
                for name in cls.required_in_file()
                if cls._file_key(name) not in data and name not in data
            ]
            if missing:
                raise PydanticCustomError(
                    "missing",
                    "Field required in a file: {fields}",
                    {"fields": ", ".join(missing)},
                )
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        required = list(target.get("required", []))
        for name in cls.required_in_file():
            key = cls._file_key(name)
            if key not in required:
                required.append(key)
            # a document always states it: the constructor's default is no file default
            target.get("properties", {}).get(key, {}).pop("default", None)
        if required:
            target["required"] = required
        return schema

    @classmethod
    def validate_document(cls, data: Any) -> Self:
        """Validate decoded JSON as a document (``REQUIRED_IN_FILE`` fields present).

        Raises:
            pydantic.ValidationError: the document does not match the model.
        """
        return cls.model_validate(data, context={DOCUMENT: True})


class Artifact(DocumentModel):
    """Base class: subclasses set :attr:`SCHEMA_VERSION` and override :meth:`upgrade`.

    NaN and infinite floats are written as JSON ``null`` (so the files are standard JSON)
    and fields that may be undefined are typed ``float | None``.
    """

    #: the version this release writes.
    SCHEMA_VERSION: ClassVar[int] = 1
    #: the usual file name (documentation and error messages).
    FILE: ClassVar[str] = ""

    schema_version: int = 1

    @classmethod
    def required_in_file(cls) -> tuple[str, ...]:
        """``schema_version`` and the subclass's :attr:`REQUIRED_IN_FILE`."""
        return ("schema_version", *cls.REQUIRED_IN_FILE)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        target = handler.resolve_ref_schema(schema)
        version = target.get("properties", {}).get("schema_version")
        if version is not None:  # files of earlier versions are upgraded by medtl on reading
            version.update({"minimum": 0, "maximum": cls.SCHEMA_VERSION})
        return schema

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
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise ArtifactError(
                    source,
                    f"schema_version {version!r} is not a non-negative integer",
                    "schema_version",
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
            return cls.validate_document(data)
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
