"""What a head is: a registry entry and the family that trains, saves, loads and explains it.

A family object owns every behaviour that differs between kinds of head, so that no module outside
:mod:`featx.heads` asks which kind a head is:

- ``out_of_fold(features, y, fold, recipe, ...)`` -> :class:`OutOfFold`, the cross-validation;
- ``fit(features, y, recipe, ...)`` -> :class:`FittedHead`, the same training on given rows (the
  final model is the fold training call on every row);
- ``save(predictor, folder)`` / ``load(path)``, the head in a model folder (``file_name``), in a
  format that loads without running code;
- ``explanation``, the heatmap method (see :data:`featx.models.explain.METHODS`);
- ``build(random_state, **params)``, an unfitted scikit-learn classifier of the head, with the
  settings ``params`` a user may change; ``uses_cores`` and ``weights_samples`` say how it trains.

The families are :class:`featx.heads.dense.DenseFamily` and
:class:`featx.heads.classical.ClassicalFamily`; a head is one :class:`HeadSpec` naming one.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featx.exceptions import DivergedError, ParameterError

if TYPE_CHECKING:
    from featx.heads.classical import ClassicalFamily
    from featx.heads.dense import DenseFamily


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """One registered head.

    Attributes
    ----------
    name : str
    summary : str
        One line for help texts.
    family : DenseFamily or ClassicalFamily
        Trains, saves, loads and explains the head (see :mod:`featx.heads.family`).
    """

    name: str
    summary: str
    family: DenseFamily | ClassicalFamily


@dataclass(frozen=True, kw_only=True)
class OutOfFold:
    """A head's cross-validation: each row predicted by the head trained on every other fold.

    Attributes
    ----------
    proba : numpy.ndarray, (N, n_classes)
        Column ``c`` is class ``c`` (0 where a fold's head never saw the class).
    fold_seconds : tuple of float
        Training time of each fold, in fold order.
    gflops : float or None
        Matmul GFLOP/s of the training, where the family counts them (dense heads).
    """

    proba: np.ndarray
    fold_seconds: tuple[float, ...]
    gflops: float | None = None


@dataclass(frozen=True, kw_only=True)
class FittedHead:
    """A head trained on given rows: what a model folder saves.

    Attributes
    ----------
    predictor : object
        Features -> probabilities (``predict_proba``): a :class:`featx.heads.fold_trainer.TrainedHead`
        or a fitted scikit-learn / xgboost head; saved by its family.
    classes : tuple of int
        The class index of each probability column.
    """

    predictor: Any
    classes: tuple[int, ...]


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
    """Fit a fresh scikit-learn estimator per fold and predict its test rows, ``jobs`` folds at a time.

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
        Folds trained at once (default 1), in worker processes (joblib), each with its share of the
        cores for its numerical libraries (threadpoolctl), so that the machine is not oversubscribed.
        Use 1 for learners that use every core themselves.
    only : sequence of int, optional
        The folds to fit and predict (default: every fold); the rows of the others keep
        probability 0 but still train the folds that are fitted.
    progress : bool
        A progress bar on stderr (default False).

    Raises
    ------
    ParameterError
        When ``only`` names a fold that no row is in.
    DivergedError
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
