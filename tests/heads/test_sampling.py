"""One sampling module for every head family: the rows and weights each family's head actually trains on,
recorded at its training step during real fits on real features, per strategy."""

import numpy as np
import pytest

from featx.exceptions import ParameterError
from featx.features.store import load_features
from featx.heads import HEADS, SAMPLERS, HeadRecipe
from featx.heads.classical import Standardized
from featx.heads.fold_trainer import FoldTrainer
from featx.heads.sampling import training_rows
from tests.realdata import LITE0_64

FIRST_OF_EACH_FAMILY = list({type(spec.family): name for name, spec in reversed(HEADS.items())}.values())[::-1]
SETTINGS = {"epochs": 1}  # dense heads: what is recorded is the rows, not the accuracy
COUNTS = (12, 30, 20)  # imbalanced: class 0 the minority (6 a fold, the fewest SMOTE takes), 1 the majority


@pytest.fixture(scope="module")
def imbalanced(feature_data):
    dataset, cache = feature_data
    matrix, y = load_features(cache, LITE0_64.key(dataset.id), dataset).features, dataset.label_indices()
    rows = np.concatenate([np.flatnonzero(y == label)[:count] for label, count in enumerate(COUNTS)])
    return matrix[rows], y[rows]


@pytest.fixture()
def received(monkeypatch):
    """Every (rows, labels, sample_weight) a head's training step receives: the dense heads' compiled
    trainer and the classical heads' fit, each still training for real."""
    calls = []
    train, fit = FoldTrainer.train, Standardized.fit

    def recording_train(self, X, y, sample_weight=None, **options):
        calls.append((np.array(X), np.array(y), None if sample_weight is None else np.array(sample_weight)))
        return train(self, X, y, sample_weight, **options)

    def recording_fit(self, X, y, sample_weight=None):
        calls.append((np.array(X), np.array(y), None if sample_weight is None else np.array(sample_weight)))
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(FoldTrainer, "train", recording_train)
    monkeypatch.setattr(Standardized, "fit", recording_fit)
    return calls


def _recipe(head: str, strategy: str) -> HeadRecipe:
    return HeadRecipe(
        head=head,
        sampler=strategy,
        **{key: value for key, value in SETTINGS.items() if key in HEADS[head].family.params},
    )


def check_trained_on(strategy: str, given, labels, received_rows) -> None:
    """What ``strategy`` must have handed the head, given the training rows ``given`` with ``labels``."""
    rows, trained_labels, weights = received_rows
    counts = np.bincount(labels, minlength=3)
    trained_counts = np.bincount(trained_labels, minlength=3)
    known = {row.tobytes() for row in given}
    new_rows = sum(row.tobytes() not in known for row in rows)
    if strategy == "none":
        assert np.array_equal(rows, given) and np.array_equal(trained_labels, labels) and weights is None
    elif strategy == "class-weight":
        assert np.array_equal(rows, given) and np.array_equal(trained_labels, labels)
        np.testing.assert_allclose(weights, len(labels) / (3 * counts[labels]))
        np.testing.assert_allclose(np.bincount(labels, weights), len(labels) / 3)  # every class weighs the same
    elif strategy == "oversample":
        assert trained_counts.tolist() == [counts.max()] * 3 and new_rows == 0 and weights is None
    elif strategy == "undersample":
        assert trained_counts.tolist() == [counts.min()] * 3 and new_rows == 0 and weights is None
    else:
        assert strategy == "smote"
        assert trained_counts.tolist() == [counts.max()] * 3 and weights is None
        assert new_rows == int((counts.max() - counts).sum())  # every added row synthesised, none repeated


def test_every_strategy_and_family_is_covered():
    assert set(SAMPLERS) == {"none", "class-weight", "oversample", "undersample", "smote"}
    assert FIRST_OF_EACH_FAMILY == ["softmax", "logreg"]


@pytest.mark.parametrize("head", FIRST_OF_EACH_FAMILY)
@pytest.mark.parametrize("strategy", sorted(SAMPLERS))
def test_the_final_fit_trains_on_the_strategys_rows(imbalanced, received, head, strategy):
    matrix, y = imbalanced
    HEADS[head].family.fit(matrix, y, _recipe(head, strategy), seed=0, n_classes=3)
    assert len(received) == 1
    check_trained_on(strategy, matrix, y, received[0])


@pytest.mark.parametrize("head", FIRST_OF_EACH_FAMILY)
@pytest.mark.parametrize("strategy", sorted(SAMPLERS))
def test_each_fold_trains_on_the_strategys_rows_of_its_own_training_rows(imbalanced, received, head, strategy):
    matrix, y = imbalanced
    fold = np.arange(len(y)) % 2
    HEADS[head].family.out_of_fold(matrix, y, fold, _recipe(head, strategy), seed=0, n_classes=3, jobs=1)
    assert len(received) == 2
    for k, calls in enumerate(received):
        check_trained_on(strategy, matrix[fold != k], y[fold != k], calls)


@pytest.mark.parametrize("strategy", sorted(SAMPLERS))
def test_a_class_with_fewer_rows_than_its_strategy_needs_is_refused_in_words(strategy):
    spec = SAMPLERS[strategy]
    rng = np.random.default_rng(0)
    enough = max(spec.min_class_rows, 2)
    y = np.array([0] * 20 + [1] * enough)
    rows = training_rows(strategy, rng.normal(size=(len(y), 4)), y, 0)
    assert set(rows.labels) == {0, 1} and np.isfinite(rows.features).all()
    if spec.min_class_rows > 1:
        few = np.array([0] * 20 + [1] * (spec.min_class_rows - 1))
        with pytest.raises(ParameterError, match=f"class index 1 has {spec.min_class_rows - 1} in these training"):
            training_rows(strategy, rng.normal(size=(len(few), 4)), few, 0)
