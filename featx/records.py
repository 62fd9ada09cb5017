"""The one reader of featx's JSON files: every file featx reads back (model manifests, results,
splits, store and pixel-cache provenance, manifests of data sets and downloads) is parsed into its
frozen record through a declared schema.

The schema is the record's own dataclass: field types, ``Annotated[..., Field(ge=...)]`` ranges,
required fields (those without a default) and, through :data:`STRICT`, no unknown fields, no
type coercion (``"abc"`` is not a size, ``"3"`` is not a number) and no NaN or infinity.
Validation is pydantic's (``pydantic.TypeAdapter`` over the standard-library dataclass), chosen over
typed loaders of our own because it reports every failing field by its path, handles nested
records and tuples, and is one line per record type.

A file whose format version is newer than this featx reads is named as such (upgrade featx);
an older one as made by an earlier featx.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import stat
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from featx.exceptions import RecordError
from featx.fileio import os_errors

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
"""The pydantic configuration every record read from a file declares as ``__pydantic_config__``."""

Count = Annotated[int, Field(ge=0)]
"""A number of things, or an index: an integer, at least 0."""
Seconds = Annotated[float, Field(ge=0)]
"""A duration or a rate: a finite float, at least 0."""
Probability = Annotated[float, Field(ge=0, le=1)]
Text = Annotated[str, Field(min_length=1)]
"""A name or an id: a non-empty string."""
Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
"""A sha256 digest in lowercase hex."""

MAX_RECORD_BYTES = 256 << 20
"""A JSON record larger than this is refused before it is read (a link to ``/dev/zero``, say)."""


@functools.cache
def _adapter(record_type) -> TypeAdapter:
    return TypeAdapter(record_type)


def check_regular_file(path, what: str = "file") -> None:
    """Refuse, before opening it, a path that is not a regular file (a pipe would block the reader).

    Raises
    ------
    RecordError
        When ``path`` is a folder, a device or a pipe.
    FileSystemError
        When it cannot be looked at (missing, no permission).
    """
    with os_errors(path, f"read the {what}"):
        mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device or a pipe)"
        raise RecordError(f"{path}: the {what} is {kind}")


def read_bytes_bounded(path, limit: int = MAX_RECORD_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises
    ------
    RecordError
        When ``path`` is not a regular file (a folder, a device, a pipe) or is larger than ``limit``.
    FileSystemError
        When the file cannot be read.
    """
    path = Path(path)
    check_regular_file(path, what)
    with os_errors(path, f"read the {what}"), open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RecordError(f"{path}: the {what} is larger than {limit >> 20} MiB, the most featx reads as a {what}")
    return data


def describe_errors(error: ValidationError, limit: int = 5) -> str:
    """pydantic's errors as ``field: problem`` items, at most ``limit`` of them."""
    items = []
    for item in error.errors()[:limit]:
        where = ".".join(str(part) for part in item["loc"]) or "the whole file"
        problem = "unknown field" if item["type"] == "unexpected_keyword_argument" else item["msg"]
        if item["type"] in ("missing", "missing_keyword_only_argument"):
            problem = "required field missing"
        if item["type"] == "value_error":  # a record's own check (``__post_init__``) names its field itself
            problem = str(item["ctx"]["error"])
            where = ".".join(str(part) for part in item["loc"])
        items.append(f"{where}: {problem}" if where else problem)
    more = error.error_count() - limit
    return "; ".join(items) + (f"; and {more} more" if more > 0 else "")


def parse_record(data: bytes | str, record_type, *, path, what: str, version_field: str | None = None, version=None):
    """Parse JSON ``data`` into ``record_type`` (see :func:`read_record`)."""
    adapter = _adapter(record_type)
    if version_field is not None:
        _check_version(data, path=path, what=what, version_field=version_field, version=version)
    try:
        return adapter.validate_json(data)
    except ValidationError as error:
        raise RecordError(f"{path}: not a valid {what}: {describe_errors(error)}") from None


def _check_version(data, *, path, what, version_field, version) -> None:
    import json

    try:
        values = json.loads(data)
    except ValueError as error:
        raise RecordError(f"{path}: not a valid {what}: damaged JSON ({error})") from None
    except RecursionError:
        raise RecordError(f"{path}: not a valid {what}: damaged JSON (nested too deeply)") from None
    if not isinstance(values, dict):
        raise RecordError(f"{path}: not a valid {what}: the whole file: Input should be an object")
    found = values.get(version_field)
    if isinstance(found, int) and not isinstance(found, bool) and found != version:
        if found > version:
            raise RecordError(
                f"{path}: {what} format {found} was written by a newer featx (this one reads format {version}); "
                "upgrade featx"
            )
        raise RecordError(
            f"{path}: {what} format {found} was written by an earlier featx (this one reads format {version}); "
            "make it again"
        )


def read_record(path, record_type, *, what: str, version_field: str | None = None, version=None):
    """Read a JSON file into a record, checked against the record's declared schema.

    Parameters
    ----------
    path : str or Path
    record_type : type
        A dataclass whose ``__pydantic_config__`` is :data:`STRICT`.
    what : str
        What the file is, for messages (``"model manifest"``).
    version_field : str, optional
        The field holding the format version; a different version is refused with whether it is
        newer or older (default: no version check).
    version : int, optional
        The format version this featx reads.

    Raises
    ------
    RecordError
        Naming the file and every failing field (type, range, required, unknown).
    FileSystemError
        When the file cannot be read.
    """
    data = read_bytes_bounded(path, what=what)
    return parse_record(data, record_type, path=path, what=what, version_field=version_field, version=version)


def non_finite(value, where: str = "") -> list[str]:
    """Where a record (dataclass fields, mappings, sequences, arrays, nested) holds NaN or infinity.

    Returns
    -------
    list of str
        Paths such as ``proba[3][1]`` or ``timings.total_seconds``; empty when every number is finite.
    """
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "the value"]
    if isinstance(value, np.ndarray | np.generic) and np.issubdtype(value.dtype, np.inexact):
        bad = np.argwhere(~np.isfinite(np.asarray(value)))
        return [where + "".join(f"[{i}]" for i in index) for index in bad.tolist()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
        return [path for name, item in fields for path in non_finite(item, f"{where}.{name}" if where else name)]
    if isinstance(value, dict):
        return [path for key, item in value.items() for path in non_finite(item, f"{where}.{key}" if where else key)]
    if isinstance(value, list | tuple):
        return [path for index, item in enumerate(value) for path in non_finite(item, f"{where}[{index}]")]
    return []
