"""The paper's dense heads: hidden ReLU layers, Dropout between them, softmax out.

Trained by the compiled fold trainer (:mod:`featx.heads.fold_trainer`) as Keras would train them; the
trained kernels and biases (:class:`~featx.heads.fold_trainer.TrainedHead`) are the head everywhere:
its NumPy forward pass gives the cross-validated figures and a saved model's predictions, and it is
saved as those arrays (``head.npz``). Keras layers are built from it only where Keras is needed (a
gradient through a backbone, fine-tuning).
"""

from __future__ import annotations

import numbers
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.fileio import read_arrays_verified, write_arrays_atomic
from featx.heads.base import ArgmaxPredictMixin, check_sample_weight
from featx.heads.family import FittedHead, HeadSpec, OutOfFold, check_finite
from featx.heads.fold_trainer import FoldTrainer, TrainedHead, dropout_before, flops_per_row
from featx.heads.sampling import training_rows

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


def dense_head(x, hidden, dropout: float, n_classes: int, name: str = "head", activation: str | None = "softmax"):
    """The paper's dense head on a Keras tensor: ReLU layers, Dropout between them (see
    :func:`featx.heads.fold_trainer.dropout_before`), ``activation`` out (default softmax; None gives the logits).

    Layers are named ``{name}_dense_0``, ``{name}_dense_1``, ... (the last is the output), so that a
    :class:`TrainedHead` can be loaded into them (:func:`load_into`) and read back (:func:`trained_head_of`).
    """
    import keras

    layers = len(hidden) + 1
    for index, width in enumerate((*hidden, n_classes)):
        if dropout_before(index, layers):
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout_{index}")(x)
        last = index == layers - 1
        x = keras.layers.Dense(
            width,
            activation=activation if last else "relu",
            dtype="float32" if last else None,
            name=f"{name}_dense_{index}",
        )(x)
    return x


def dense_layers(model) -> list:
    """The Dense layers of a model's head built by :func:`dense_head`, in order."""
    return [layer for layer in model.layers if "_dense_" in layer.name]


def load_into(model, trained: TrainedHead) -> None:
    """Set the Dense layers of ``model``'s head (built by :func:`dense_head`) to ``trained``'s kernels and biases."""
    for layer, kernel, bias in zip(dense_layers(model), trained.kernels, trained.biases, strict=True):
        layer.set_weights([kernel, bias])


def trained_head_of(model) -> TrainedHead:
    """The kernels and biases of ``model``'s head built by :func:`dense_head` (a fine-tuned model's head), float32."""
    layers = dense_layers(model)
    return TrainedHead(
        kernels=tuple(np.asarray(layer.kernel, dtype=np.float32) for layer in layers),
        biases=tuple(np.asarray(layer.bias, dtype=np.float32) for layer in layers),
    )


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


class DenseHeadClassifier(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """The paper's dense head as a scikit-learn classifier: hidden ReLU layers, Dropout between them,
    softmax out, trained as Keras trains it by the compiled fold trainer.

    The fitted head is ``trained_``, a :class:`TrainedHead`, and predicts through its forward pass (the
    one cross-validation and saved models use).

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
        self.trained_ = trainer.train(X, self.encoder_.transform(y), sample_weight, seed=seed, fold=fold)
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self.trained_.predict_proba(X)


HEAD_FILE = "head.npz"


@dataclass(frozen=True, kw_only=True)
class DenseFamily:
    """The dense heads: trained by the compiled fold trainer, every fold one program; saved as the
    kernels and biases that made the cross-validated figures (``head.npz``, read without pickle).

    Attributes
    ----------
    hidden : tuple of int
        Hidden layer widths; empty for the softmax head.
    """

    hidden: tuple[int, ...]
    file_name: str = HEAD_FILE
    params: tuple[str, ...] = KERAS_PARAMS
    uses_cores: bool = True
    weights_samples: bool = True

    @property
    def explanation(self) -> str:
        """``cam`` for the softmax head (linear in the pooled features, so CAM is exact), else ``grad-cam``."""
        return "grad-cam" if self.hidden else "cam"

    def build(self, random_state=0, **params) -> DenseHeadClassifier:
        """The head as an unfitted scikit-learn classifier (``params``: epochs, batch_size, learning_rate)."""
        return DenseHeadClassifier(hidden=self.hidden, random_state=random_state, **params)

    def _trainer(self, recipe, n_features: int, n_classes: int, capacity: int) -> FoldTrainer:
        return self.build(**recipe.params()).trainer(n_features, n_classes, capacity)

    def fit(self, features, y, recipe, *, seed: int, n_classes: int, fold: int = 0) -> FittedHead:
        """Train on ``features`` and class indices ``y`` as fold ``fold`` (default 0) of :meth:`out_of_fold`
        with the same ``seed`` trains on its rows: the same strategy rows, random streams and forward pass.

        Raises
        ------
        featx.exceptions.DivergedError
        """
        rows = training_rows(recipe.sampler, features, y, seed)
        trainer = self._trainer(recipe, features.shape[1], n_classes, len(rows.labels))
        trained = trainer.train(rows.features, rows.labels, rows.sample_weight, seed=seed, fold=fold)
        return FittedHead(predictor=trained, classes=tuple(range(n_classes)))

    def out_of_fold(
        self, features, y, fold, recipe, *, seed: int, n_classes: int, jobs: int | None = None, progress: bool = False
    ) -> OutOfFold:
        """Out-of-fold probabilities, every fold trained in turn by one compiled trainer.

        Each fold's training rows go through the recipe's imbalance strategy first
        (:func:`featx.heads.sampling.training_rows`, from that fold's rows only); fold ``k`` is trained
        with the random streams of ``(seed, k)``, so it is the head :meth:`fit` gives on those rows with
        ``fold=k``. Every head has a column for each of the ``n_classes``. ``jobs`` is not used (one
        fold's training keeps every core busy); ``progress`` shows a bar on stderr.

        Raises
        ------
        featx.exceptions.DivergedError
            When a fold's training loss, weights or predictions become non-finite (naming the fold).
        """
        from tqdm import tqdm

        folds = np.unique(fold)
        training = [training_rows(recipe.sampler, features[fold != k], y[fold != k], seed) for k in folds]
        trainer = self._trainer(recipe, features.shape[1], n_classes, max(len(rows.labels) for rows in training))
        seconds, flops = [], 0
        proba = np.zeros((len(y), n_classes))
        for k, rows in tqdm(
            list(zip(folds, training, strict=True)), desc="folds", disable=not progress, file=sys.stderr
        ):
            started = time.perf_counter()
            trained = trainer.train(rows.features, rows.labels, rows.sample_weight, seed=seed, fold=int(k))
            seconds.append(time.perf_counter() - started)
            flops += flops_per_row(trainer.dims) * len(rows.labels) * trainer.epochs
            proba[fold == k] = check_finite(trained.predict_proba(features[fold == k]), k)
        return OutOfFold(proba=proba, fold_seconds=tuple(seconds), gflops=flops / sum(seconds) / 1e9)

    def save(self, predictor: TrainedHead, folder) -> str:
        """Write the kernels and biases into ``folder`` (sealed ``.npz``); return the file name."""
        write_arrays_atomic(Path(folder) / self.file_name, predictor.arrays())
        return self.file_name

    def load(self, path) -> TrainedHead:
        """The head saved at ``path``; nothing in the file is executed (no pickle).

        Raises
        ------
        ValueError
            When the file is damaged, or its arrays are not the layers of a head of this family's shape.
        """
        trained = TrainedHead.of_arrays(read_arrays_verified(path))
        if trained.hidden != self.hidden:
            raise ValueError(f"its hidden layers are {trained.hidden or 'none'}, not {self.hidden or 'none'}")
        return trained


def dense_spec(name: str) -> HeadSpec:
    """The registry entry of a dense head name (``softmax`` or ``mlpN[-M...]``)."""
    hidden = hidden_layers(name)
    summary = (
        "softmax on the features (Keras)"
        if not hidden
        else f"Keras MLP, hidden {'-'.join(map(str, hidden))}, ReLU, dropout between hidden layers"
    )
    return HeadSpec(name=name, summary=summary, family=DenseFamily(hidden=hidden))
