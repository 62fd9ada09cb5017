"""Phase 2 on real features of real radiographs: out-of-fold predictions, samplers, stored results."""

import hashlib

import numpy as np
import pytest

from featx.evaluation.crossval import fit_variant
from featx.evaluation.results import load_result
from featx.evaluation.splits import Protocol
from featx.exceptions import MissingFeaturesError, ParameterError
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads import HeadRecipe, make_head, sampling, with_strategy
from featx.heads.family import out_of_fold_proba
from tests.realdata import LITE0_64

FIVE = Protocol(group_by="patient", folds=5, seed=0)


@pytest.fixture(scope="module")
def features(feature_data):
    dataset, cache = feature_data
    return load_features(cache, LITE0_64.key(dataset.id), dataset).features, dataset.label_indices()


def _fit(feature_data, recipe, protocol=FIVE, **options):
    dataset, cache = feature_data
    return fit_variant(dataset, LITE0_64, recipe, protocol, cache_dir=cache, progress=False, **options)


@pytest.mark.parametrize("strategy", ["oversample", "smote", "undersample", "class-weight"])
def test_a_strategy_sees_only_its_folds_training_rows(strategy, features, monkeypatch):
    matrix, y = features
    fold = np.arange(len(y)) % 3
    seen, training_rows = [], sampling.training_rows

    def recording(name, X, y, random_state=0):
        seen.append(np.array(X, copy=True))
        return training_rows(name, X, y, random_state)

    monkeypatch.setattr(sampling, "training_rows", recording)
    proba, _ = out_of_fold_proba(matrix, y, fold, lambda: with_strategy(make_head("logreg"), strategy))
    assert np.allclose(proba.sum(axis=1), 1) and len(seen) == 3
    for k, rows in enumerate(seen):
        test_rows = {row.tobytes() for row in matrix[fold == k]}
        assert not any(row.tobytes() in test_rows for row in rows)
        assert len(rows) == int((fold != k).sum())


def test_variants_share_one_byte_identical_split_and_rerun_reproduces(feature_data):
    first = _fit(feature_data, HeadRecipe(head="mlp1000-750", epochs=2))
    split_file = first.result.provenance.split_file
    split_bytes = hashlib.sha256(open(split_file, "rb").read()).hexdigest()
    other = _fit(feature_data, HeadRecipe(head="logreg", sampler="smote"))
    assert other.result.provenance.split_file == split_file
    assert hashlib.sha256(open(split_file, "rb").read()).hexdigest() == split_bytes
    again = _fit(feature_data, HeadRecipe(head="mlp1000-750", epochs=2), refit=True)
    assert not again.reused
    np.testing.assert_array_equal(again.result.proba, first.result.proba)
    assert _fit(feature_data, HeadRecipe(head="mlp1000-750", epochs=2)).reused


def test_stored_result_round_trips_its_records(feature_data):
    summary = _fit(feature_data, HeadRecipe(head="logreg"))
    stored = load_result(summary.result.path)
    assert stored.variant == summary.result.variant and stored.classes == ("covid", "pneumonia", "normal")
    np.testing.assert_array_equal(stored.proba, summary.result.proba)
    assert stored.timings.total_seconds > 0 and len(stored.timings.fold_seconds) == 5
    assert summary["accuracy_3class"] == pytest.approx(np.mean(stored.proba.argmax(axis=1) == stored.y_true))


def test_the_variant_names_every_setting(feature_data):
    base = _fit(feature_data, HeadRecipe(head="logreg")).result.variant
    for other in (
        _fit(feature_data, HeadRecipe(head="logreg"), Protocol(group_by="patient", folds=5, seed=1)).result.variant,
        _fit(feature_data, HeadRecipe(head="logreg", sampler="class-weight")).result.variant,
    ):
        assert other.name() != base.name()


def test_fit_without_a_store_names_what_is_missing(feature_data):
    dataset, cache = feature_data
    with pytest.raises(MissingFeaturesError, match=r"efficientnet_lite0 \(imagenet, 96x96\).*holds 90 of the 90"):
        fit_variant(
            dataset,
            FeatureSpec(backbone="efficientnet_lite0", weights="imagenet", input_size=(96, 96)),
            HeadRecipe(head="logreg"),
            FIVE,
            cache_dir=cache,
        )


def test_folds_trained_in_parallel_equal_folds_trained_one_by_one(features):
    matrix, y = features
    fold = np.arange(len(y)) % 5
    serial, serial_seconds = out_of_fold_proba(matrix, y, fold, lambda: make_head("logreg"), jobs=1)
    parallel, parallel_seconds = out_of_fold_proba(matrix, y, fold, lambda: make_head("logreg"), jobs=2)
    np.testing.assert_allclose(parallel, serial, rtol=1e-10, atol=1e-12)
    assert len(serial_seconds) == len(parallel_seconds) == 5


def test_only_the_named_folds_are_fitted_and_their_rows_match_the_full_run(features):
    matrix, y = features
    fold = np.arange(len(y)) % 5
    full, _ = out_of_fold_proba(matrix, y, fold, lambda: make_head("logreg"))
    some, seconds = out_of_fold_proba(matrix, y, fold, lambda: make_head("logreg"), jobs=2, only=[3, 1])
    named = np.isin(fold, [1, 3])
    np.testing.assert_allclose(some[named], full[named], rtol=1e-10, atol=1e-12)
    assert not some[~named].any() and len(seconds) == 2
    with pytest.raises(ParameterError, match=r"only names a fold that no row is in, got \[7\]"):
        out_of_fold_proba(matrix, y, fold, lambda: make_head("logreg"), only=[7])
