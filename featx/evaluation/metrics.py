"""Pure metric functions shared by every phase: the paper's numbers, generalised to any task.

Definitions follow the paper: accuracy over all classes (its "3-class accuracy" when the classes
are covid, pneumonia and normal); "2-class accuracy" is the positive class vs the rest read off the
multi-class predictions (normal predicted as pneumonia still counts as correct); sensitivity
TP/(TP+FN) and specificity TN/(TN+FP) of the positive class. Figures a task does not define are
None (``accuracy_3class`` outside the paper's classes, ``auc_covid`` when covid is not positive);
figures the data do not define (a sensitivity without positives) are NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from featx.evaluation.task import Task

HEADLINE = ("accuracy", "accuracy_2class", "sensitivity", "specificity", "auc_positive")
N_RESAMPLES = 1000


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
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


def positive_table(matrix: np.ndarray, positive: int) -> dict:
    """TP, FP, TN, FN of the positive class vs the rest, read off a multi-class confusion matrix."""
    tp = int(matrix[positive, positive])
    fn = int(matrix[positive].sum() - tp)
    fp = int(matrix[:, positive].sum() - tp)
    tn = int(matrix.sum() - tp - fn - fp)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def task_aliases(task: Task, values: dict) -> dict:
    """The paper's names for the general figures, None where the task does not define them."""
    return {
        "accuracy_3class": values["accuracy"] if task.is_paper else None,
        "auc_covid": values["auc_positive"] if task.is_covid else None,
    }


def point_metrics(y_true, proba, task: Task) -> dict:
    """Every headline number of one set of predictions.

    Parameters
    ----------
    y_true : array of int, (N,)
        Indices into ``task.classes``.
    proba : array of float, (N, len(task.classes))
    task : Task

    Returns
    -------
    dict
        ``accuracy``, ``accuracy_2class``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``,
        ``auc_positive``, ``auc_macro`` as fractions, the aliases ``accuracy_3class`` and
        ``auc_covid``, ``per_class_recall`` (class -> fraction, classes present only),
        ``confusion`` (list of lists) and the positive class's ``tp``, ``fp``, ``tn``, ``fn``.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = proba.argmax(axis=1)
    matrix = confusion(y_true, y_pred, len(task.classes))
    table = positive_table(matrix, task.positive_index)
    values = {
        "accuracy": float(np.mean(y_pred == y_true)),
        **binary_rates(**table),
        "auc_positive": auc(y_true == task.positive_index, proba[:, task.positive_index]),
        "auc_macro": _auc_macro(y_true, proba),
    }
    return {
        **values,
        **task_aliases(task, values),
        "per_class_recall": {task.classes[c]: float(matrix[c, c] / matrix[c].sum()) for c in np.unique(y_true)},
        "confusion": matrix.tolist(),
        **table,
    }


def auc(is_positive, score) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count half), NaN with one class only.

    Equal to ``sklearn.metrics.roc_auc_score``.
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
    return float(np.mean([auc(y_true == c, proba[:, c]) for c in present]))


def per_fold(y_true, proba, fold, task: Task) -> dict:
    """Mean and standard deviation over folds of each headline number (and its task aliases)."""
    y_true, proba, fold = np.asarray(y_true), np.asarray(proba), np.asarray(fold)
    values = {name: [] for name in HEADLINE}
    for f in np.unique(fold):
        metrics = point_metrics(y_true[fold == f], proba[fold == f], task)
        for name in HEADLINE:
            values[name].append(metrics[name])
    spread = {
        name: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "values": [float(x) for x in v]}
        for name, v in values.items()
    }
    return {**spread, **{name: value for name, value in task_aliases(task, spread).items() if value is not None}}


def resample_weights(n_items: int, groups=None, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """How many times each item is drawn in each bootstrap resample, (n_resamples, n_items).

    With ``groups``, whole groups (patients) are drawn with replacement and each image counts as
    often as its group was drawn, so that correlated images of one patient do not narrow an interval.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        unit = np.arange(n_items)
    else:
        _, unit = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_units = int(unit.max()) + 1
    drawn = rng.integers(0, n_units, size=(n_resamples, n_units))
    counts = np.zeros((n_resamples, n_units), dtype=np.float64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], drawn), 1.0)
    return counts[:, unit]


def _weighted_auc(weights: np.ndarray, is_positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of every resample at once: each image weighted by how often it was drawn (ties count half)."""
    order = np.argsort(score, kind="stable")
    weights, is_positive, score = weights[:, order], is_positive[order], score[order]
    positive_w = weights * is_positive
    negative_w = weights * ~is_positive
    _, first, counts = np.unique(score, return_index=True, return_counts=True)
    tie_start = np.repeat(first, counts)
    below = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(negative_w, axis=1)], axis=1)
    negatives_below = below[:, tie_start]  # negatives with a strictly lower score
    tie_end = tie_start + np.repeat(counts, counts)
    negatives_tied = below[:, tie_end] - negatives_below
    numerator = np.sum(positive_w * (negatives_below + 0.5 * negatives_tied), axis=1)
    denominator = positive_w.sum(axis=1) * negative_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def bootstrap_intervals(
    y_true, proba, task: Task, groups=None, *, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile bootstrap intervals of the headline numbers, every resample computed at once.

    Parameters
    ----------
    y_true, proba, task
        As in :func:`point_metrics`.
    groups : array, optional
        Resample whole groups (patients) instead of images (see :func:`resample_weights`).
    n_resamples, seed : int
    level : float

    Returns
    -------
    dict
        name -> [low, high] for :data:`HEADLINE` and the task's defined aliases.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    weights = resample_weights(len(y_true), groups, n_resamples=n_resamples, seed=seed)
    predicted = proba.argmax(axis=1)
    predicted_positive = predicted == task.positive_index
    positive = y_true == task.positive_index
    correct = predicted == y_true

    def weighted(mask):
        return weights @ mask.astype(np.float64)

    total = weights.sum(axis=1)
    tp, fn = weighted(positive & predicted_positive), weighted(positive & ~predicted_positive)
    fp, tn = weighted(~positive & predicted_positive), weighted(~positive & ~predicted_positive)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = {
            "accuracy": weighted(correct) / total,
            "accuracy_2class": (tp + tn) / total,
            "sensitivity": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "specificity": np.where(tn + fp > 0, tn / (tn + fp), np.nan),
            "auc_positive": _weighted_auc(weights, positive, proba[:, task.positive_index]),
        }
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in samples.items():
        finite = values[np.isfinite(values)]
        intervals[name] = (
            [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]
            if len(finite)
            else [float("nan"), float("nan")]
        )
    return {**intervals, **{name: value for name, value in task_aliases(task, intervals).items() if value is not None}}


def summarize(y_true, proba, fold, task: Task, groups=None) -> dict:
    """Point metrics, per-fold spread and bootstrap intervals of out-of-fold predictions."""
    return {
        **point_metrics(y_true, proba, task),
        "per_fold": per_fold(y_true, proba, fold, task),
        "ci95": bootstrap_intervals(y_true, proba, task, groups),
    }
