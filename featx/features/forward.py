"""A frozen backbone fed batch by batch: uint8 pixels in, pooled features out, the next batch staged ahead.

The model takes uint8 images and scales them itself (its preprocessing is a layer), so a batch
crosses to the device at a quarter of the float32 bytes and the host does no arithmetic on it.
It runs in the runtime of its features (Keras, or OpenVINO on a CPU: :mod:`featx.features.runtime`).
Each batch is padded to the batch size, so the compiled step is reused (a new shape costs a
retrace, and an XLA compile on a GPU; OpenVINO compiles for that one shape). Under
``KERAS_BACKEND=jax`` batch k+1 is put on the device (``jax.device_put``, asynchronous) before
batch k's features are fetched, so the transfer overlaps the computation; other runtimes take the
host array as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.features.identity import FeatureSpec
from featx.features.runtime import RUNTIMES
from featx.limits import check_memory

ACTIVATION_BYTES_PER_PIXEL = 2 * 64 * 4
"""Backbone activation bytes per input pixel, an upper bound over the registered backbones: VGG's first
block keeps 64 float32 channels at the full input resolution (256 bytes a pixel), and a layer's input
and output are alive at once (x2). The other backbones halve the resolution in their first layer, so
they need a quarter of this or less: the bound refuses only what might not fit."""


def batch_memory(batch_size: int, input_size) -> int:
    """Bytes one forward pass of ``batch_size`` images at ``input_size`` (width, height) needs at most.

    The decoded uint8 pixels (3 bytes a pixel), the float32 input the preprocessing makes of them
    (12) and the backbone's activations (:data:`ACTIVATION_BYTES_PER_PIXEL`), for every image of
    the batch; the model's weights are not counted. Used by extract, predict and validate.
    """
    width, height = input_size
    return int(batch_size) * int(width) * int(height) * (3 + 12 + ACTIVATION_BYTES_PER_PIXEL)


def check_batch_memory(batch_size: int, input_size) -> None:
    """Refuse, before any model is built, a batch whose :func:`batch_memory` exceeds the memory available.

    Raises
    ------
    featx.exceptions.ResourceError
        With both figures and the advice to use a smaller ``--batch-size`` or ``--input-size``.
    """
    width, height = input_size
    check_memory(
        batch_memory(batch_size, input_size),
        f"a batch of {batch_size} images at {width}x{height}",
        "use a smaller --batch-size or --input-size",
    )


@dataclass(frozen=True, kw_only=True)
class _Pixels:
    """A batch of pixels and nothing else (what :meth:`Forward.run` reads of a batch)."""

    pixels: np.ndarray


class Forward:
    """The backbone of ``features`` loaded in its runtime for uint8 input, and the loop that feeds it.

    Parameters
    ----------
    features : FeatureSpec
        Backbone, weights, input size, precision and runtime (``auto`` resolved here, see
        :func:`featx.features.runtime.resolve_runtime`).
    batch_size : int

    Attributes
    ----------
    provenance : dict
        The weights' provenance (see :func:`featx.backbones.weights.build_base`) and the runtime's
        (see :class:`featx.features.runtime.Runner`).

    Raises
    ------
    featx.exceptions.ResourceError
        Before the backbone is built, when a batch would not fit in memory (see :func:`check_batch_memory`).
    featx.exceptions.ParameterError
        For bfloat16 on a CPU without bfloat16 instructions.
    """

    def __init__(self, feature_spec: FeatureSpec, batch_size: int):
        check_batch_memory(batch_size, feature_spec.input_size)
        feature_spec = feature_spec.resolved
        self.runner = RUNTIMES[feature_spec.runtime].load(feature_spec, batch_size)
        self.provenance = self.runner.provenance
        self.feature_dim = feature_spec.backbone_spec.feature_dim
        self.batch_size = batch_size

    def run(self, batches):
        """Yield ``(batch, features)`` for each batch with a ``pixels`` (n, H, W, 3) uint8 array.

        The next batch is taken from ``batches`` and staged on the device before the current
        batch's features are fetched.
        """
        staged = None
        for batch in batches:
            following = (batch, self._stage(batch.pixels))
            if staged is not None:
                yield staged[0], self._features(*staged)
            staged = following
        if staged is not None:
            yield staged[0], self._features(*staged)

    def features_of(self, pixels: np.ndarray) -> np.ndarray:
        """(n, D) float32 features of (n, H, W, 3) uint8 pixels, fed :attr:`batch_size` at a time by :meth:`run`.

        What ``predict`` and ``validate`` compute a saved head's input with: the loop and runner that
        made its training rows.
        """
        batches = (_Pixels(pixels=pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size))
        computed = [features for _, features in self.run(batches)]
        return np.concatenate(computed) if computed else np.zeros((0, self.feature_dim), dtype=np.float32)

    def _stage(self, pixels: np.ndarray):
        if not len(pixels):
            return None
        padding = self.batch_size - len(pixels)
        if padding:
            pixels = np.concatenate([pixels, np.repeat(pixels[-1:], padding, axis=0)])
        return self.runner.stage(pixels)

    def _features(self, batch, staged) -> np.ndarray:
        if staged is None:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return self.runner.features(staged)[: len(batch.pixels)]
