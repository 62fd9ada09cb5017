"""Stratified k-fold splits, grouped by patient by default, saved once and reused by every variant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from featx.exceptions import ParameterError, SplitError, UnknownNameError
from featx.fileio import write_text_atomic

PROTOCOLS = {
    "patient": "no patient in two folds (featx's default)",
    "image": "images split independently of their patient (the paper's protocol)",
}


@dataclass(frozen=True)
class Protocol:
    """How out-of-fold predictions are made.

    Attributes
    ----------
    group_by : str
        ``patient`` (no patient in both training and test folds) or ``image`` (the paper).
    folds : int
        At least 2.
    seed : int
        Seed of the fold assignment and of every head's own randomness.
    """

    group_by: str = "patient"
    folds: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.group_by not in PROTOCOLS:
            raise UnknownNameError("protocol", self.group_by, PROTOCOLS)
        if int(self.folds) < 2:
            raise ParameterError("folds", self.folds, "must be >= 2")

    @property
    def file_name(self) -> str:
        """``group_by-kK-sS.json``."""
        return f"{self.group_by}-k{self.folds}-s{self.seed}.json"


def split_path(cache_dir, dataset, protocol: Protocol) -> Path:
    """Where the split of ``dataset`` under ``protocol`` is saved."""
    return Path(cache_dir) / dataset.id / "splits" / protocol.file_name


def protocol_groups(dataset, group_by: str):
    """The unit each image belongs to under a protocol: its patient, or itself (as strings)."""
    return dataset.table["patient_id" if group_by == "patient" else "image_id"].astype(str)


def make_split(dataset, protocol: Protocol) -> dict:
    """Assign every image to one test fold.

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
    labels = dataset.label_indices()
    if protocol.group_by == "patient" and not dataset.has_patient_ids:
        raise SplitError(
            f"{dataset.root}: patient-grouped folds need a patient_id for every image; add a patient_id "
            "column to metadata.csv, or group by image (the paper's image-level protocol)"
        )
    groups = protocol_groups(dataset, protocol.group_by).to_numpy()
    unit = "patients" if protocol.group_by == "patient" else "images"
    for index, name in enumerate(dataset.classes):
        count = len(np.unique(groups[labels == index]))
        if 0 < count < protocol.folds:
            raise SplitError(
                f"class {name!r} has only {count} {unit}, fewer than folds={protocol.folds}; use {count} folds or fewer"
            )
    if protocol.group_by == "patient":
        splitter = StratifiedGroupKFold(n_splits=protocol.folds, shuffle=True, random_state=protocol.seed)
        assignments = splitter.split(np.zeros(len(labels)), labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=protocol.folds, shuffle=True, random_state=protocol.seed)
        assignments = splitter.split(np.zeros(len(labels)), labels)
    ids = dataset.table["image_id"].to_numpy()
    test_folds = [sorted(ids[test].tolist()) for _train, test in assignments]
    return {
        "dataset_id": dataset.id,
        "protocol": protocol.group_by,
        "folds": protocol.folds,
        "seed": protocol.seed,
        "classes": list(dataset.classes),
        "test_folds": test_folds,
    }


def load_or_make_split(cache_dir, dataset, protocol: Protocol):
    """Reuse the saved split for this request, or make and save it (atomically).

    Returns
    -------
    split : dict
    path : Path

    Raises
    ------
    SplitError
        When a saved split is unreadable or does not cover exactly the dataset's images.
    """
    path = split_path(cache_dir, dataset, protocol)
    if path.exists():
        try:
            split = json.loads(path.read_text())
            held = sorted(i for fold in split["test_folds"] for i in fold)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SplitError(f"{path}: damaged split file ({error}); delete it to make a new one") from None
        if held != sorted(dataset.table["image_id"]):
            raise SplitError(f"{path}: saved split does not cover this dataset's images; delete it to make a new one")
        return split, path
    split = make_split(dataset, protocol)
    write_text_atomic(path, json.dumps(split, indent=1))
    return split, path


def fold_of_each_image(split: dict, image_ids) -> np.ndarray:
    """Test-fold number of each image id, in the given order."""
    fold = {image_id: index for index, ids in enumerate(split["test_folds"]) for image_id in ids}
    return np.array([fold[image_id] for image_id in image_ids])
