"""One JSON file per evaluated variant: out-of-fold probabilities, folds, timings, provenance.

Every phase writes this format, so every comparison reads identical folds and recomputes its
numbers with :mod:`featx.metrics` from the stored predictions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from featx.exceptions import CacheError
from featx.fileio import write_text_atomic

VARIANT_KEYS = ("phase", "backbone", "weights", "input_size", "head", "sampler", "protocol", "folds", "seed")


def variant_name(variant: dict) -> str:
    """File-name-safe name of a variant, with a hash of everything that defines it."""
    width, height = variant["input_size"]
    digest = hashlib.sha256(json.dumps(variant, sort_keys=True, default=str).encode()).hexdigest()[:8]
    weights = variant["weights"].replace(":", "-").replace("/", "_")
    return (f"p{variant['phase']}-{variant['backbone']}-{weights}-{width}x{height}-{variant['head']}-"
            f"{variant['sampler']}-{variant['protocol']}-k{variant['folds']}-s{variant['seed']}-{digest}")


def result_path(cache_dir, dataset_id: str, variant: dict) -> Path:
    """Where the result of ``variant`` on dataset ``dataset_id`` is stored."""
    return Path(cache_dir) / dataset_id / "results" / f"{variant_name(variant)}.json"


def save_result(path: Path, variant: dict, image_ids, y_true, proba, fold, groups, timings: dict) -> Path:
    """Write a result atomically (temporary file, then rename)."""
    record = {
        "variant": variant,
        "image_ids": list(image_ids),
        "groups": [str(g) for g in groups],
        "y_true": [int(v) for v in y_true],
        "fold": [int(v) for v in fold],
        "proba": np.asarray(proba, dtype=np.float64).tolist(),
        "timings": timings,
    }
    return write_text_atomic(path, json.dumps(record))


def load_result(path) -> dict:
    """Read a result; arrays come back as numpy arrays.

    Raises
    ------
    CacheError
        When the file is not a complete result.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        for key in ("y_true", "fold", "proba"):
            record[key] = np.asarray(record[key])
        if not (len(record["y_true"]) == len(record["fold"]) == len(record["proba"]) == len(record["image_ids"])):
            raise ValueError("arrays of different lengths")
    except (OSError, ValueError, KeyError) as error:
        raise CacheError(f"{path}: damaged result file ({error}); delete it and rerun") from None
    record["path"] = str(path)
    return record


def list_results(cache_dir, dataset_id: str) -> list[dict]:
    """Every stored result for a dataset, sorted by file name."""
    folder = Path(cache_dir) / dataset_id / "results"
    return [load_result(path) for path in sorted(folder.glob("*.json"))]
