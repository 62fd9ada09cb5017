"""Stratified k-fold splits, grouped by patient by default, saved once and reused by every variant."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from featx.exceptions import ParameterError, SplitError, UnknownNameError
from featx.fileio import write_text_atomic
from featx.limits import MAX_SEED
from featx.records import STRICT, Text, read_record

SPLIT_FORMAT = 1
"""The version of the split file's format this featx writes and reads."""

PROTOCOLS = {
    "patient": "no patient in two folds (featx's default)",
    "image": "images split independently of their patient (the paper's protocol)",
}


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """How out-of-fold predictions are made.

    Attributes
    ----------
    group_by : str
        ``patient`` (no patient in both training and test folds, the default) or ``image`` (the paper).
    folds : int
        At least 2 (default 10).
    seed : int
        Seed of the fold assignment and of every head's own randomness (default 0).
    """

    group_by: str = "patient"
    folds: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.group_by not in PROTOCOLS:
            raise UnknownNameError("protocol", self.group_by, PROTOCOLS)
        if int(self.folds) < 2:
            raise ParameterError("folds", self.folds, "must be >= 2")

    def repeated(self, repeats: int) -> tuple[Protocol, ...]:
        """The protocols of ``repeats`` split sets for repeated cross-validation: seeds ``seed``, ``seed + 1``, ...

        Raises
        ------
        ParameterError
            When ``repeats`` is below 1 or would take a seed past the largest.
        """
        if int(repeats) < 1:
            raise ParameterError("repeats", repeats, "must be >= 1")
        if self.seed + int(repeats) - 1 > MAX_SEED:
            raise ParameterError("repeats", repeats, f"takes the seed past {MAX_SEED} from seed {self.seed}")
        return tuple(replace(self, seed=self.seed + repeat) for repeat in range(int(repeats)))

    @property
    def file_name(self) -> str:
        """``group_by-kK-sS.json``."""
        return f"{self.group_by}-k{self.folds}-s{self.seed}.json"


@dataclass(frozen=True, kw_only=True)
class Split:
    """A split file: which images each fold tests, made once per dataset and protocol.

    Attributes
    ----------
    format_version : int
    dataset_id : str
    protocol : str
        ``patient`` or ``image`` (see :data:`PROTOCOLS`).
    folds : int
        At least 2; ``test_folds`` has one list per fold.
    seed : int
    classes : tuple of str
    test_folds : tuple of tuple of str
        Per fold, its test image ids (sorted); no image is in two folds.
    """

    __pydantic_config__ = STRICT

    format_version: Annotated[int, Field(ge=1)]
    dataset_id: Text
    protocol: Literal[tuple(PROTOCOLS)]
    folds: Annotated[int, Field(ge=2)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    classes: Annotated[tuple[Text, ...], Field(min_length=2)]
    test_folds: tuple[tuple[Text, ...], ...]

    def __post_init__(self):
        if len(self.test_folds) != self.folds:
            raise ValueError(f"test_folds: {len(self.test_folds)} folds listed for folds={self.folds}")
        held = [image_id for fold in self.test_folds for image_id in fold]
        if len(set(held)) != len(held):
            raise ValueError("test_folds: an image is in two folds")

    def fits(self, dataset, protocol: Protocol) -> bool:
        """True when this split was made for ``dataset``'s images under ``protocol``."""
        wanted = (dataset.id, protocol.group_by, protocol.folds, protocol.seed)
        if (self.dataset_id, self.protocol, self.folds, self.seed) != wanted:
            return False
        return sorted(image_id for fold in self.test_folds for image_id in fold) == sorted(dataset.table["image_id"])


def split_path(cache_dir, dataset, protocol: Protocol) -> Path:
    """Where the split of ``dataset`` under ``protocol`` is saved."""
    return Path(cache_dir) / dataset.id / "splits" / protocol.file_name


def protocol_groups(dataset, group_by: str):
    """The unit each image belongs to under a protocol: its patient, or itself (as strings)."""
    return dataset.table["patient_id" if group_by == "patient" else "image_id"].astype(str)


def assign_folds(
    labels, groups, protocol: Protocol, class_names, *, what: str = "folds", where: str = ""
) -> np.ndarray:
    """The test fold of each row, one of ``protocol.folds`` folds stratified by ``labels`` (indices into
    ``class_names``) and, under the patient protocol, keeping each of ``groups`` in one fold (seeded by
    ``protocol.seed``).

    ``what`` names the fold count in the error (default ``folds``; nested selection's inner folds say so)
    and ``where`` the rows (default: none; e.g. " among outer fold 3's training images").

    Raises
    ------
    SplitError
        When a class present has fewer groups than folds.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    unit = "patients" if protocol.group_by == "patient" else "images"
    for index in np.unique(labels):
        count = len(np.unique(groups[labels == index]))
        if count < protocol.folds:
            raise SplitError(
                f"class {class_names[index]!r} has only {count} {unit}{where}, fewer than "
                f"{what}={protocol.folds}; use {count} {what} or fewer"
            )
    if protocol.group_by == "patient":
        splitter = StratifiedGroupKFold(n_splits=protocol.folds, shuffle=True, random_state=protocol.seed)
        assignments = splitter.split(np.zeros(len(labels)), labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=protocol.folds, shuffle=True, random_state=protocol.seed)
        assignments = splitter.split(np.zeros(len(labels)), labels)
    fold = np.empty(len(labels), dtype=int)
    for index, (_train, test) in enumerate(assignments):
        fold[test] = index
    return fold


def make_split(dataset, protocol: Protocol) -> Split:
    """Assign every image to one test fold (see :func:`assign_folds`).

    Raises
    ------
    SplitError
        When patient ids are missing under grouping or a class has too few patients/images.
    """
    if protocol.group_by == "patient" and not dataset.has_patient_ids:
        raise SplitError(
            f"{dataset.root}: patient-grouped folds need a patient_id for every image; add a patient_id "
            "column to metadata.csv, or group by image (the paper's image-level protocol)"
        )
    groups = protocol_groups(dataset, protocol.group_by).to_numpy()
    ids = dataset.table["image_id"].to_numpy()
    fold = assign_folds(dataset.label_indices(), groups, protocol, dataset.classes)
    return Split(
        format_version=SPLIT_FORMAT,
        dataset_id=dataset.id,
        protocol=protocol.group_by,
        folds=protocol.folds,
        seed=protocol.seed,
        classes=tuple(dataset.classes),
        test_folds=tuple(tuple(sorted(ids[fold == index].tolist())) for index in range(protocol.folds)),
    )


def load_or_make_split(cache_dir, dataset, protocol: Protocol):
    """Reuse the saved split for this request, or make and save it (atomically).

    Returns
    -------
    split : Split
    path : Path

    Raises
    ------
    RecordError
        When a saved split is not a split file of this featx's format (naming the file and the field).
    SplitError
        When a saved split was made for other images or another protocol.
    """
    path = split_path(cache_dir, dataset, protocol)
    if path.exists():
        split = read_record(path, Split, what="split file", version_field="format_version", version=SPLIT_FORMAT)
        if not split.fits(dataset, protocol):
            raise SplitError(
                f"{path}: saved split was not made for this dataset's images under this protocol; "
                "delete it to make a new one"
            )
        return split, path
    split = make_split(dataset, protocol)
    write_text_atomic(path, json.dumps(asdict(split), indent=1))
    return split, path


def fold_of_each_image(split: Split, image_ids) -> np.ndarray:
    """Test-fold number of each image id, in the given order."""
    fold = {image_id: index for index, ids in enumerate(split.test_folds) for image_id in ids}
    return np.array([fold[image_id] for image_id in image_ids])
