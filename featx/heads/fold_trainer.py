"""Fast, exact training of the paper's Keras dense heads, one fold after another with one compiled step.

One Keras model is built and compiled once per head shape; every fold (and a final fit on all the
data) re-assigns its weights and the optimizer's state and trains, so no fold pays for model
building or tracing. A fold's training rows live in a non-trainable weight and each step's input is
row numbers into it, so a step moves no features from Python; ``steps_per_execution`` runs many
steps per call.

Fold ``k`` trains exactly as it would alone: every source of its randomness is a NumPy stream seeded
by ``SeedSequence([seed, k, stream, layer])``: the Glorot-uniform initial kernels, the per-epoch
shuffle and the dropout keep-masks. None depends on the other folds or on the backend, so the same
seed gives the same numbers, and training one fold on its own gives that fold's head.

The recipe is the paper's: ReLU hidden layers, Dropout between them, softmax output, Adam, the
sparse categorical cross-entropy of each batch averaged over its rows (weighted by
``sample_weight``), float32 throughout.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

INIT, SHUFFLE, DROPOUT = 1, 2, 3
STEPS_PER_EXECUTION = 32


def fold_rng(seed: int, fold: int, stream: int, layer: int = 0) -> np.random.Generator:
    """The NumPy generator of one random stream (:data:`INIT`, :data:`SHUFFLE`, :data:`DROPOUT`) of one fold."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(fold), int(stream), int(layer)]))


def flops_per_row(dims) -> int:
    """Matmul FLOPs of one training row through dense layers ``dims`` = ``[features, *hidden, classes]``.

    Forward ``2ab`` per layer, kernel gradient ``2ab`` per layer, input gradient ``2ab`` for every
    layer but the first; biases, activations, dropout, loss and optimizer are not counted.
    """
    return sum(
        4 * a * b + (2 * a * b if index else 0) for index, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
    )


def initial_weights(dims, seed: int, fold: int) -> list:
    """Glorot-uniform kernels and zero biases of one fold (Keras' ``Dense`` defaults), float32."""
    weights = []
    for layer, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        limit = math.sqrt(6.0 / (a + b))
        kernel = fold_rng(seed, fold, INIT, layer).uniform(-limit, limit, (a, b)).astype(np.float32)
        weights.append((kernel, np.zeros(b, np.float32)))
    return weights


def fold_batches(n_rows: int, epochs: int, batch_size: int, seed: int, fold: int) -> list:
    """Row numbers of every training step of one fold: a fresh permutation each epoch, cut into batches."""
    rng = fold_rng(seed, fold, SHUFFLE)
    batches = []
    for _ in range(epochs):
        order = rng.permutation(n_rows)
        batches.extend(order[start : start + batch_size] for start in range(0, n_rows, batch_size))
    return batches


def dropout_keep(shape, rate: float, seed: int, fold: int, layer: int) -> np.ndarray:
    """Keep-masks of one Dropout layer of one fold, uint8 of ``shape``: kept where a 16-bit draw >= rate * 2**16."""
    threshold = min(int(round(rate * 65536)), 65536)
    draws = np.frombuffer(fold_rng(seed, fold, DROPOUT, layer).bytes(2 * int(np.prod(shape))), dtype="<u2")
    return (draws.reshape(shape) >= threshold).astype(np.uint8)


@dataclass(frozen=True)
class TrainedHead:
    """One trained dense head: kernels and biases of each layer, ReLU between, softmax out.

    Attributes
    ----------
    kernels, biases : tuple of numpy.ndarray
        float32, ``(D_in, D_out)`` and ``(D_out,)`` per layer.
    """

    kernels: tuple
    biases: tuple

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of feature rows ``X`` (N, D): a float32 forward pass."""
        h = np.asarray(X, dtype=np.float32)
        for index, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = h @ kernel + bias
            if index < len(self.kernels) - 1:
                np.maximum(h, 0, out=h)
        h = h - h.max(axis=1, keepdims=True)
        np.exp(h, out=h)
        return (h / h.sum(axis=1, keepdims=True)).astype(np.float64)


class FoldTrainer:
    """Trains one dense head shape on many folds with one compiled Keras train step.

    Parameters
    ----------
    dims : sequence of int
        ``[n_features, *hidden, n_classes]``.
    capacity : int
        Most training rows a fold may have.
    dropout : float
        Rate of the Dropout between hidden layers.
    epochs, batch_size : int
    learning_rate : float
        Adam's (its other settings are Keras' defaults).
    """

    def __init__(
        self,
        dims,
        capacity: int,
        *,
        dropout: float = 0.5,
        epochs: int = 10,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
    ):
        import keras

        self.dims = [int(d) for d in dims]
        self.capacity = int(capacity)
        self.dropout, self.epochs, self.batch_size = float(dropout), int(epochs), int(batch_size)
        index = keras.Input(shape=(self.batch_size,), batch_size=1, dtype="int32", name="rows")
        self.widths = self.dims[1:-2]  # a Dropout sits after every hidden layer but the last
        keeps = [
            keras.Input(shape=(self.batch_size, width), batch_size=1, dtype="uint8", name=f"keep_{n}")
            for n, width in enumerate(self.widths)
        ]
        self.rows = _Rows(self.capacity, self.dims[0], name="rows_table")
        x = self.rows(index)
        self.dense = []
        for layer, width in enumerate(self.dims[1:]):
            if 0 < layer < len(self.dims) - 2:
                x = _MaskedDropout(self.dropout, name=f"dropout_{layer}")(x, keeps[layer - 1])
            dense = keras.layers.Dense(
                width, activation=None if layer == len(self.dims) - 2 else "relu", name=f"dense_{layer}"
            )
            self.dense.append(dense)
            x = dense(x)
        self.model = keras.Model([index, *keeps], x)
        self.model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
            steps_per_execution=STEPS_PER_EXECUTION,
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self._optimizer_start = [np.array(v.numpy()) for v in self.model.optimizer.variables]

    def train(self, X, y, sample_weight=None, *, seed: int = 0, fold: int = 0) -> TrainedHead:
        """Train a fresh head on ``X`` (N, D), class indices ``y`` and optional weights, seeded by (seed, fold).

        Raises
        ------
        ValueError
            When the rows exceed the capacity, the shapes disagree or every weight is zero.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int32).ravel()
        w = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32).ravel()
        if X.shape != (len(y), self.dims[0]) or len(w) != len(y) or not len(y) or len(y) > self.capacity:
            raise ValueError(f"expected 1..{self.capacity} rows of {self.dims[0]} features with a label and a weight")
        if not np.any(w > 0):
            raise ValueError("All sample weights are zero; at least one must be positive")
        rows = np.zeros((self.capacity, self.dims[0]), np.float32)
        rows[: len(X)] = X
        self.rows.table.assign(rows)
        for dense, (kernel, bias) in zip(self.dense, initial_weights(self.dims, seed, fold), strict=True):
            dense.set_weights([kernel, bias])
        for variable, value in zip(self.model.optimizer.variables, self._optimizer_start, strict=True):
            variable.assign(value)
        inputs, labels, weights = self._steps(y, w, seed, fold)
        self.model.fit(inputs, labels, sample_weight=weights, batch_size=1, epochs=1, shuffle=False, verbose=0)
        return TrainedHead(
            tuple(np.array(d.kernel.numpy()) for d in self.dense), tuple(np.array(d.bias.numpy()) for d in self.dense)
        )

    def _steps(self, y, w, seed: int, fold: int):
        """Per step: row numbers, keep-masks, labels and loss weights (each row's weight over its batch's size)."""
        batches = fold_batches(len(y), self.epochs, self.batch_size, seed, fold)
        steps, size = len(batches), self.batch_size
        index = np.zeros((steps, size), np.int32)
        labels = np.zeros((steps, size), np.int32)
        weights = np.zeros((steps, size), np.float32)
        for step, rows in enumerate(batches):
            index[step, : len(rows)] = rows
            labels[step, : len(rows)] = y[rows]
            weights[step, : len(rows)] = w[rows] / np.float32(len(rows))
        keeps = [
            dropout_keep((steps, size, width), self.dropout, seed, fold, layer)
            for layer, width in enumerate(self.widths, start=1)
        ]
        return [index, *keeps], labels, weights


@functools.cache
def _rows_layer():
    import keras

    class Rows(keras.layers.Layer):
        """A fold's training rows in a non-trainable ``(capacity, D)`` weight; the input is row numbers."""

        def __init__(self, capacity: int, n_features: int, **kwargs):
            super().__init__(**kwargs)
            self.capacity, self.n_features = int(capacity), int(n_features)

        def build(self, input_shape):
            self.table = self.add_weight(
                shape=(self.capacity, self.n_features), initializer="zeros", trainable=False, name="table"
            )

        def call(self, index):
            return keras.ops.take(self.table, index, axis=0)

    class MaskedDropout(keras.layers.Layer):
        """Dropout whose keep-mask is an input: ``x * keep / (1 - rate)``."""

        def __init__(self, rate: float, **kwargs):
            super().__init__(**kwargs)
            self.rate = float(rate)

        def call(self, x, keep):
            return x * (keras.ops.cast(keep, x.dtype) * (0.0 if self.rate >= 1 else 1.0 / (1.0 - self.rate)))

    return Rows, MaskedDropout


def _Rows(*args, **kwargs):  # noqa: N802 (a layer class built on first use: importing this module needs no Keras)
    return _rows_layer()[0](*args, **kwargs)


def _MaskedDropout(*args, **kwargs):  # noqa: N802
    return _rows_layer()[1](*args, **kwargs)
