"""Class-imbalance strategies, applied inside training folds only.

Each strategy wraps a head into an ``imblearn.pipeline.Pipeline``: samplers run in ``fit``
alone (never on the rows being predicted), and ``class-weight`` computes balanced sample
weights from the training labels of each fit.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from featx.exceptions import UnknownNameError
from featx.heads.dense import ArgmaxPredictMixin

SAMPLERS = ("none", "class-weight", "oversample", "undersample", "smote")


def make_sampler(name: str, random_state: int = 0):
    """The imbalanced-learn sampler for ``name`` (None for ``none`` and ``class-weight``).

    Raises
    ------
    UnknownNameError
    """
    if name not in SAMPLERS:
        raise UnknownNameError("sampler", name, SAMPLERS)
    if name == "oversample":
        from imblearn.over_sampling import RandomOverSampler

        return RandomOverSampler(random_state=random_state)
    if name == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        return RandomUnderSampler(random_state=random_state)
    if name == "smote":
        from imblearn.over_sampling import SMOTE

        return SMOTE(random_state=random_state)
    return None


def with_strategy(head, name: str, random_state: int = 0, sampler=None):
    """Wrap ``head`` with the imbalance strategy ``name``.

    Parameters
    ----------
    head : sklearn classifier
    name : str
        One of :data:`SAMPLERS`.
    random_state : int
    sampler : imblearn sampler, optional
        Use this sampler instead of the one ``name`` makes.

    Returns
    -------
    imblearn.pipeline.Pipeline
        Steps ``sampler`` (or ``passthrough``) and ``head``.
    """
    from imblearn.pipeline import Pipeline

    if name == "class-weight":
        head = BalancedClassWeights(head)
    sampler = sampler if sampler is not None else make_sampler(name, random_state)
    return Pipeline([("sampler", sampler if sampler is not None else "passthrough"), ("head", head)])


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
