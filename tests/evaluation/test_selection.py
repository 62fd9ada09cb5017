"""Nested cross-validation (featx.evaluation.selection) on a real Lite0 store: labels that carry nothing,
where choosing the best of several candidates must flatter the one chosen."""

import os

import numpy as np
import pandas as pd
import pytest

from featx.data.dataset import load_dataset
from featx.evaluation.metrics import METRICS, Predictions
from featx.evaluation.selection import nested_select
from featx.evaluation.splits import Protocol
from featx.exceptions import ParameterError, SplitError, UnknownNameError
from featx.heads import HeadRecipe
from tests.realdata import LITE0_64

FIVE = Protocol(group_by="patient", folds=5, seed=0)
CANDIDATES = [
    (LITE0_64, HeadRecipe(head=head, sampler=sampler))
    for head in ("logreg", "knn", "rf", "svm")
    for sampler in ("none", "oversample", "undersample")
]


@pytest.fixture(scope="module")
def shuffled_labels(feature_data, tmp_path_factory):
    """The 90 radiographs of the real Lite0 store with their labels shuffled among them (the store is found by
    content, so the same features serve): no head can do better than chance on new patients."""
    dataset, cache = feature_data
    folder = tmp_path_factory.mktemp("shuffled_labels")
    (folder / "images").mkdir()
    table = pd.read_csv(dataset.root / "metadata.csv")
    for filename in table["filename"]:
        os.link(dataset.root / filename, folder / filename)
    order = np.random.default_rng(7).permutation(len(table))
    table[["label", "subtype"]] = table[["label", "subtype"]].to_numpy()[order]
    table.to_csv(folder / "metadata.csv", index=False)
    return load_dataset(folder), cache


@pytest.fixture(scope="module")
def selection(shuffled_labels):
    dataset, cache = shuffled_labels
    return nested_select(dataset, CANDIDATES, FIVE, inner_folds=3, cache_dir=cache, jobs=1, progress=False)


def test_nested_estimate_is_not_above_the_best_candidate_when_selection_must_flatter(selection):
    best = selection.best_of_candidates
    figures = [summary.metrics["accuracy"] for summary in selection.candidates]
    assert best.metrics["accuracy"] == max(figures) and len(set(figures)) > 1
    assert selection.estimate <= selection.best_inner  # the choice's own inner figures flatter it
    assert selection.optimism == pytest.approx(best.metrics["accuracy"] - selection.estimate) and selection.optimism > 0
    low, high = selection.metrics["ci95"]["accuracy"]
    assert low <= 1 / 3 <= high  # shuffled labels: the procedure is not distinguishable from chance


def test_each_outer_fold_is_predicted_by_the_candidate_with_the_best_inner_figure(selection):
    fold = selection.candidates[0].result.fold
    by_name = {summary.result.variant.name(): summary for summary in selection.candidates}
    assert [outer.fold for outer in selection.outer] == sorted(set(fold))
    for outer in selection.outer:
        assert len(outer.inner_figures) == len(CANDIDATES)
        chosen = list(by_name).index(outer.chosen)
        assert outer.inner_figures[chosen] == max(outer.inner_figures)
        rows = fold == outer.fold
        np.testing.assert_array_equal(selection.proba[rows], by_name[outer.chosen].result.proba[rows])
    first = selection.candidates[0]
    estimate = METRICS["accuracy"].point(Predictions.of(first.result.y_true, selection.proba, first.task))
    assert selection.estimate == estimate


def test_the_candidates_plain_results_are_stored_and_reused(selection, shuffled_labels):
    dataset, cache = shuffled_labels
    again = nested_select(dataset, CANDIDATES[:2], FIVE, inner_folds=3, cache_dir=cache, jobs=1, progress=False)
    assert all(summary.reused for summary in again.candidates)
    for summary, earlier in zip(again.candidates, selection.candidates[:2], strict=True):
        np.testing.assert_array_equal(summary.result.proba, earlier.result.proba)


def test_nested_select_refuses_what_it_cannot_choose_among(shuffled_labels):
    dataset, cache = shuffled_labels
    with pytest.raises(ParameterError, match="at least two"):
        nested_select(dataset, CANDIDATES[:1], FIVE, cache_dir=cache, progress=False)
    with pytest.raises(ParameterError, match="inner_folds"):
        nested_select(dataset, CANDIDATES, FIVE, inner_folds=1, cache_dir=cache, progress=False)
    with pytest.raises(UnknownNameError, match="metric"):
        nested_select(dataset, CANDIDATES, FIVE, metric="f1", cache_dir=cache, progress=False)
    with pytest.raises(ParameterError, match="each candidate must be given once"):
        nested_select(dataset, [CANDIDATES[0], *CANDIDATES[:2]], FIVE, cache_dir=cache, progress=False)
    with pytest.raises(SplitError, match=r"outer fold 0's training images, fewer than inner folds=40"):
        nested_select(dataset, CANDIDATES[:2], FIVE, inner_folds=40, cache_dir=cache, progress=False)
