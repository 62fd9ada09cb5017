"""The paper's dense heads in Keras: hidden ReLU layers, Dropout between them, softmax out."""

from __future__ import annotations

import numbers
import re

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.heads.base import ArgmaxPredictMixin, check_sample_weight
from featx.heads.fold_trainer import FoldTrainer

MLP_NAME = re.compile(r"mlp([0-9]+(?:-[0-9]+)*)", re.ASCII)
"""``mlpN[-M...]`` with ASCII digits, matched whole (``fullmatch``)."""
KERAS_PARAMS = ("epochs", "batch_size", "learning_rate")


def is_dense_name(name: str) -> bool:
    """Whether ``name`` is ``softmax`` or ``mlpN[-M...]``."""
    return name == "softmax" or bool(MLP_NAME.fullmatch(name))


def hidden_layers(name: str) -> tuple[int, ...]:
    """Hidden layer widths of a dense head name (empty for ``softmax``)."""
    if name == "softmax":
        return ()
    return tuple(int(width) for width in MLP_NAME.fullmatch(name).group(1).split("-"))


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


def trainer_seed(random_state) -> int:
    """The fold trainer's int seed for a scikit-learn ``random_state``.

    An int is the seed itself; a ``numpy.random.RandomState`` or None (NumPy's global one) gives
    a seed drawn from it. Whatever :func:`sklearn.utils.check_random_state` refuses is refused
    with its ValueError.
    """
    generator = check_random_state(random_state)
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(generator.randint(np.iinfo(np.int32).max))


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
    random_state : int, numpy.random.RandomState or None
        Seeds the initial weights, the shuffle and the dropout masks (see
        :mod:`featx.heads.fold_trainer`, which trains it). An int (default 0) gives the same numbers
        on every rerun; a RandomState or None (NumPy's global one) gives a seed drawn from it at
        each fit, as in scikit-learn.
    """

    def __init__(self, hidden=(1000, 750), dropout=0.5, epochs=10, batch_size=64, learning_rate=1e-3, random_state=0):
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

    def trainer(self, n_features: int, n_classes: int, capacity: int) -> FoldTrainer:
        """A compiled trainer of this head's shape for up to ``capacity`` rows (reusable across folds)."""
        return FoldTrainer(
            [n_features, *self.hidden, n_classes],
            capacity,
            dropout=self.dropout,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
        )

    def fit(self, X, y, sample_weight=None, fold: int = 0):
        """Train on features ``X`` (N, D) and labels ``y`` from scratch.

        ``fold`` picks the random streams: cross-validation trains fold ``k`` with those of ``fold=k``
        (through :meth:`trainer`, which compiles once for every fold).
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        seed = trainer_seed(self.random_state)
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data contains "
                f"only one class: {self.classes_.tolist()[0]!r}"
            )
        trainer = self.trainer(X.shape[1], len(self.classes_), len(X))
        trained = trainer.train(X, self.encoder_.transform(y), sample_weight, seed=seed, fold=fold)
        self.model_ = self._build(X.shape[1], len(self.classes_))
        for layer, kernel, bias in zip(dense_layers(self.model_), trained.kernels, trained.biases, strict=True):
            layer.set_weights([kernel, bias])
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
