"""The dense heads' fold trainer: each fold trained in sequence equals that fold trained alone, no fold sees
another's test rows, a seeded rerun is identical, and imbalance strategies apply per fold."""

import numpy as np
import pytest

from featx.features.store import load_features
from featx.heads import HeadRecipe, get_head, make_head
from featx.heads.fold_trainer import dropout_keep, flops_per_row, fold_batches, initial_weights
from tests.realdata import LITE0_64


def dense_out_of_fold(matrix, y, fold, recipe, *, seed, n_classes):
    out = get_head(recipe.head).family.out_of_fold(matrix, y, fold, recipe, seed=seed, n_classes=n_classes)
    return out.proba, out.fold_seconds, out.gflops


@pytest.fixture(scope="module")
def features(feature_data):
    dataset, cache = feature_data
    return load_features(cache, LITE0_64.key(dataset.id), dataset).features, dataset.label_indices()


def test_folds_trained_in_sequence_equal_each_fold_trained_alone(features):
    matrix, y = features
    fold = np.arange(len(y)) % 4
    recipe = HeadRecipe(head="mlp1000-750", epochs=3)
    proba, seconds, gflops = dense_out_of_fold(matrix, y, fold, recipe, seed=7, n_classes=3)
    assert len(seconds) == 4 and gflops > 0
    for k in range(4):
        alone = make_head("mlp1000-750", random_state=7, epochs=3).fit(matrix[fold != k], y[fold != k], fold=k)
        np.testing.assert_array_equal(proba[fold == k], alone.predict_proba(matrix[fold == k]))


def test_no_fold_sees_another_folds_test_rows():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1, 2], 40)
    fold = np.arange(120) % 4
    matrix = rng.normal(size=(120, 16)).astype(np.float32)
    leak = np.zeros((120, 3), np.float32)
    leak[fold == 0, y[fold == 0]] = 10.0  # the label, written only into fold 0's test rows
    matrix = np.hstack([matrix, leak])
    recipe = HeadRecipe(head="softmax", epochs=50, learning_rate=0.05)
    proba, _, _ = dense_out_of_fold(matrix, y, fold, recipe, seed=0, n_classes=3)
    honest = np.mean(proba[fold == 0].argmax(axis=1) == y[fold == 0])
    cheat = make_head("softmax", epochs=50, learning_rate=0.05).fit(matrix, y).predict_proba(matrix[fold == 0])
    assert np.mean(cheat.argmax(axis=1) == y[fold == 0]) > 0.95  # trained on those rows, the leak is visible
    assert honest < 0.7  # fold 0's head never saw them: chance plus noise


def test_a_seeded_rerun_is_identical_and_another_seed_differs(features):
    matrix, y = features
    fold = np.arange(len(y)) % 3
    recipe = HeadRecipe(head="mlp1024", epochs=2)
    first = dense_out_of_fold(matrix, y, fold, recipe, seed=1, n_classes=3)[0]
    np.testing.assert_array_equal(dense_out_of_fold(matrix, y, fold, recipe, seed=1, n_classes=3)[0], first)
    assert not np.array_equal(dense_out_of_fold(matrix, y, fold, recipe, seed=2, n_classes=3)[0], first)


def test_the_random_streams_depend_only_on_seed_and_fold():
    dims = [8, 5, 4, 3]
    assert np.array_equal(initial_weights(dims, 3, 2)[0][0], initial_weights(dims, 3, 2)[0][0])
    assert not np.array_equal(initial_weights(dims, 3, 2)[0][0], initial_weights(dims, 3, 1)[0][0])
    assert [len(b) for b in fold_batches(10, 2, 4, 0, 0)] == [4, 4, 2, 4, 4, 2]
    keep = dropout_keep((200, 64, 50), 0.5, 0, 0, 1)
    assert keep.dtype == np.uint8 and abs(keep.mean() - 0.5) < 0.01
    assert flops_per_row([1280, 1000, 750, 3]) == 4 * 1280 * 1000 + 6 * 1000 * 750 + 6 * 750 * 3
