"""One JSON file per evaluated variant: out-of-fold probabilities, folds, timings, provenance.

Every phase writes this format, so every comparison reads identical folds and recomputes its
numbers with :mod:`featx.evaluation.metrics` from the stored predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from featx.evaluation.variant import Variant
from featx.exceptions import CacheError
from featx.fileio import write_text_atomic


@dataclass(frozen=True)
class Timings:
    """How long a variant took to train.

    Attributes
    ----------
    fold_seconds : tuple of float
        Training time of each fold.
    total_seconds : float
        Wall time of the whole cross-validated fit.
    gflops : float or None
        Matmul GFLOP/s achieved while training a dense head (None for other heads).
    """

    fold_seconds: tuple = ()
    total_seconds: float = 0.0
    gflops: float | None = None

    def to_dict(self) -> dict:
        """JSON form."""
        return {"fold_seconds": list(self.fold_seconds), "total_seconds": self.total_seconds, "gflops": self.gflops}


@dataclass(frozen=True, eq=False)
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
    provenance : dict
        ``featx_version``, ``split_file``, ``stores`` the features came from.
    path : Path or None
        Where the result is stored.
    """

    variant: Variant
    classes: tuple
    image_ids: tuple
    groups: np.ndarray
    y_true: np.ndarray
    fold: np.ndarray
    proba: np.ndarray
    timings: Timings = Timings()
    provenance: dict = field(default_factory=dict)
    path: Path | None = None

    def save(self, path) -> Result:
        """Write atomically (temporary file, then rename); return the result with its path."""
        record = {
            "variant": self.variant.to_dict(),
            "classes": list(self.classes),
            "image_ids": list(self.image_ids),
            "groups": [str(g) for g in self.groups],
            "y_true": [int(v) for v in self.y_true],
            "fold": [int(v) for v in self.fold],
            "proba": np.asarray(self.proba, dtype=np.float64).tolist(),
            "timings": self.timings.to_dict(),
            "provenance": self.provenance,
        }
        write_text_atomic(path, json.dumps(record))
        return replace(self, path=Path(path))


def result_path(cache_dir, variant: Variant) -> Path:
    """Where the result of ``variant`` is stored: ``cache/<dataset id>/results/<name>.json``."""
    return Path(cache_dir) / variant.features.dataset_id / "results" / f"{variant.name()}.json"


def load_result(path) -> Result:
    """Read a stored result.

    Raises
    ------
    CacheError
        When the file is not a complete result of this featx's format.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        result = Result(
            variant=Variant.from_dict(record["variant"]),
            classes=tuple(record["classes"]),
            image_ids=tuple(record["image_ids"]),
            groups=np.asarray(record["groups"], dtype=str),
            y_true=np.asarray(record["y_true"], dtype=int),
            fold=np.asarray(record["fold"], dtype=int),
            proba=np.asarray(record["proba"], dtype=np.float64),
            timings=Timings(
                tuple(record["timings"]["fold_seconds"]),
                float(record["timings"]["total_seconds"]),
                record["timings"].get("gflops"),
            ),
            provenance=dict(record["provenance"]),
            path=path,
        )
        lengths = {len(result.y_true), len(result.fold), len(result.proba), len(result.image_ids), len(result.groups)}
        if len(lengths) != 1:
            raise ValueError("arrays of different lengths")
        if result.proba.ndim != 2 or result.proba.shape[1] != len(result.classes):
            raise ValueError(f"probabilities of shape {result.proba.shape} for {len(result.classes)} classes")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CacheError(
            f"{path}: damaged or outdated result file ({type(error).__name__}: {error}); delete it and fit again"
        ) from None
    return result


def find_result(cache_dir, variant: Variant) -> Result | None:
    """The stored result of exactly this variant, or None."""
    path = result_path(cache_dir, variant)
    return load_result(path) if path.exists() else None


def list_results(cache_dir, dataset_id: str) -> list[Result]:
    """Every stored result for a dataset, sorted by file name (checkpoints excluded)."""
    folder = Path(cache_dir) / dataset_id / "results"
    return [load_result(path) for path in sorted(folder.glob("*.json")) if not path.name.endswith(".partial.json")]
