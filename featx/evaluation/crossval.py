"""Phase 2: train a head on cached features over the saved folds and store its out-of-fold predictions."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from functools import partial

import numpy as np

from featx import __version__
from featx.evaluation.results import Result, ResultProvenance, Timings, find_result, result_path
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split, protocol_groups
from featx.evaluation.summary import CVSummary
from featx.evaluation.variant import Variant
from featx.exceptions import DivergedError, ParameterError
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads.fold_trainer import flops_per_row
from featx.heads.recipe import HeadRecipe
from featx.heads.registry import get_head, make_head
from featx.heads.sampling import resample


def _fit_fold(features, y, fold, make_estimator, k, threads: int | None):
    """Fit a fresh estimator on every fold but ``k`` and predict fold ``k`` (BLAS threads limited)."""
    from threadpoolctl import threadpool_limits

    train, test = fold != k, fold == k
    with threadpool_limits(limits=threads):
        estimator = make_estimator()
        started = time.perf_counter()
        estimator.fit(features[train], y[train])
        seconds = time.perf_counter() - started
        return k, estimator.classes_, estimator.predict_proba(features[test]), seconds


def out_of_fold_proba(
    features,
    y,
    fold,
    make_estimator,
    *,
    n_classes: int | None = None,
    jobs: int = 1,
    only=None,
    progress: bool = False,
):
    """Fit a fresh estimator per fold and predict its test rows, ``jobs`` folds at a time.

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
    jobs : int
        Folds trained at once, in worker processes (joblib), each with its share of the cores for
        its numerical libraries (threadpoolctl), so that the machine is not oversubscribed. Use 1
        for learners that use every core themselves.
    only : sequence of int, optional
        The folds to fit and predict (default: every fold); the rows of the others keep
        probability 0 but still train the folds that are fitted.
    progress : bool

    Raises
    ------
    ParameterError
        When ``only`` names a fold that no row is in.
    FeatxError
        When a fold's head predicts a non-finite probability (see :func:`check_finite`).

    Returns
    -------
    proba : numpy.ndarray, (N, n_classes)
        Column ``c`` is class ``c`` (a class absent from a training fold gets probability 0).
    fold_seconds : list of float
        Training time of each fitted fold, in fold order.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    folds = np.unique(fold) if only is None else np.unique(np.asarray(only))
    if not np.isin(folds, fold).all():
        raise ParameterError("only", only, "names a fold that no row is in")
    jobs = max(1, min(int(jobs), len(folds)))
    proba = np.zeros((len(y), int(y.max()) + 1 if n_classes is None else n_classes))
    seconds = {}
    if jobs == 1:
        fitted = (_fit_fold(features, y, fold, make_estimator, k, None) for k in folds)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        fitted = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
            delayed(_fit_fold)(features, y, fold, make_estimator, k, threads) for k in folds
        )
    for k, classes, predicted, elapsed in tqdm(
        fitted, total=len(folds), desc="folds", disable=not progress, file=sys.stderr
    ):
        proba[np.ix_(fold == k, classes)] = check_finite(predicted, k)
        seconds[k] = elapsed
    return proba, [seconds[k] for k in folds]


def dense_out_of_fold(features, y, fold, recipe: HeadRecipe, *, seed: int, n_classes: int, progress: bool = False):
    """Out-of-fold probabilities of a Keras dense head, every fold trained by one compiled trainer.

    Each fold's training rows go through the recipe's imbalance strategy first (resampled or
    weighted from that fold's rows only); fold ``k`` is trained with the random streams of
    ``(seed, k)``, so it is the head training that fold alone gives (see
    :mod:`featx.heads.fold_trainer`). Every head has a column for each of the ``n_classes``.

    Returns
    -------
    proba : numpy.ndarray, (N, n_classes)
    fold_seconds : list of float
    gflops : float
        Matmul GFLOP/s of the training (forward and backward).

    Raises
    ------
    featx.exceptions.DivergedError
        When a fold's training loss or weights become non-finite (naming the fold and the epoch).
    FeatxError
        When a fold's predictions are not finite.
    """
    from tqdm import tqdm

    folds = np.unique(fold)
    training = [resample(recipe.sampler, features[fold != k], y[fold != k], seed) for k in folds]
    head = make_head(recipe.head, random_state=seed, **recipe.params())
    trainer = head.trainer(features.shape[1], n_classes, max(len(rows) for rows, _, _ in training))
    seconds, flops = [], 0
    proba = np.zeros((len(y), n_classes))
    for k, (rows, labels, weights) in tqdm(
        list(zip(folds, training, strict=True)), desc="folds", disable=not progress, file=sys.stderr
    ):
        started = time.perf_counter()
        trained = trainer.train(rows, labels, weights, seed=seed, fold=int(k))
        seconds.append(time.perf_counter() - started)
        flops += flops_per_row(trainer.dims) * len(rows) * trainer.epochs
        proba[fold == k] = check_finite(trained.predict_proba(features[fold == k]), k)
    return proba, seconds, flops / sum(seconds) / 1e9


def check_finite(proba: np.ndarray, k) -> np.ndarray:
    """``proba``, the predictions of fold ``k``'s head, when every one is finite.

    Raises
    ------
    DivergedError
        Naming the fold and how many rows are not finite; no result is written.
    """
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise DivergedError(
            f"fold {k}", f"the head predicted non-finite probabilities for {int(bad.sum())} of its {len(proba)} images"
        )
    return proba


def fit_variant(
    dataset,
    features: FeatureSpec,
    recipe: HeadRecipe,
    protocol: Protocol = Protocol(),
    *,
    cache_dir="cache",
    refit: bool = False,
    positive: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    head_seed: int | None = None,
) -> CVSummary:
    """Evaluate ``recipe`` on ``features`` over the saved folds of ``dataset``; store and summarise.

    A stored result of the same variant is reused unless ``refit``. ``positive`` names the class the
    binary figures are about (default: see :mod:`featx.evaluation.task`). ``jobs`` folds are trained
    at once (default: one per core) unless the head keeps every core busy itself. ``head_seed`` seeds
    the head apart from the folds (default None: ``protocol.seed`` seeds both; see
    :class:`featx.evaluation.variant.Variant`).

    Returns
    -------
    CVSummary

    Raises
    ------
    MissingFeaturesError
        When no feature store holds the dataset's images.
    """
    variant = Variant.of(2, dataset, features, recipe, protocol, head_seed)
    stored = None if refit else find_result(cache_dir, variant)
    if stored is not None:
        return CVSummary.of(stored, reused=True, positive=positive)
    split, split_file = load_or_make_split(cache_dir, dataset, protocol)
    gathered = load_features(cache_dir, variant.features, dataset)
    y = dataset.label_indices()
    fold = fold_of_each_image(split, dataset.table["image_id"])
    started = time.perf_counter()
    spec, gflops = get_head(recipe.head), None
    if spec.family == "dense":
        proba, fold_seconds, gflops = dense_out_of_fold(
            gathered.features,
            y,
            fold,
            recipe,
            seed=variant.seed_of_head,
            n_classes=len(dataset.classes),
            progress=progress,
        )
    else:
        proba, fold_seconds = out_of_fold_proba(
            gathered.features,
            y,
            fold,
            partial(recipe.build, variant.seed_of_head),
            n_classes=len(dataset.classes),
            jobs=1 if spec.uses_cores else (jobs or os.cpu_count() or 1),
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
        timings=Timings(fold_seconds=tuple(fold_seconds), total_seconds=time.perf_counter() - started, gflops=gflops),
        provenance=provenance(split_file, gathered.sources),
    )
    return CVSummary.of(result.save(result_path(cache_dir, variant)), reused=False, positive=positive)


def provenance(split_file, stores) -> ResultProvenance:
    """What a stored result records about how it was made."""
    return ResultProvenance(
        featx_version=__version__,
        split_file=str(split_file),
        stores=tuple(stores),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
