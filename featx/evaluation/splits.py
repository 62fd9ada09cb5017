"""Stratified k-fold splits, grouped by patient by default, saved once and reused by every variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from featx.data.dataset import CLASSES
from featx.exceptions import SplitError
from featx.fileio import write_text_atomic

PROTOCOLS = ("patient", "image")


def split_path(cache_dir, dataset, group_by: str, folds: int, seed: int) -> Path:
    """Where the split of ``dataset`` for this protocol, K and seed is saved."""
    return Path(cache_dir) / dataset.id / "splits" / f"{group_by}-k{folds}-s{seed}.json"


def make_split(dataset, group_by: str = "patient", folds: int = 10, seed: int = 0) -> dict:
    """Assign every image to one test fold.

    Parameters
    ----------
    dataset : featx.data.Dataset
    group_by : str
        ``patient`` (no patient in both training and test folds) or ``image`` (the paper).
    folds : int
    seed : int

    Returns
    -------
    dict
        ``dataset_id``, ``protocol``, ``folds``, ``seed`` and ``test_folds`` (per fold, the
        test image ids).

    Raises
    ------
    SplitError
        When patient ids are missing under grouping or a class has too few patients/images.
    """
    if group_by not in PROTOCOLS:
        raise SplitError(f"Unknown --group-by {group_by!r}. Available: {', '.join(PROTOCOLS)}")
    if folds < 2:
        raise SplitError(f"--folds must be at least 2, got {folds}")
    table = dataset.table
    labels = dataset.label_indices()
    if group_by == "patient":
        if not dataset.has_patient_ids:
            raise SplitError(
                f"{dataset.root}: grouped splitting needs a patient_id for every image; add a patient_id "
                f"column to metadata.csv, or use --group-by image (the paper's image-level protocol)"
            )
        groups = table["patient_id"].astype(str).to_numpy()
        unit = "patients"
    else:
        groups = table["image_id"].to_numpy()
        unit = "images"
    for index, name in enumerate(CLASSES):
        count = len(np.unique(groups[labels == index]))
        if 0 < count < folds:
            raise SplitError(
                f"class {name!r} has only {count} {unit}, fewer than --folds {folds}; use --folds {count} or fewer"
            )
    if group_by == "patient":
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        assignments = splitter.split(np.zeros(len(table)), labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        assignments = splitter.split(np.zeros(len(table)), labels)
    ids = table["image_id"].to_numpy()
    test_folds = [sorted(ids[test].tolist()) for _train, test in assignments]
    return {"dataset_id": dataset.id, "protocol": group_by, "folds": folds, "seed": seed, "test_folds": test_folds}


def load_or_make_split(cache_dir, dataset, group_by: str = "patient", folds: int = 10, seed: int = 0):
    """Reuse the saved split for this request, or make and save it (atomically).

    Returns
    -------
    split : dict
    path : Path

    Raises
    ------
    SplitError
        When a saved split does not cover exactly the dataset's images.
    """
    path = split_path(cache_dir, dataset, group_by, folds, seed)
    if path.exists():
        split = json.loads(path.read_text())
        held = sorted(i for fold in split["test_folds"] for i in fold)
        if held != sorted(dataset.table["image_id"]):
            raise SplitError(f"{path}: saved split does not cover this dataset's images; delete it to make a new one")
        return split, path
    split = make_split(dataset, group_by, folds, seed)
    write_text_atomic(path, json.dumps(split, indent=1))
    return split, path


def protocol_groups(dataset, group_by: str):
    """The unit each image belongs to under a protocol: its patient, or itself (as strings)."""
    return dataset.table["patient_id" if group_by == "patient" else "image_id"].astype(str)


def fold_of_each_image(split: dict, image_ids) -> np.ndarray:
    """Test-fold number of each image id, in the given order."""
    fold = {image_id: index for index, ids in enumerate(split["test_folds"]) for image_id in ids}
    return np.array([fold[image_id] for image_id in image_ids])
