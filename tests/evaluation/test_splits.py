"""Saved folds: grouped by patient, stratified, reused byte for byte by every variant."""

import json

import numpy as np
import pytest

from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split, make_split
from featx.exceptions import ParameterError, RecordError, SplitError, UnknownNameError


def test_grouped_folds_never_share_a_patient(feature_data):
    dataset, _ = feature_data
    split = make_split(dataset, Protocol(group_by="patient", folds=5, seed=0))
    patient = dict(zip(dataset.table["image_id"], dataset.table["patient_id"], strict=True))
    seen = {}
    for index, fold in enumerate(split.test_folds):
        for image_id in fold:
            assert seen.setdefault(patient[image_id], index) == index
    assert sorted(sum(split.test_folds, ())) == sorted(dataset.table["image_id"])


def test_missing_patient_ids_and_small_classes_are_explained(feature_data):
    from dataclasses import replace

    dataset, _ = feature_data
    anonymous = replace(dataset, table=dataset.table.assign(patient_id=""))
    with pytest.raises(SplitError, match="need a patient_id.*or group by image"):
        make_split(anonymous, Protocol(group_by="patient", folds=5))
    with pytest.raises(SplitError, match="fewer than folds=40; use .* folds or fewer"):
        make_split(dataset, Protocol(group_by="image", folds=40))


def test_protocol_checks_its_values():
    with pytest.raises(ParameterError, match="folds must be >= 2, got 1"):
        Protocol(group_by="patient", folds=1)
    with pytest.raises(UnknownNameError, match="Unknown protocol 'site'. Available: image, patient"):
        Protocol(group_by="site")


def test_saved_split_lists_test_image_ids_per_fold(feature_data):
    dataset, cache = feature_data
    split, path = load_or_make_split(cache, dataset, Protocol(group_by="image", folds=5, seed=7))
    saved = json.loads(path.read_text())
    assert saved["test_folds"] == [list(fold) for fold in split.test_folds] and len(saved["test_folds"]) == 5
    fold = fold_of_each_image(split, dataset.table["image_id"])
    assert np.bincount(fold).min() >= 17


def test_damaged_split_file_is_refused_with_its_path(feature_data, tmp_path):
    dataset, _ = feature_data
    _, path = load_or_make_split(tmp_path, dataset, Protocol(group_by="image", folds=5, seed=1))
    path.write_text("{not json")
    with pytest.raises(RecordError, match=f"{path}: not a valid split file: damaged JSON"):
        load_or_make_split(tmp_path, dataset, Protocol(group_by="image", folds=5, seed=1))
