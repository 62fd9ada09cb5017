"""Heads named by spec strings, all scikit-learn classifiers.

``softmax`` and ``mlpN[-M...]`` are the paper's Keras dense heads (ReLU, Dropout between
hidden layers, Adam, 10 epochs, batch 64); ``logreg``, ``svm``, ``rf`` and ``xgb`` are
classical heads on standardised features.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.exceptions import UnknownNameError

CLASSICAL = ("logreg", "svm", "rf", "xgb")
KERAS_EXAMPLES = ("softmax", "mlp1024", "mlp1000", "mlp1000-750")
_MLP = re.compile(r"^mlp(\d+(?:-\d+)*)$")


def available_heads() -> list[str]:
    """Spec strings featx accepts (any ``mlpN-M...`` works; these are the paper's)."""
    return list(KERAS_EXAMPLES) + list(CLASSICAL) + ["paper"]


def is_keras_head(spec: str) -> bool:
    """Whether ``spec`` names a Keras dense head."""
    return spec == "softmax" or bool(_MLP.match(spec))


def hidden_layers(spec: str) -> tuple[int, ...]:
    """Hidden layer widths of a Keras head spec (empty for ``softmax``)."""
    if spec == "softmax":
        return ()
    return tuple(int(width) for width in _MLP.match(spec).group(1).split("-"))


def make_head(spec: str, random_state: int = 0, **params):
    """Build the classifier named by ``spec``.

    Parameters
    ----------
    spec : str
        ``softmax``, ``mlp1024``, ``mlp1000``, ``mlp1000-750`` (any ``mlpN-M``), ``logreg``,
        ``svm``, ``rf`` or ``xgb``.
    random_state : int
        Seed of the head's own randomness.
    **params
        Keras heads take ``epochs``, ``batch_size``, ``learning_rate``, ``dropout``.

    Returns
    -------
    sklearn classifier

    Raises
    ------
    UnknownNameError
        Listing the valid specs.
    """
    if is_keras_head(spec):
        return KerasMLPClassifier(hidden=hidden_layers(spec), random_state=random_state, **params)
    if spec == "logreg":
        from sklearn.linear_model import LogisticRegression

        return Standardized(LogisticRegression(C=0.1, max_iter=3000, random_state=random_state))
    if spec == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        return Standardized(CalibratedClassifierCV(SVC(C=1.0, random_state=random_state), ensemble=False))
    if spec == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=random_state)
    if spec == "xgb":
        return XGBHead(random_state=random_state)
    raise UnknownNameError("head", spec, available_heads())


class ArgmaxPredictMixin:
    """``predict`` as the most probable class of ``predict_proba``."""

    def predict(self, X):
        """Most probable class."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _check_weights(sample_weight, n_samples: int):
    """Refuse sample weights of the wrong shape or that are all zero."""
    if sample_weight is None:
        return None
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.shape != (n_samples,):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n_samples},)")
    if not np.any(sample_weight > 0):
        raise ValueError("All sample weights are zero; at least one must be positive")
    return sample_weight


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
        from sklearn.base import clone
        from sklearn.preprocessing import StandardScaler

        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        sample_weight = _check_weights(sample_weight, X.shape[0])
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

    def __init__(self, n_estimators=100, max_depth=3, learning_rate=0.2, subsample=1.0, colsample_bytree=0.5,
                 max_bin=64, random_state=0, n_jobs=2):
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
        sample_weight = _check_weights(sample_weight, X.shape[0])
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        encoded = self.encoder_.transform(y)
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree, max_bin=self.max_bin,
            random_state=self.random_state, n_jobs=self.n_jobs, tree_method="hist",
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


def dense_head(x, hidden, dropout: float, n_classes: int, name: str = "head"):
    """The paper's dense head on a Keras tensor: ReLU layers, Dropout between them, softmax.

    Layers are named ``{name}_dense_0``, ``{name}_dense_1``, ... (the last is the output), so
    a head trained on cached features can initialise the same head on a backbone.
    """
    import keras

    for index, width in enumerate(hidden):
        if index > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout_{index}")(x)
        x = keras.layers.Dense(width, activation="relu", name=f"{name}_dense_{index}")(x)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name=f"{name}_dense_{len(hidden)}")(x)


def dense_layers(model) -> list:
    """The Dense layers of a model's head built by :func:`dense_head`, in order."""
    return [layer for layer in model.layers if "_dense_" in layer.name]


class KerasMLPClassifier(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """The paper's dense head in Keras: hidden ReLU layers, Dropout between them, softmax out.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer widths; empty is a softmax (multinomial logistic) head.
    dropout : float
        Dropout rate between hidden layers.
    epochs : int
    batch_size : int
    learning_rate : float
        Adam's learning rate.
    random_state : int
        Seeds Keras so that a rerun gives the same numbers.
    """

    def __init__(self, hidden=(1000, 750), dropout=0.5, epochs=10, batch_size=64, learning_rate=1e-3,
                 random_state=0):
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _build(self, n_features: int, n_classes: int):
        import keras

        inputs = keras.Input(shape=(n_features,))
        return keras.Model(inputs, dense_head(inputs, self.hidden, self.dropout, n_classes))

    def fit(self, X, y, sample_weight=None):
        """Train on features ``X`` (N, D) and labels ``y`` from scratch."""
        import keras

        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        sample_weight = _check_weights(sample_weight, X.shape[0])
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        keras.utils.set_random_seed(self.random_state)
        self.model_ = self._build(X.shape[1], len(self.classes_))
        self.model_.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                            loss="sparse_categorical_crossentropy")
        self.model_.fit(X, self.encoder_.transform(y), sample_weight=sample_weight, epochs=self.epochs,
                        batch_size=self.batch_size, verbose=0, shuffle=True)
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return np.asarray(self.model_.predict(X, batch_size=1024, verbose=0), dtype=np.float64)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            state["model_"] = [w.copy() for w in self.model_.get_weights()]
        return state

    def __setstate__(self, state):
        weights = state.pop("model_", None)
        self.__dict__.update(state)
        if weights is not None:
            self.model_ = self._build(self.n_features_in_, len(self.classes_))
            self.model_.set_weights(weights)
