"""Pure metric functions shared by every phase: the paper's numbers, generalised to any task.

Definitions follow the paper: accuracy over all classes (its "3-class accuracy" when the classes
are covid, pneumonia and normal); "2-class accuracy" is the positive class vs the rest read off the
multi-class predictions (normal predicted as pneumonia still counts as correct); sensitivity
TP/(TP+FN) and specificity TN/(TN+FP) of the positive class. Figures a task does not define are
None (``accuracy_3class`` outside the paper's classes, ``auc_covid`` when covid is not positive);
figures the data do not define (a sensitivity without positives) are NaN.

:data:`METRICS` holds each headline figure once: its key, its names, its unit, the classes it needs
and its statistic, which computes it from predictions in one resample or a thousand at once (the
point estimate is the resample that counts every image once). Every command, report, interval and
model folder reads it; adding a figure is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from featx.evaluation.task import Task

N_RESAMPLES = 1000


@dataclass(frozen=True, kw_only=True)
class Unit:
    """How a figure, its interval and the difference of two figures are written.

    Attributes
    ----------
    scale : float
        What a fraction is multiplied by (100 for percentages, 1 for an AUC).
    digits : int
        Decimals in tables, intervals and differences.
    precise_digits : int
        Decimals of a figure on the terminal (``fit``).
    figure_suffix : str
        After a figure (``%``).
    difference_suffix : str
        After a difference (`` points``: the difference of two percentages is in percentage points).
    """

    scale: float
    digits: int
    precise_digits: int
    figure_suffix: str
    difference_suffix: str

    def figure(self, value, precise: bool = False) -> str:
        """``value`` in this unit, without suffix; ``n/a`` for None or NaN."""
        digits = self.precise_digits if precise else self.digits
        return "n/a" if value is None or value != value else f"{value * self.scale:.{digits}f}"

    def with_interval(self, value, interval, *, suffix: bool = True, precise: bool = False) -> str:
        """``80.0% [72.2, 87.9]``: ``value`` (with its suffix unless ``suffix`` is False) and its interval."""
        low, high = interval
        after = self.figure_suffix if suffix else ""
        return f"{self.figure(value, precise)}{after} [{self.figure(low)}, {self.figure(high)}]"

    def difference(self, value, signed: bool = True, suffix: bool = True) -> str:
        """A difference of two figures in this unit with its suffix (unless ``suffix`` is False): ``+21.5
        points``, ``+0.215``; ``n/a`` for NaN."""
        if value != value:
            return "n/a"
        return f"{value * self.scale:{'+' if signed else ''}.{self.digits}f}{self.difference_suffix if suffix else ''}"


PERCENT = Unit(scale=100, digits=1, precise_digits=2, figure_suffix="%", difference_suffix=" points")
PLAIN = Unit(scale=1, digits=3, precise_digits=3, figure_suffix="", difference_suffix="")


@dataclass(frozen=True, kw_only=True)
class ClassesNeeded:
    """Which classes must be among the images for a figure to be defined (an external folder may lack some).

    Attributes
    ----------
    about_positive : bool
        Whether the figure is about the task's positive class.
    met : callable
        ``met(present, task)``: whether the classes ``present`` (a set of indices into
        ``task.classes``) define the figure.
    missing : callable
        ``missing(task)``: why the figure cannot be computed where they do not, in words.
    """

    about_positive: bool
    met: Callable[[set, Task], bool]
    missing: Callable[[Task], str]


EVERY_CLASS = ClassesNeeded(
    about_positive=False,
    met=lambda present, task: present == set(range(len(task.classes))),
    missing=lambda task: f"it needs every class the model predicts ({', '.join(task.classes)})",
)
POSITIVE = ClassesNeeded(
    about_positive=True,
    met=lambda present, task: task.positive_index in present,
    missing=lambda task: f"the folder holds no {task.positive} image",
)
OTHER = ClassesNeeded(
    about_positive=True,
    met=lambda present, task: bool(present - {task.positive_index}),
    missing=lambda task: f"the folder holds no image other than {task.positive}",
)
POSITIVE_AND_OTHER = ClassesNeeded(
    about_positive=True,
    met=lambda present, task: POSITIVE.met(present, task) and OTHER.met(present, task),
    missing=lambda task: f"it needs {task.positive} and other images",
)


@dataclass(frozen=True, kw_only=True, eq=False)
class Predictions:
    """One set of predictions: true classes, probabilities and the positive class's column.

    Attributes
    ----------
    y_true : numpy.ndarray of int, (N,)
        Indices into the task's classes.
    proba : numpy.ndarray of float, (N, classes)
    positive : int
        Column of the positive class.
    """

    y_true: np.ndarray
    proba: np.ndarray
    positive: int

    @classmethod
    def of(cls, y_true, proba, task: Task) -> Predictions:
        """The predictions ``proba`` (N, classes) of images of classes ``y_true`` (N,) for ``task``."""
        return cls(y_true=np.asarray(y_true), proba=np.asarray(proba, dtype=np.float64), positive=task.positive_index)

    @cached_property
    def predicted(self) -> np.ndarray:
        """The class predicted for each image (the most probable)."""
        return self.proba.argmax(axis=1)

    @property
    def is_positive(self) -> np.ndarray:
        return self.y_true == self.positive

    @property
    def called_positive(self) -> np.ndarray:
        return self.predicted == self.positive

    @property
    def once(self) -> np.ndarray:
        """Resample weights that count every image once: the point estimate, (1, N)."""
        return np.ones((1, len(self.y_true)))


@dataclass(frozen=True, kw_only=True)
class Proportion:
    """An accuracy-type figure: the share of the images ``counted`` on which the prediction ``succeeds``.

    A paired comparison of two models (McNemar, :mod:`featx.evaluation.paired`) reads the same two
    per-image masks; for that, which images are counted must depend on the true classes only.

    Attributes
    ----------
    counted : callable
        ``counted(predictions)``: bool (N,), the images the figure is about.
    succeeds : callable
        ``succeeds(predictions)``: bool (N,), whether the prediction on each image counts as a success.
    """

    counted: Callable[[Predictions], np.ndarray]
    succeeds: Callable[[Predictions], np.ndarray]

    def values(self, predictions: Predictions, weights: np.ndarray) -> np.ndarray:
        """The figure in each resample, (R,): each image counted as often as ``weights`` (R, N) says; NaN
        where no image is counted."""
        counted = self.counted(predictions)
        total = weights @ counted.astype(np.float64)
        hits = weights @ (counted & self.succeeds(predictions)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hits / total, np.nan)


@dataclass(frozen=True, kw_only=True)
class RankArea:
    """A rank-based figure: the ROC AUC of the positive class's probability against the rest (Mann-Whitney,
    ties count half). A paired comparison of two models (DeLong) reads the same scores."""

    def values(self, predictions: Predictions, weights: np.ndarray) -> np.ndarray:
        """The AUC in each resample, (R,), each image weighted by ``weights`` (R, N); NaN with one class only."""
        return _weighted_auc(weights, predictions.is_positive, predictions.proba[:, predictions.positive])


@dataclass(frozen=True, kw_only=True)
class MeanRecall:
    """The mean over the classes present of each class's recall (``sklearn.metrics.balanced_accuracy_score``).

    No single pair of per-image masks: a paired comparison of two models resamples it."""

    def values(self, predictions: Predictions, weights: np.ndarray) -> np.ndarray:
        """The mean recall in each resample, (R,), each image weighted by ``weights`` (R, N)."""
        classes = np.arange(predictions.proba.shape[1])
        members = predictions.y_true[:, None] == classes
        total = weights @ members.astype(np.float64)
        hits = weights @ (members & (predictions.predicted[:, None] == classes)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(total > 0, hits / total, np.nan), axis=1)


@dataclass(frozen=True, kw_only=True)
class Alias:
    """The paper's name for a figure, carried where the task is the paper's.

    Attributes
    ----------
    name : str
    defined : callable
        ``defined(task)``: whether the task carries the alias.
    label, abbreviation : str, optional
        What the figure is called where the alias is defined (default: the metric's own).
    """

    name: str
    defined: Callable[[Task], bool]
    label: str | None = None
    abbreviation: str | None = None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A headline figure: computed, resampled, named and written in one place.

    Attributes
    ----------
    name : str
        Its key in ``fit --json``, ``ci95``, comparison rows and model folders.
    label : str
        Its name in reports (``{positive}`` and ``{classes}`` are replaced with the task's).
    abbreviation : str
        Its name on the terminal and in table headers (same replacements).
    unit : Unit
    needs : ClassesNeeded
        The classes that must be present for it to be defined, and whether it is about the positive class.
    statistic : Proportion, RankArea or MeanRecall
        How it is computed from predictions, in one resample or a thousand at once; its kind says
        how two models' figures are paired (accuracy-type: McNemar; rank-based: DeLong).
    alias : Alias, optional
        The paper's name for it, where the task is the paper's (default: none).
    """

    name: str
    label: str
    abbreviation: str
    unit: Unit
    needs: ClassesNeeded
    statistic: Proportion | RankArea | MeanRecall
    alias: Alias | None = None

    def label_for(self, task: Task) -> str:
        """What reports call this figure for ``task``."""
        return self._named(self.label, "label", task)

    def abbreviation_for(self, task: Task) -> str:
        """What the terminal and table headers call this figure for ``task``."""
        return self._named(self.abbreviation, "abbreviation", task)

    def _named(self, text: str, field: str, task: Task) -> str:
        if self.alias is not None and self.alias.defined(task):
            text = getattr(self.alias, field) or text
        return text.format(positive=task.positive, classes=len(task.classes))

    def values(self, predictions: Predictions, weights: np.ndarray) -> np.ndarray:
        """The figure in every resample at once, (R,); ``weights`` (R, N) says how often each image counts."""
        return self.statistic.values(predictions, weights)

    def point(self, predictions: Predictions) -> float:
        """The figure of ``predictions`` themselves (NaN where the data do not define it)."""
        return float(self.values(predictions, predictions.once)[0])


def _correct(predictions: Predictions) -> np.ndarray:
    return predictions.predicted == predictions.y_true


def _every(predictions: Predictions) -> np.ndarray:
    return np.ones(len(predictions.y_true), dtype=bool)


METRICS = {
    metric.name: metric
    for metric in (
        Metric(
            name="accuracy",
            label="accuracy (all classes)",
            abbreviation="acc ({classes} classes)",
            unit=PERCENT,
            needs=EVERY_CLASS,
            statistic=Proportion(counted=_every, succeeds=_correct),
            alias=Alias(
                name="accuracy_3class",
                defined=lambda task: task.is_paper,
                label="3-class accuracy",
                abbreviation="3-class acc",
            ),
        ),
        Metric(
            name="accuracy_2class",
            label="2-class accuracy ({positive} vs rest)",
            abbreviation="2-class acc",
            unit=PERCENT,
            needs=POSITIVE_AND_OTHER,
            statistic=Proportion(
                counted=_every, succeeds=lambda predictions: predictions.called_positive == predictions.is_positive
            ),
        ),
        Metric(
            name="sensitivity",
            label="{positive} sensitivity",
            abbreviation="{positive} sens",
            unit=PERCENT,
            needs=POSITIVE,
            statistic=Proportion(
                counted=lambda predictions: predictions.is_positive,
                succeeds=lambda predictions: predictions.called_positive,
            ),
        ),
        Metric(
            name="specificity",
            label="{positive} specificity",
            abbreviation="{positive} spec",
            unit=PERCENT,
            needs=OTHER,
            statistic=Proportion(
                counted=lambda predictions: ~predictions.is_positive,
                succeeds=lambda predictions: ~predictions.called_positive,
            ),
        ),
        Metric(
            name="auc_positive",
            label="ROC AUC ({positive} vs rest)",
            abbreviation="AUC {positive}",
            unit=PLAIN,
            needs=POSITIVE_AND_OTHER,
            statistic=RankArea(),
            alias=Alias(name="auc_covid", defined=lambda task: task.is_covid),
        ),
        Metric(
            name="balanced_accuracy",
            label="balanced accuracy (mean recall over classes)",
            abbreviation="bal acc",
            unit=PERCENT,
            needs=EVERY_CLASS,
            statistic=MeanRecall(),
        ),
    )
}
"""The headline figures, in the order they are printed: every command, report, interval and model folder
reads them here. Adding a figure is one entry."""

PPV = Proportion(
    counted=lambda predictions: predictions.called_positive, succeeds=lambda predictions: predictions.is_positive
)
NPV = Proportion(
    counted=lambda predictions: ~predictions.called_positive, succeeds=lambda predictions: ~predictions.is_positive
)
DESCRIPTIVE = ("auc_macro", "ppv", "npv")
"""Further figures of :func:`point_metrics`, without intervals: the macro AUC and the predictive values."""


def figure_names() -> tuple[str, ...]:
    """The keys of the headline figures and their aliases, each alias after its figure."""
    return tuple(
        name
        for metric in METRICS.values()
        for name in (metric.name, *((metric.alias.name,) if metric.alias is not None else ()))
    )


def defined_figures(present: set, task: Task) -> dict:
    """Which headline figures (and aliases) the classes ``present`` (indices into ``task.classes``) define."""
    defined = {}
    for metric in METRICS.values():
        defined[metric.name] = metric.needs.met(present, task)
        if metric.alias is not None:
            defined[metric.alias.name] = defined[metric.name] and metric.alias.defined(task)
    return defined


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Pooled confusion matrix: rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def positive_table(matrix: np.ndarray, positive: int) -> dict:
    """TP, FP, TN, FN of the positive class vs the rest, read off a multi-class confusion matrix."""
    tp = int(matrix[positive, positive])
    fn = int(matrix[positive].sum() - tp)
    fp = int(matrix[:, positive].sum() - tp)
    tn = int(matrix.sum() - tp - fn - fp)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def task_aliases(task: Task, values: dict) -> dict:
    """The paper's names for the headline figures in ``values``, None where the task does not define them."""
    return {
        metric.alias.name: values[metric.name] if metric.alias.defined(task) else None
        for metric in METRICS.values()
        if metric.alias is not None
    }


def point_metrics(y_true, proba, task: Task) -> dict:
    """Every figure of one set of predictions.

    Parameters
    ----------
    y_true : array of int, (N,)
        Indices into ``task.classes``.
    proba : array of float, (N, len(task.classes))
    task : Task

    Returns
    -------
    dict
        The :data:`METRICS` and ``ppv``, ``npv``, ``auc_macro`` as fractions (NaN where the data do
        not define them), the aliases (None where the task does not define them),
        ``per_class_recall`` (class -> fraction, classes present only), ``confusion`` (list of
        lists) and the positive class's ``tp``, ``fp``, ``tn``, ``fn``.
    """
    predictions = Predictions.of(y_true, proba, task)
    matrix = confusion(predictions.y_true, predictions.predicted, len(task.classes))
    values = {name: metric.point(predictions) for name, metric in METRICS.items()}
    return {
        **values,
        "ppv": float(PPV.values(predictions, predictions.once)[0]),
        "npv": float(NPV.values(predictions, predictions.once)[0]),
        "auc_macro": _auc_macro(predictions.y_true, predictions.proba),
        **task_aliases(task, values),
        "per_class_recall": {
            task.classes[c]: float(matrix[c, c] / matrix[c].sum()) for c in np.unique(predictions.y_true)
        },
        "confusion": matrix.tolist(),
        **positive_table(matrix, task.positive_index),
    }


def auc(is_positive, score) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count half), NaN with one class only.

    Equal to ``sklearn.metrics.roc_auc_score``.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    return float(_weighted_auc(np.ones((1, len(is_positive))), is_positive, np.asarray(score))[0])


def _auc_macro(y_true, proba) -> float:
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    return float(np.mean([auc(y_true == c, proba[:, c]) for c in present]))


def per_fold(y_true, proba, fold, task: Task) -> dict:
    """Mean and standard deviation over folds of each headline figure (and its task aliases)."""
    y_true, proba, fold = np.asarray(y_true), np.asarray(proba), np.asarray(fold)
    folds = [Predictions.of(y_true[fold == f], proba[fold == f], task) for f in np.unique(fold)]
    spread = {}
    for name, metric in METRICS.items():
        values = [metric.point(predictions) for predictions in folds]
        spread[name] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "values": values}
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


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap ``samples`` (a figure, or the difference of two figures,
    in every resample); (NaN, NaN) when none is finite. ``level`` defaults to 0.95."""
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def bootstrap_intervals(
    y_true, proba, task: Task, groups=None, *, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile bootstrap intervals of the headline figures, every resample computed at once.

    Parameters
    ----------
    y_true, proba, task
        As in :func:`point_metrics`.
    groups : array, optional
        Resample whole groups (patients) instead of images (default: images; see :func:`resample_weights`).
    n_resamples, seed : int
        Default :data:`N_RESAMPLES` and 0.
    level : float
        Default 0.95.

    Returns
    -------
    dict
        name -> [low, high] for :data:`METRICS` and the task's defined aliases; [NaN, NaN] where no
        resample defines the figure.
    """
    predictions = Predictions.of(y_true, proba, task)
    weights = resample_weights(len(predictions.y_true), groups, n_resamples=n_resamples, seed=seed)
    intervals = {
        name: list(percentile_interval(metric.values(predictions, weights), level)) for name, metric in METRICS.items()
    }
    return {**intervals, **{name: value for name, value in task_aliases(task, intervals).items() if value is not None}}


def summarize(y_true, proba, fold, task: Task, groups=None) -> dict:
    """Point metrics, per-fold spread and bootstrap intervals of out-of-fold predictions."""
    return {
        **point_metrics(y_true, proba, task),
        "per_fold": per_fold(y_true, proba, fold, task),
        "ci95": bootstrap_intervals(y_true, proba, task, groups),
    }
