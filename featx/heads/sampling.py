"""Class-imbalance strategies, applied inside training folds only.

One function, :func:`training_rows`, turns a training fold into the rows and weights a head
trains on; the dense heads' fold trainer calls it directly, a scikit-learn head through
:class:`Resampled` (the strategy acts in ``fit`` alone, never on the rows being predicted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from featx.exceptions import ParameterError, UnknownNameError
from featx.heads.base import ArgmaxPredictMixin


def _random_over(random_state):
    from imblearn.over_sampling import RandomOverSampler

    return RandomOverSampler(random_state=random_state)


def _random_under(random_state):
    from imblearn.under_sampling import RandomUnderSampler

    return RandomUnderSampler(random_state=random_state)


SMOTE_NEIGHBOURS = 5
"""SMOTE's nearest neighbours per synthetic row (imbalanced-learn's default): every class needs more rows."""


def _smote(random_state):
    from imblearn.over_sampling import SMOTE

    return SMOTE(random_state=random_state, k_neighbors=SMOTE_NEIGHBOURS)


@dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    """One imbalance strategy.

    Attributes
    ----------
    name : str
    summary : str
    make : callable or None
        ``make(random_state)`` returns an imbalanced-learn sampler; None when the strategy
        resamples nothing.
    weights_classes : bool
        Whether the head is fitted with balanced class weights instead.
    min_class_rows : int
        The fewest training rows of a class the strategy works with (default 1).
    """

    name: str
    summary: str
    make: Callable | None = None
    weights_classes: bool = False
    min_class_rows: int = 1


SAMPLERS = {
    spec.name: spec
    for spec in (
        SamplerSpec(name="none", summary="train on each fold as it is"),
        SamplerSpec(
            name="class-weight", summary="weight samples inversely to their class frequency", weights_classes=True
        ),
        SamplerSpec(name="oversample", summary="repeat minority-class rows at random", make=_random_over),
        SamplerSpec(name="undersample", summary="drop majority-class rows at random", make=_random_under),
        SamplerSpec(
            name="smote",
            summary="synthesise minority-class rows (SMOTE)",
            make=_smote,
            min_class_rows=SMOTE_NEIGHBOURS + 1,
        ),
    )
}


def get_sampler(name: str) -> SamplerSpec:
    """The spec of a strategy name.

    Raises
    ------
    UnknownNameError
    """
    try:
        return SAMPLERS[name]
    except KeyError:
        raise UnknownNameError("sampler", name, SAMPLERS) from None


@dataclass(frozen=True, kw_only=True)
class TrainingRows:
    """The rows a head trains on after an imbalance strategy, with their weights.

    Attributes
    ----------
    features : numpy.ndarray, (N, D)
    labels : numpy.ndarray, (N,)
    sample_weight : numpy.ndarray or None
        Balanced class weights for ``class-weight``; None otherwise.
    """

    features: np.ndarray
    labels: np.ndarray
    sample_weight: np.ndarray | None


def training_rows(name: str, X, y, random_state: int = 0) -> TrainingRows:
    """One training set as the strategy ``name`` hands it to a head: resampled, or weighted by class.

    The one place a strategy acts: the dense heads' fold trainer and the scikit-learn heads (through
    :class:`Resampled`) both train on what this returns, from their training rows only.

    Parameters
    ----------
    name : str
        A key of :data:`SAMPLERS`.
    X : array-like, (N, D)
    y : array-like, (N,)
    random_state : int
        Seeds the sampler (default 0).

    Raises
    ------
    UnknownNameError
    ParameterError
        When a class has fewer rows than the strategy's ``min_class_rows`` (naming it and its count).
    """
    spec = get_sampler(name)
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    if counts.min() < spec.min_class_rows:
        raise ParameterError(
            "sampler",
            name,
            f"needs {spec.min_class_rows} training rows of every class or more; class index "
            f"{classes[counts.argmin()]} has {counts.min()} in these training rows: use fewer folds, or another "
            "strategy",
        )
    if spec.make is not None:
        X, y = spec.make(random_state).fit_resample(X, y)
    return TrainingRows(
        features=X, labels=y, sample_weight=compute_sample_weight("balanced", y) if spec.weights_classes else None
    )


def with_strategy(head, name: str, random_state: int = 0) -> Resampled:
    """Wrap ``head`` with the imbalance strategy ``name`` (a key of :data:`SAMPLERS`), seeded by ``random_state``
    (default 0): see :class:`Resampled`."""
    get_sampler(name)
    return Resampled(head, name, random_state)


class Resampled(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """A head fitted on :func:`training_rows` of the rows it is given; it predicts as the head does.

    The strategy acts in :meth:`fit` alone, never on the rows being predicted, so inside
    cross-validation it sees the training fold only.

    Parameters
    ----------
    head : sklearn classifier
        Cloned and fitted in :meth:`fit` (with ``sample_weight`` for ``class-weight``).
    strategy : str
        A key of :data:`SAMPLERS` (default ``none``).
    random_state : int
        Seeds the sampler (default 0).
    """

    def __init__(self, head, strategy="none", random_state=0):
        self.head = head
        self.strategy = strategy
        self.random_state = random_state

    def fit(self, X, y):
        """Fit a clone of ``head`` on the strategy's training rows; the fitted head is ``head_``."""
        rows = training_rows(self.strategy, X, y, self.random_state)
        weights = {} if rows.sample_weight is None else {"sample_weight": rows.sample_weight}
        self.head_ = clone(self.head).fit(rows.features, rows.labels, **weights)
        self.classes_ = self.head_.classes_
        return self

    def predict_proba(self, X):
        """Class probabilities of the fitted head."""
        check_is_fitted(self)
        return self.head_.predict_proba(X)
