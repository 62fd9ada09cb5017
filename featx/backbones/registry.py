"""Registries of backbones (name -> constructor, preprocessing, paper cutoff and head, sizes) and of
their input preprocessings (name -> the scaling, written once for NumPy and for Keras).

Plain dicts of small frozen specs (as timm does); the CLI and the tests read them. Building a
model goes through :func:`featx.backbones.weights.build_base`, which applies the weights and
returns the model with its provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from featx.exceptions import UnknownNameError

IMAGENET_BGR_MEAN = np.asarray((103.939, 116.779, 123.68), dtype=np.float32)
"""Caffe-style preprocessing (VGG19) subtracts this from BGR pixels, as Keras does."""


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """One way of scaling RGB pixels in [0, 255] into a backbone's input.

    The scaling is plain arithmetic, so the same function runs on NumPy arrays (the host) and on
    Keras tensors (the device, inside the model).

    Attributes
    ----------
    name : str
        Registry key; part of every store key and model manifest.
    description : str
    bgr : bool
        Reverse the channels (RGB to BGR) before scaling.
    scale : callable
        float32 pixels -> the backbone's input.
    """

    name: str
    description: str
    bgr: bool
    scale: Callable

    def host(self, images) -> np.ndarray:
        """Scale RGB images (N, H, W, 3), any numeric dtype, on the host: float32."""
        x = np.asarray(images, dtype=np.float32)
        return self.scale(x[..., ::-1] if self.bgr else x)

    def layer(self):
        """The scaling as a Keras layer, uint8 RGB in and float32 out, so that it runs on the model's device.

        The layer keeps float32 under a mixed policy (the backbone casts its input itself).
        """
        import keras
        from keras import ops

        preprocessing = self

        class Preprocess(keras.layers.Layer):
            def call(self, images):
                x = ops.cast(images, "float32")
                return preprocessing.scale(ops.flip(x, axis=-1) if preprocessing.bgr else x)

        return Preprocess(dtype="float32", name=f"preprocess_{self.name}")


PREPROCESSINGS = {
    entry.name: entry
    for entry in (
        Preprocessing(
            name="caffe", description="BGR, ImageNet mean subtracted", bgr=True, scale=lambda x: x - IMAGENET_BGR_MEAN
        ),
        Preprocessing(name="tf", description="[-1, 1]", bgr=False, scale=lambda x: x / 127.5 - 1.0),
        Preprocessing(name="lite", description="(x - 127) / 128", bgr=False, scale=lambda x: (x - 127.0) / 128.0),
    )
}


def get_preprocessing(name: str) -> Preprocessing:
    """Look a preprocessing up by name.

    Raises
    ------
    UnknownNameError
        Naming it and listing the registered names (an unknown mode is never read as another).
    """
    try:
        return PREPROCESSINGS[name]
    except (KeyError, TypeError):
        raise UnknownNameError("preprocessing", name, PREPROCESSINGS) from None


@dataclass(frozen=True, kw_only=True)
class BackboneSpec:
    """What featx knows about one backbone.

    Attributes
    ----------
    name : str
        Registry key.
    keras_module : str or None
        ``keras.applications`` sub-module (None for featx's own EfficientNet-Lite).
    constructor : str
        Constructor name in that module (or in :mod:`featx.efficientnet_lite`).
    preprocessing : str
        A name from :data:`PREPROCESSINGS`: ``caffe`` (BGR mean subtraction), ``tf`` ([-1, 1]) or
        ``lite`` ((x - 127) / 128); part of every cache key. For a Keras backbone it is what its
        module's ``preprocess_input`` does (a test compares them).
    cutoff : int or None
        The paper's layer cutoff: the first ``cutoff`` layers stay frozen in phase 3.  None
        means "all but the last two blocks and the head convolution" (EfficientNet-Lite).
    paper_head : str
        Head spec the paper used with this backbone.
    feature_dim : int
        Length of the pooled feature vector.
    min_size : int
        Smallest input side the architecture accepts.
    imagenet_file : str or None
        File name Keras downloads for ``imagenet`` weights into ``$KERAS_HOME/models``.
    """

    name: str
    keras_module: str | None
    constructor: str
    preprocessing: str
    cutoff: int | None
    paper_head: str
    feature_dim: int
    min_size: int
    imagenet_file: str | None

    def __post_init__(self):
        get_preprocessing(self.preprocessing)


BACKBONES = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="vgg19",
            keras_module="vgg19",
            constructor="VGG19",
            preprocessing="caffe",
            cutoff=18,
            paper_head="mlp1024",
            feature_dim=512,
            min_size=32,
            imagenet_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        BackboneSpec(
            name="mobilenet_v2",
            keras_module="mobilenet_v2",
            constructor="MobileNetV2",
            preprocessing="tf",
            cutoff=10,
            paper_head="mlp1000-750",
            feature_dim=1280,
            min_size=32,
            imagenet_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
        BackboneSpec(
            name="inception_v3",
            keras_module="inception_v3",
            constructor="InceptionV3",
            preprocessing="tf",
            cutoff=249,
            paper_head="mlp1000",
            feature_dim=2048,
            min_size=75,
            imagenet_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        BackboneSpec(
            name="xception",
            keras_module="xception",
            constructor="Xception",
            preprocessing="tf",
            cutoff=120,
            paper_head="mlp1000-750",
            feature_dim=2048,
            min_size=71,
            imagenet_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        BackboneSpec(
            name="inception_resnet_v2",
            keras_module="inception_resnet_v2",
            constructor="InceptionResNetV2",
            preprocessing="tf",
            cutoff=730,
            paper_head="softmax",
            feature_dim=1536,
            min_size=75,
            imagenet_file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        BackboneSpec(
            name="efficientnet_lite0",
            keras_module=None,
            constructor="efficientnet_lite0",
            preprocessing="lite",
            cutoff=None,
            paper_head="mlp1000-750",
            feature_dim=1280,
            min_size=32,
            imagenet_file=None,
        ),
        BackboneSpec(
            name="efficientnet_lite1",
            keras_module=None,
            constructor="efficientnet_lite1",
            preprocessing="lite",
            cutoff=None,
            paper_head="mlp1000-750",
            feature_dim=1280,
            min_size=32,
            imagenet_file=None,
        ),
        BackboneSpec(
            name="efficientnet_lite2",
            keras_module=None,
            constructor="efficientnet_lite2",
            preprocessing="lite",
            cutoff=None,
            paper_head="mlp1000-750",
            feature_dim=1280,
            min_size=32,
            imagenet_file=None,
        ),
    )
}


def get_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name.

    Raises
    ------
    UnknownNameError
        Listing the registered names.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownNameError("backbone", name, BACKBONES) from None


def cutoff_for(spec: BackboneSpec, model) -> int:
    """Index of the first trainable layer of ``model`` in phase 3 (layers before it stay frozen)."""
    if spec.cutoff is not None:
        return spec.cutoff
    block_ids = sorted({int(layer.name.split(".")[1]) for layer in model.layers if layer.name.startswith("_blocks.")})
    first_trainable_block = f"_blocks.{block_ids[-2]}."
    for index, layer in enumerate(model.layers):
        if layer.name.startswith(first_trainable_block):
            return index
    raise ValueError(f"{spec.name}: block {first_trainable_block} not found")
