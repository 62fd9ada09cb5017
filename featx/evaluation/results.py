"""One JSON file per evaluated variant: out-of-fold probabilities, folds, timings, provenance.

Every phase writes this format, so every comparison reads identical folds and recomputes its
numbers with :mod:`featx.evaluation.metrics` from the stored predictions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from featx.evaluation.variant import Variant, VariantRecord
from featx.exceptions import DivergedError, FeatxError, RecordError
from featx.fileio import write_text_atomic
from featx.records import STRICT, Count, Probability, Seconds, Text, non_finite, read_record

RESULT_FORMAT = 1
"""The version of the result file's format this featx writes and reads."""
PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far a row of stored probabilities may sum from 1 (float32 softmax outputs stored as float64)."""


@dataclass(frozen=True, kw_only=True)
class Timings:
    """How long a variant took to train.

    Attributes
    ----------
    fold_seconds : tuple of float
        Training time of each fold (default: none).
    total_seconds : float
        Wall time of the whole cross-validated fit (default 0).
    gflops : float or None
        Matmul GFLOP/s achieved while training a dense head (default None: other heads).
    """

    __pydantic_config__ = STRICT

    fold_seconds: tuple[Seconds, ...] = ()
    total_seconds: Seconds = 0.0
    gflops: Seconds | None = None

    def to_dict(self) -> dict:
        """JSON form."""
        return {"fold_seconds": list(self.fold_seconds), "total_seconds": self.total_seconds, "gflops": self.gflops}


@dataclass(frozen=True, kw_only=True)
class ResultProvenance:
    """What a stored result records about how it was made.

    Attributes
    ----------
    featx_version : str
    split_file : str
        The saved folds the result was evaluated on.
    stores : tuple of str
        The feature stores the features came from (none for fine-tuning).
    created : str
        ISO 8601 time, UTC.
    """

    __pydantic_config__ = STRICT

    featx_version: Text
    split_file: Text
    stores: tuple[Text, ...]
    created: Text


@dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """A result file: the schema every stored result is read through (see :class:`Result`).

    Besides each field's type and range, a result holds one value per image in ``image_ids``,
    ``groups``, ``y_true``, ``fold`` and ``proba``; each ``y_true`` names one of the ``classes``,
    each ``fold`` one of the variant's folds, and each row of ``proba`` has one probability per
    class and sums to 1.
    """

    __pydantic_config__ = STRICT

    format_version: Annotated[int, Field(ge=1)]
    variant: VariantRecord
    classes: Annotated[tuple[Text, ...], Field(min_length=2)]
    image_ids: tuple[Text, ...]
    groups: tuple[str, ...]
    y_true: tuple[Count, ...]
    fold: tuple[Count, ...]
    proba: tuple[tuple[Probability, ...], ...]
    timings: Timings
    provenance: ResultProvenance

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        images = len(self.image_ids)
        for name in ("groups", "y_true", "fold", "proba"):
            if len(getattr(self, name)) != images:
                return f"{name}: {len(getattr(self, name))} values for {images} images"
        if len(set(self.image_ids)) != images:
            return "image_ids: an image id is listed twice"
        if len(set(self.classes)) != len(self.classes):
            return "classes: a class is listed twice"
        bounds = {"y_true": (len(self.classes), "classes"), "fold": (self.variant.folds, "folds")}
        for name, (bound, unit) in bounds.items():
            row = next((i for i, value in enumerate(getattr(self, name)) if value >= bound), None)
            if row is not None:
                return f"{name}: {getattr(self, name)[row]} (image {row}) is out of range for {bound} {unit}"
        width = len(self.classes)
        for row, probabilities in enumerate(self.proba):
            if len(probabilities) != width:
                return f"proba: {len(probabilities)} probabilities (image {row}) for {width} classes"
            if abs(sum(probabilities) - 1) > PROBABILITY_SUM_TOLERANCE:  # False for NaN: refused when saved
                return f"proba: the probabilities of image {row} sum to {sum(probabilities):.6g}, not 1"
        return None


@dataclass(frozen=True, eq=False, kw_only=True)
class Result:
    """Out-of-fold predictions of one variant.

    Attributes
    ----------
    variant : Variant
    classes : tuple of str
        Class names, in the column order of ``proba``.
    image_ids : tuple of str
    groups : numpy.ndarray of str
        The bootstrap unit of each image (its patient, or itself).
    y_true, fold : numpy.ndarray of int
        True class index and test fold of each image.
    proba : numpy.ndarray of float, (N, len(classes))
    timings : Timings
    provenance : ResultProvenance
    path : Path or None
        Where the result is stored (default None: not stored).
    """

    variant: Variant
    classes: tuple
    image_ids: tuple
    groups: np.ndarray
    y_true: np.ndarray
    fold: np.ndarray
    proba: np.ndarray
    timings: Timings
    provenance: ResultProvenance
    path: Path | None = None

    def save(self, path) -> Result:
        """Write atomically (temporary file, then rename); return the result with its path.

        Raises
        ------
        DivergedError
            When a probability or a timing is NaN or infinite (training diverged); nothing is written.
        """
        proba = np.asarray(self.proba, dtype=np.float64)
        bad = non_finite(proba, "proba") + non_finite(self.timings, "timings")
        if bad:
            diverged = np.flatnonzero(~np.isfinite(proba).reshape(len(proba), -1).all(axis=1))
            what = "timings"
            if len(diverged):
                first = self.image_ids[diverged[0]]
                what = f"probabilities for {len(diverged)} of {len(proba)} images (first: {first})"
            raise DivergedError(
                f"{self.variant.name()} (result {path})",
                f"non-finite {what} ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})",
            )
        record = ResultRecord(
            format_version=RESULT_FORMAT,
            variant=self.variant.to_record(),
            classes=tuple(self.classes),
            image_ids=tuple(self.image_ids),
            groups=tuple(str(g) for g in self.groups),
            y_true=tuple(int(v) for v in self.y_true),
            fold=tuple(int(v) for v in self.fold),
            proba=tuple(map(tuple, proba.tolist())),
            timings=self.timings,
            provenance=self.provenance,
        )
        write_text_atomic(path, json.dumps(asdict(record), allow_nan=False))
        return replace(self, path=Path(path))

    @classmethod
    def from_record(cls, record: ResultRecord, path) -> Result:
        """The result a record read from ``path`` holds."""
        return cls(
            variant=Variant.from_record(record.variant),
            classes=record.classes,
            image_ids=record.image_ids,
            groups=np.asarray(record.groups, dtype=str),
            y_true=np.asarray(record.y_true, dtype=int),
            fold=np.asarray(record.fold, dtype=int),
            proba=np.asarray(record.proba, dtype=np.float64).reshape(len(record.proba), len(record.classes)),
            timings=record.timings,
            provenance=record.provenance,
            path=Path(path),
        )


@dataclass(frozen=True, kw_only=True)
class FinishedFold:
    """One finished fold of a fine-tuning run, in the checkpoint beside its result (``NAME.partial.json``).

    Attributes
    ----------
    proba : tuple of tuple of float
        The probabilities of the fold's test images.
    seconds : float
        How long the fold took.
    """

    __pydantic_config__ = STRICT

    proba: tuple[tuple[Probability, ...], ...]
    seconds: Seconds


FoldNumber = Annotated[str, Field(pattern="^(0|[1-9][0-9]*)$")]


def read_checkpoint(path) -> dict:
    """The finished folds of an interrupted fine-tuning run, checked through :class:`FinishedFold`.

    Returns
    -------
    dict of str to dict
        Per fold number, ``proba`` and ``seconds`` (the form the checkpoint is written in).

    Raises
    ------
    RecordError
        When the checkpoint is damaged (naming the fold and the field).
    """
    folds = read_record(path, dict[FoldNumber, FinishedFold], what="fine-tuning checkpoint")
    return {number: asdict(fold) for number, fold in folds.items()}


def result_path(cache_dir, variant: Variant) -> Path:
    """Where the result of ``variant`` is stored: ``cache/<dataset id>/results/<name>.json``."""
    return Path(cache_dir) / variant.features.dataset_id / "results" / f"{variant.name()}.json"


def load_result(path) -> Result:
    """Read a stored result through :class:`ResultRecord`.

    Raises
    ------
    RecordError
        When the file is not a result of this featx's format (naming the file and the field), its
        variant's head, settings or sampler are not this featx's, or it was written by a newer or
        older featx.
    FileSystemError
        When it cannot be read.
    """
    record = read_record(path, ResultRecord, what="result file", version_field="format_version", version=RESULT_FORMAT)
    try:
        return Result.from_record(record, path)
    except FeatxError as error:  # a head, setting or sampler this featx does not know
        raise RecordError(f"{path}: not a valid result file: variant: {error}") from None


def find_result(cache_dir, variant: Variant) -> Result | None:
    """The stored result of exactly this variant, or None."""
    path = result_path(cache_dir, variant)
    return load_result(path) if path.exists() else None


def list_results(cache_dir, dataset_id: str) -> list[Result]:
    """Every stored result for a dataset, sorted by file name (checkpoints excluded)."""
    folder = Path(cache_dir) / dataset_id / "results"
    return [load_result(path) for path in sorted(folder.glob("*.json")) if not path.name.endswith(".partial.json")]
