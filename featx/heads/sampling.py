"""Class-imbalance strategies, applied inside training folds only.

Each strategy wraps a head into an ``imblearn.pipeline.Pipeline``: samplers run in ``fit``
alone (never on the rows being predicted), and ``class-weight`` computes balanced sample
weights from the training labels of each fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from featx.exceptions import UnknownNameError
from featx.heads.base import ArgmaxPredictMixin


def _random_over(random_state):
    from imblearn.over_sampling import RandomOverSampler

    return RandomOverSampler(random_state=random_state)


def _random_under(random_state):
    from imblearn.under_sampling import RandomUnderSampler

    return RandomUnderSampler(random_state=random_state)


def _smote(random_state):
    from imblearn.over_sampling import SMOTE

    return SMOTE(random_state=random_state)


@dataclass(frozen=True)
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
    """

    name: str
    summary: str
    make: Callable | None = None
    weights_classes: bool = False


SAMPLERS = {
    spec.name: spec
    for spec in (
        SamplerSpec("none", "train on each fold as it is"),
        SamplerSpec("class-weight", "weight samples inversely to their class frequency", weights_classes=True),
        SamplerSpec("oversample", "repeat minority-class rows at random", _random_over),
        SamplerSpec("undersample", "drop majority-class rows at random", _random_under),
        SamplerSpec("smote", "synthesise minority-class rows (SMOTE)", _smote),
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


def with_strategy(head, name: str, random_state: int = 0, sampler=None):
    """Wrap ``head`` with the imbalance strategy ``name``.

    Parameters
    ----------
    head : sklearn classifier
    name : str
        A key of :data:`SAMPLERS`.
    random_state : int
    sampler : imblearn sampler, optional
        Use this sampler instead of the one ``name`` makes.

    Returns
    -------
    imblearn.pipeline.Pipeline
        Steps ``sampler`` (or ``passthrough``) and ``head``.
    """
    from imblearn.pipeline import Pipeline

    spec = get_sampler(name)
    if spec.weights_classes:
        head = BalancedClassWeights(head)
    if sampler is None and spec.make is not None:
        sampler = spec.make(random_state)
    return Pipeline([("sampler", sampler if sampler is not None else "passthrough"), ("head", head)])


def resample(name: str, X, y, random_state: int = 0) -> tuple:
    """One training set as the strategy ``name`` hands it to a head: ``(X, y, sample_weight or None)``.

    What :func:`with_strategy`'s pipeline does inside ``fit``, for trainers that take the rows
    themselves (the dense heads' fold trainer).
    """
    spec = get_sampler(name)
    if spec.make is not None:
        X, y = spec.make(random_state).fit_resample(X, y)
    return X, y, compute_sample_weight("balanced", y) if spec.weights_classes else None


def fitted_head(estimator):
    """The fitted classifier inside a strategy pipeline (what predicts; samplers act in fit only)."""
    head = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return head.estimator_ if isinstance(head, BalancedClassWeights) else head


class BalancedClassWeights(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` with sample weights inversely proportional to class frequency.

    The weights come from the labels passed to :meth:`fit`, so inside cross-validation they
    reflect the training fold only.

    Parameters
    ----------
    estimator : sklearn classifier accepting ``sample_weight``
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        """Fit a clone of ``estimator`` with balanced sample weights."""
        self.estimator_ = clone(self.estimator).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        """Class probabilities of the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)
