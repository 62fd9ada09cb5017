"""Classical heads on cached features: logistic regression, SVM and random forest (scikit-learn),
gradient-boosted trees (xgboost)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.heads.base import ArgmaxPredictMixin, check_sample_weight


def logistic_regression(random_state: int = 0):
    """Multinomial logistic regression (L2, C=0.1) on standardised features."""
    from sklearn.linear_model import LogisticRegression

    return Standardized(LogisticRegression(C=0.1, max_iter=3000, random_state=random_state))


def support_vector_machine(random_state: int = 0):
    """RBF SVM on standardised features, probabilities by sigmoid calibration."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return Standardized(CalibratedClassifierCV(SVC(C=1.0, random_state=random_state), ensemble=False))


def random_forest(random_state: int = 0):
    """300 trees, all cores."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=random_state)


def boosted_trees(random_state: int = 0):
    """Gradient-boosted trees (xgboost), tuned for a 10-fold fit in minutes on two cores."""
    return XGBHead(random_state=random_state)


class Standardized(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """A classifier fitted on features standardised with the training rows' mean and scale.

    Parameters
    ----------
    estimator : sklearn classifier
        Cloned and fitted in :meth:`fit`.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y, sample_weight=None):
        """Standardise ``X`` and fit a clone of ``estimator``."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        self.scaler_ = StandardScaler().fit(X, sample_weight=sample_weight)
        self.estimator_ = clone(self.estimator).fit(self.scaler_.transform(X), y, sample_weight=sample_weight)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(self.scaler_.transform(validate_data(self, X, reset=False)))


class XGBHead(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (xgboost) with sklearn's label handling.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, max_bin : xgboost settings.
        The defaults keep a 10-fold fit on ~1,300 x 1,280 features to a few minutes on two
        cores (xgboost's histogram building costs ~0.2 s a round there at 64 bins).
    random_state : int
    n_jobs : int
    """

    def __init__(
        self,
        n_estimators=100,
        max_depth=3,
        learning_rate=0.2,
        subsample=1.0,
        colsample_bytree=0.5,
        max_bin=64,
        random_state=0,
        n_jobs=2,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        """Fit on features ``X`` (N, D) and labels ``y``."""
        from xgboost import XGBClassifier

        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        encoded = self.encoder_.transform(y)
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            max_bin=self.max_bin,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            tree_method="hist",
            objective="multi:softprob" if len(self.classes_) > 2 else "binary:logistic",
        )
        self.model_.fit(X, encoded, sample_weight=sample_weight)
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        proba = self.model_.predict_proba(X)
        return proba if proba.ndim == 2 else np.column_stack([1 - proba, proba])
