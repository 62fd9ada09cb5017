"""Fast, exact training of the paper's Keras dense heads, one fold after another with one compiled program.

The whole training of one fold (every step of every epoch: gather the batch's rows, forward with
the dropout masks, the loss's gradient, Adam's update) is one XLA program: a ``jax.lax.scan`` over
the steps, compiled once per head shape and reused by every fold, and by the final fit on all the
data. Python is not involved between steps, so on a CPU the training runs near the machine's
matrix-multiply rate (``bench/fit.py``). The trained kernels and biases (:class:`TrainedHead`) are the
head: its NumPy forward pass gives the cross-validated figures, the predictions of a saved model and the
Grad-CAM scores (rebuilt in Keras from the same arrays only where a gradient through a backbone is needed).
Folds of different sizes share the program: the row table is padded to the largest fold, and a
fold with another number of steps (one batch more or less per epoch) compiles once more.

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
import os
from dataclasses import dataclass

import numpy as np

from featx.exceptions import DivergedError
from featx.limits import check_memory

INIT, SHUFFLE, DROPOUT = 1, 2, 3


def dropout_before(layer: int, layers: int) -> bool:
    """Whether Dropout feeds dense layer ``layer`` of ``layers``: the paper's head drops out between hidden
    layers only, so never before the first layer nor before the output layer."""
    return 0 < layer < layers - 1


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


def training_memory(dims, capacity: int, epochs: int, batch_size: int) -> int:
    """Bytes the training of one fold needs, roughly: four float32 copies of the weights (the weights,
    their gradient, Adam's two moments), the padded row table, and the per-step tables (row numbers,
    labels and loss weights, 12 bytes a row, and a uint8 dropout mask for each hidden layer but the last).
    """
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))
    step_rows = epochs * (capacity + batch_size)  # the last batch of an epoch is padded
    return 4 * (4 * params + capacity * dims[0]) + step_rows * (12 + sum(dims[1:-2]))


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


@dataclass(frozen=True, kw_only=True)
class TrainedHead:
    """One trained dense head: kernels and biases of each layer, ReLU between, softmax out.

    The one forward pass of a dense head: cross-validation, a saved model's predictions and its
    explanations all run it (or, for a gradient through a backbone, Keras layers loaded with these arrays).

    Attributes
    ----------
    kernels, biases : tuple of numpy.ndarray
        float32, ``(D_in, D_out)`` and ``(D_out,)`` per layer.
    """

    kernels: tuple
    biases: tuple

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of the hidden layers (empty for a softmax head)."""
        return tuple(int(kernel.shape[1]) for kernel in self.kernels[:-1])

    @property
    def n_classes(self) -> int:
        """Output columns."""
        return int(self.kernels[-1].shape[1])

    def arrays(self) -> dict:
        """``kernel_0``, ``bias_0``, ``kernel_1``, ... by name (what :meth:`of_arrays` reads back)."""
        named = {}
        for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            named[f"kernel_{layer}"], named[f"bias_{layer}"] = kernel, bias
        return named

    @classmethod
    def of_arrays(cls, arrays: dict) -> TrainedHead:
        """The head whose :meth:`arrays` these are.

        Raises
        ------
        ValueError
            When a layer is missing, an array is not float32 or the layers' shapes do not chain.
        """
        layers = len(arrays) // 2
        if layers < 1 or set(arrays) != {f"{kind}_{layer}" for layer in range(layers) for kind in ("kernel", "bias")}:
            raise ValueError(f"expected arrays kernel_0, bias_0, ... of whole layers, got {', '.join(sorted(arrays))}")
        kernels = tuple(arrays[f"kernel_{layer}"] for layer in range(layers))
        biases = tuple(arrays[f"bias_{layer}"] for layer in range(layers))
        width = kernels[0].shape[0] if kernels[0].ndim == 2 else None
        for layer, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
            if kernel.dtype != np.float32 or bias.dtype != np.float32:
                raise ValueError(f"layer {layer}: kernel and bias must be float32, got {kernel.dtype} and {bias.dtype}")
            if kernel.ndim != 2 or kernel.shape[0] != width or bias.shape != (kernel.shape[1],):
                raise ValueError(
                    f"layer {layer}: kernel {kernel.shape} and bias {bias.shape} do not follow the layer before"
                )
            width = kernel.shape[1]
        return cls(kernels=kernels, biases=biases)

    def linear_scores(self) -> np.ndarray:
        """The class logits' coefficients on the features, (n_classes, D): a softmax head's kernel, transposed.

        Raises
        ------
        ValueError
            For a head with hidden layers (its scores are not linear in the features).
        """
        if self.hidden:
            raise ValueError(f"a head with hidden layers {self.hidden} is not linear in its features")
        return self.kernels[0].T

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of feature rows ``X`` (N, D): a float32 forward pass.

        Non-finite weights give non-finite probabilities without a warning: every caller checks them and
        says what diverged.
        """
        with np.errstate(invalid="ignore", over="ignore"):
            h = np.asarray(X, dtype=np.float32)
            for index, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
                h = h @ kernel + bias
                if index < len(self.kernels) - 1:
                    np.maximum(h, 0, out=h)
            h = h - h.max(axis=1, keepdims=True)
            np.exp(h, out=h)
            return (h / h.sum(axis=1, keepdims=True)).astype(np.float64)


class FoldTrainer:
    """Trains one dense head shape on many folds with one compiled program.

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
        Adam's, with Keras' defaults for the rest (beta 0.9 and 0.999, epsilon 1e-7).

    Raises
    ------
    featx.exceptions.ResourceError
        Before anything is compiled, when :func:`training_memory` exceeds the memory available.
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
        self.dims = tuple(int(d) for d in dims)
        self.capacity = int(capacity)
        self.dropout, self.epochs, self.batch_size = float(dropout), int(epochs), int(batch_size)
        self.learning_rate = float(learning_rate)
        layers = len(self.dims) - 1
        self.widths = tuple(self.dims[layer] for layer in range(layers) if dropout_before(layer, layers))
        check_memory(
            training_memory(self.dims, self.capacity, self.epochs, self.batch_size),
            f"training a head with layers {'-'.join(map(str, self.dims[1:-1])) or 'none'} on {self.capacity} rows",
            "use narrower hidden layers, fewer --epochs or fewer images",
        )
        self._program = _program(self.dims, self.dropout, self.learning_rate)

    def train(self, X, y, sample_weight=None, *, seed: int = 0, fold: int = 0) -> TrainedHead:
        """Train a fresh head on ``X`` (N, D), class indices ``y`` and optional weights, seeded by (seed, fold).

        Raises
        ------
        ValueError
            When the rows exceed the capacity, the shapes disagree or every weight is zero.
        DivergedError
            When a batch's loss or a trained weight is not finite, naming the fold and the first such epoch.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int32).ravel()
        w = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32).ravel()
        if X.shape != (len(y), self.dims[0]) or len(w) != len(y) or not len(y) or len(y) > self.capacity:
            raise ValueError(f"expected 1..{self.capacity} rows of {self.dims[0]} features with a label and a weight")
        if not np.any(w > 0):
            raise ValueError("All sample weights are zero; at least one must be positive")
        table = np.zeros((self.capacity, self.dims[0]), np.float32)
        table[: len(X)] = X
        index, labels, weights, keeps = self._steps(y, w, seed, fold)
        params, losses = self._program(initial_weights(self.dims, seed, fold), table, index, labels, weights, keeps)
        trained = TrainedHead(
            kernels=tuple(np.asarray(kernel) for kernel, _ in params),
            biases=tuple(np.asarray(bias) for _, bias in params),
        )
        self._check_finite(losses, trained, fold)
        return trained

    def _check_finite(self, losses: np.ndarray, trained: TrainedHead, fold: int) -> None:
        """Raise :class:`DivergedError` at the first epoch with a non-finite batch loss, or when a weight is.

        ``losses`` are the steps' losses the compiled program returns anyway; checking them and the
        final weights on the host costs microseconds against the training's milliseconds.
        """
        finite_epochs = np.isfinite(losses).reshape(self.epochs, -1).all(axis=1)
        weights_finite = all(np.isfinite(array).all() for array in (*trained.kernels, *trained.biases))
        if finite_epochs.all() and weights_finite:
            return
        epoch = int(np.argmin(finite_epochs)) + 1 if not finite_epochs.all() else self.epochs
        raise DivergedError(
            f"fold {fold}, epoch {epoch} of {self.epochs}",
            f"the loss or the weights became non-finite at learning rate {self.learning_rate:g}",
        )

    def _steps(self, y, w, seed: int, fold: int):
        """Per step: row numbers, labels, loss weights (each row's weight over its batch's size), keep-masks."""
        batches = fold_batches(len(y), self.epochs, self.batch_size, seed, fold)
        steps, size = len(batches), self.batch_size
        index = np.zeros((steps, size), np.int32)
        labels = np.zeros((steps, size), np.int32)
        weights = np.zeros((steps, size), np.float32)
        for step, rows in enumerate(batches):
            index[step, : len(rows)] = rows
            labels[step, : len(rows)] = y[rows]
            weights[step, : len(rows)] = w[rows] / np.float32(len(rows))
        keeps = tuple(
            dropout_keep((steps, size, width), self.dropout, seed, fold, layer)
            for layer, width in enumerate(self.widths, start=1)  # the Dropout before dense layer 1, 2, ...
        )
        return index, labels, weights, keeps


@functools.cache
def _program(dims: tuple, dropout: float, learning_rate: float):
    """The compiled training of one head shape: initial weights and one fold's steps in, trained weights and
    every step's loss (its forward pass computes it anyway) out.

    XLA's oneDNN matrix kernels are asked for on the CPU (about 1.6x faster here than its default ones);
    the flag must be set before JAX starts its CPU backend, and a user's own XLA_FLAGS are kept.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_onednn" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_onednn=true".strip()
    import jax
    import jax.numpy as jnp

    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7
    scale = 0.0 if dropout >= 1 else 1.0 / (1.0 - dropout)

    def loss(params, x, labels, weights, keeps):
        for layer, (kernel, bias) in enumerate(params):
            if layer:
                x = jax.nn.relu(x)
                if dropout_before(layer, len(params)):
                    x = x * (keeps[layer - 1].astype(x.dtype) * scale)
            x = x @ kernel + bias
        log_proba = jax.nn.log_softmax(x)
        return -jnp.sum(weights * jnp.take_along_axis(log_proba, labels[:, None], axis=1)[:, 0])

    def adam(params, first, second, count, gradient):
        """Keras' Adam: bias-corrected step size, epsilon outside the square root."""
        alpha = learning_rate * jnp.sqrt(1 - beta_2**count) / (1 - beta_1**count)
        first = jax.tree.map(lambda m, g: beta_1 * m + (1 - beta_1) * g, first, gradient)
        second = jax.tree.map(lambda v, g: beta_2 * v + (1 - beta_2) * g * g, second, gradient)
        params = jax.tree.map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + epsilon), params, first, second)
        return params, first, second

    @jax.jit
    def train(params, table, index, labels, weights, keeps):
        def step(state, inputs):
            params, first, second, count = state
            rows, step_labels, step_weights, step_keeps = inputs
            value, gradient = jax.value_and_grad(loss)(params, table[rows], step_labels, step_weights, step_keeps)
            return (*adam(params, first, second, count + 1.0, gradient), count + 1.0), value

        zeros = jax.tree.map(jnp.zeros_like, params)
        state, losses = jax.lax.scan(step, (params, zeros, zeros, jnp.float32(0)), (index, labels, weights, keeps))
        return state[0], losses

    def run(params, table, index, labels, weights, keeps):
        params = [(jnp.asarray(kernel), jnp.asarray(bias)) for kernel, bias in params]
        return jax.device_get(train(params, table, index, labels, weights, keeps))

    return run
