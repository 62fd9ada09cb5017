"""Grad-CAM heatmaps for models with a Keras backbone and a Keras head.

The gradient step is the one truly backend-specific piece of featx: TensorFlow uses a
``GradientTape``, JAX ``jax.grad``; everything else goes through ``keras.ops``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from featx.exceptions import FeatxError

log = logging.getLogger(__name__)


def conv_model(base):
    """The backbone up to its last convolutional feature map (the layer before pooling)."""
    import keras

    pooling = base.layers[-1]
    return keras.Model(base.inputs, pooling.input, name=f"{base.name}_conv")


def _feature_map_gradient(head, feature_map: np.ndarray, class_index: int) -> np.ndarray:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(feature_map)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            score = head(keras.ops.mean(tensor, axis=(1, 2)))[:, class_index]
        return tape.gradient(score, tensor).numpy()
    if backend == "jax":
        import jax

        def score(fmap):
            return head(keras.ops.mean(fmap, axis=(1, 2)))[:, class_index].sum()

        return np.asarray(jax.grad(score)(feature_map))
    raise NotImplementedError(f"Grad-CAM supports the tensorflow and jax backends, not {backend}")


def grad_cam(conv, head, batch: np.ndarray, class_index: int) -> np.ndarray:
    """Class activation maps for a preprocessed batch, at the input resolution.

    Parameters
    ----------
    conv : keras.Model
        Input images -> last convolutional feature map (N, h, w, C).
    head : callable
        Pooled features (N, C) -> class probabilities (N, classes), built from Keras layers.
    batch : numpy.ndarray, (N, H, W, 3)
        Preprocessed images.
    class_index : int
        The class whose evidence is mapped.

    Returns
    -------
    numpy.ndarray, (N, H, W)
        Maps scaled to 0..1 per image (all zero where the class has no positive evidence).
    """
    feature_map = np.asarray(conv.predict(batch, verbose=0), dtype=np.float32)
    gradient = _feature_map_gradient(head, feature_map, class_index)
    weights = gradient.mean(axis=(1, 2), keepdims=True)
    maps = np.maximum((weights * feature_map).sum(axis=-1), 0)
    height, width = batch.shape[1:3]
    resized = []
    for cam in maps:
        peak = cam.max()
        cam = cam / peak if peak > 0 else cam
        resized.append(np.asarray(Image.fromarray(cam.astype(np.float32)).resize((width, height), Image.BILINEAR)))
    return np.clip(np.stack(resized), 0, 1)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a 0..1 heatmap (jet colours) over an RGB uint8 image of the same size."""
    from matplotlib import colormaps

    colours = colormaps["jet"](cam)[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * colours, 0, 255).astype(np.uint8)


def check_explainable(model) -> None:
    """Refuse, before any work, a model whose head Grad-CAM cannot differentiate.

    Raises
    ------
    FeatxError
    """
    if model.manifest.finetuned is False and model.head.keras_model is None:
        raise FeatxError(f"explain needs a Keras head (softmax or mlpN-M); this model's head is {model.manifest.head}")


def explain(model, decoded, table, out_dir: Path) -> list[Path]:
    """Write a Grad-CAM overlay of the predicted class for each decoded image.

    Parameters
    ----------
    model : featx.models.predict.LoadedModel
    decoded : list of (Path, numpy.ndarray)
        Files and their letterboxed pixels.
    table : pandas.DataFrame
        The predictions (``file``, ``predicted``).
    out_dir : Path

    Returns
    -------
    list of Path
    """
    from featx.backbones.registry import preprocess

    check_explainable(model)
    head = model.keras_head()
    out_dir.mkdir(parents=True, exist_ok=True)
    conv = conv_model(model.base)
    predicted = dict(zip(table["file"], table["predicted"], strict=True))
    written = []
    for path, image in decoded:
        class_index = model.classes.index(predicted[str(path)])
        cam = grad_cam(conv, head, preprocess(model.spec, image[None]), class_index)[0]
        target = out_dir / f"{Path(path).stem}-gradcam-{predicted[str(path)]}.png"
        Image.fromarray(overlay(image, cam)).save(target)
        written.append(target)
    log.info("Grad-CAM overlays: %s (%d images)", out_dir, len(written))
    return written
