"""Phase 2: train a head on cached features over the saved folds and store its out-of-fold predictions."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

import numpy as np

from featx import __version__
from featx.evaluation.results import Result, Timings, find_result, result_path
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split, protocol_groups
from featx.evaluation.summary import CVSummary
from featx.evaluation.variant import Variant
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads.recipe import HeadRecipe


def out_of_fold_proba(features, y, fold, make_estimator, *, n_classes: int | None = None, progress: bool = False):
    """Fit a fresh estimator per fold and predict its test rows.

    Parameters
    ----------
    features : numpy.ndarray, (N, D)
    y : numpy.ndarray of int, (N,)
    fold : numpy.ndarray of int, (N,)
        Test-fold number of each row.
    make_estimator : callable
        Returns an unfitted classifier; called once per fold.
    n_classes : int, optional
        Columns of the result (default: the largest label + 1).
    progress : bool

    Returns
    -------
    proba : numpy.ndarray, (N, n_classes)
        Column ``c`` is class ``c`` (a class absent from a training fold gets probability 0).
    fold_seconds : list of float
    """
    from tqdm import tqdm

    proba = np.zeros((len(y), int(y.max()) + 1 if n_classes is None else n_classes))
    fold_seconds = []
    for k in tqdm(np.unique(fold), desc="folds", disable=not progress, file=sys.stderr):
        train, test = fold != k, fold == k
        estimator = make_estimator()
        started = time.perf_counter()
        estimator.fit(features[train], y[train])
        fold_seconds.append(time.perf_counter() - started)
        proba[np.ix_(test, estimator.classes_)] = estimator.predict_proba(features[test])
    return proba, fold_seconds


def fit_variant(
    dataset,
    features: FeatureSpec,
    recipe: HeadRecipe,
    protocol: Protocol = Protocol(),
    *,
    cache_dir="cache",
    refit: bool = False,
    positive: str | None = None,
    progress: bool = True,
) -> CVSummary:
    """Evaluate ``recipe`` on ``features`` over the saved folds of ``dataset``; store and summarise.

    A stored result of the same variant is reused unless ``refit``. ``positive`` names the class the
    binary figures are about (default: see :mod:`featx.evaluation.task`).

    Returns
    -------
    CVSummary

    Raises
    ------
    MissingFeaturesError
        When no feature store holds the dataset's images.
    """
    variant = Variant.of(2, dataset, features, recipe, protocol)
    stored = None if refit else find_result(cache_dir, variant)
    if stored is not None:
        return CVSummary.of(stored, reused=True, positive=positive)
    split, split_file = load_or_make_split(cache_dir, dataset, protocol)
    gathered = load_features(cache_dir, variant.features, dataset)
    y = dataset.label_indices()
    fold = fold_of_each_image(split, dataset.table["image_id"])
    started = time.perf_counter()
    proba, fold_seconds = out_of_fold_proba(
        gathered.features,
        y,
        fold,
        lambda: recipe.build(protocol.seed),
        n_classes=len(dataset.classes),
        progress=progress,
    )
    result = Result(
        variant=variant,
        classes=dataset.classes,
        image_ids=tuple(dataset.table["image_id"]),
        groups=protocol_groups(dataset, protocol.group_by).to_numpy(),
        y_true=y,
        fold=fold,
        proba=proba,
        timings=Timings(tuple(fold_seconds), time.perf_counter() - started),
        provenance=provenance(split_file, gathered.sources),
    )
    return CVSummary.of(result.save(result_path(cache_dir, variant)), reused=False, positive=positive)


def provenance(split_file, stores) -> dict:
    """What a stored result records about how it was made."""
    return {
        "featx_version": __version__,
        "split_file": str(split_file),
        "stores": list(stores),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
