"""Pure metric functions shared by every phase: the paper's numbers and honest extras.

Definitions follow the paper: 3-class accuracy; "2-class accuracy" is covid vs not-covid
read off the 3-class predictions (normal predicted as pneumonia still counts as correct);
covid sensitivity TP/(TP+FN) and specificity TN/(TN+FP).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from featx.data.dataset import CLASSES

COVID = CLASSES.index("covid")
HEADLINE = ("accuracy_3class", "accuracy_2class", "sensitivity", "specificity", "auc_covid")


def confusion(y_true, y_pred, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Pooled confusion matrix: rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def binary_rates(tp: int, fp: int, tn: int, fn: int) -> dict:
    """Sensitivity, specificity, PPV, NPV and accuracy of a 2x2 table (NaN where undefined)."""

    def ratio(numerator, denominator):
        return numerator / denominator if denominator else float("nan")

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "accuracy_2class": ratio(tp + tn, tp + fp + tn + fn),
    }


def covid_table(matrix: np.ndarray, positive: int = COVID) -> dict:
    """TP, FP, TN, FN of covid vs the rest, read off a 3-class confusion matrix."""
    tp = int(matrix[positive, positive])
    fn = int(matrix[positive].sum() - tp)
    fp = int(matrix[:, positive].sum() - tp)
    tn = int(matrix.sum() - tp - fn - fp)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def point_metrics(y_true, proba) -> dict:
    """Every headline number of one set of predictions.

    Parameters
    ----------
    y_true : array of int, (N,)
        Indices into :data:`featx.data.CLASSES`.
    proba : array of float, (N, 3)
        Class probabilities.

    Returns
    -------
    dict
        ``accuracy_3class``, ``accuracy_2class``, ``sensitivity``, ``specificity``, ``ppv``,
        ``npv``, ``auc_covid``, ``auc_macro`` as fractions, plus ``confusion`` (3x3 list) and
        the covid ``tp``, ``fp``, ``tn``, ``fn``.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = proba.argmax(axis=1)
    matrix = confusion(y_true, y_pred, proba.shape[1])
    table = covid_table(matrix)
    return {
        "accuracy_3class": float(np.mean(y_pred == y_true)),
        **binary_rates(**table),
        "auc_covid": _auc(y_true == COVID, proba[:, COVID]),
        "auc_macro": _auc_macro(y_true, proba),
        "confusion": matrix.tolist(),
        **table,
    }


def _auc(is_positive, score) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count half), NaN with one class only.

    Equal to ``sklearn.metrics.roc_auc_score`` and fast enough for 1,000 bootstrap resamples.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _auc_macro(y_true, proba) -> float:
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    scores = [_auc(y_true == c, proba[:, c]) for c in present]
    return float(np.mean(scores))


def per_fold(y_true, proba, fold) -> dict:
    """Mean and standard deviation over folds of each headline number."""
    y_true, proba, fold = np.asarray(y_true), np.asarray(proba), np.asarray(fold)
    values = {name: [] for name in HEADLINE}
    for f in np.unique(fold):
        metrics = point_metrics(y_true[fold == f], proba[fold == f])
        for name in HEADLINE:
            values[name].append(metrics[name])
    return {
        name: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "values": [float(x) for x in v]}
        for name, v in values.items()
    }


def bootstrap_intervals(
    y_true, proba, groups=None, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile bootstrap intervals of the headline numbers.

    Parameters
    ----------
    y_true, proba
        As in :func:`point_metrics`.
    groups : array, optional
        Resample whole groups (patients) instead of images, so that correlated images of one
        patient do not narrow the interval.
    n_resamples : int
    seed : int
    level : float

    Returns
    -------
    dict
        name -> [low, high].
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y_true))]
    else:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    samples = {name: [] for name in HEADLINE}
    for _ in range(n_resamples):
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        metrics = _fast_headline(y_true[chosen], proba[chosen])
        for name in HEADLINE:
            samples[name].append(metrics[name])
    tail = (1 - level) / 2 * 100
    return {
        name: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))] for name, v in samples.items()
    }


def _fast_headline(y_true, proba) -> dict:
    y_pred = proba.argmax(axis=1)
    table = covid_table(confusion(y_true, y_pred, proba.shape[1]))
    rates = binary_rates(**table)
    return {
        "accuracy_3class": float(np.mean(y_pred == y_true)),
        "accuracy_2class": rates["accuracy_2class"],
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
        "auc_covid": _auc(y_true == COVID, proba[:, COVID]),
    }


def summarize(y_true, proba, fold, groups=None, n_resamples: int = 1000) -> dict:
    """Point metrics, per-fold spread and bootstrap intervals of out-of-fold predictions."""
    return {
        **point_metrics(y_true, proba),
        "per_fold": per_fold(y_true, proba, fold),
        "ci95": bootstrap_intervals(y_true, proba, groups, n_resamples),
    }
