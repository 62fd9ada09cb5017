"""A heatmap for every model: where in the radiograph the evidence for the predicted class lies.

Three methods (:data:`METHODS`), chosen by the head's family (its ``explanation``, see
:mod:`featx.heads.family`):

- ``grad-cam`` (Keras MLP heads, fine-tuned models): the last convolutional feature map weighted
  by the gradient of the class score averaged over space;
- ``cam`` (linear heads: ``softmax``, ``logreg``): the class activation map, the feature map
  weighted by the head's own coefficients. For a linear function of average-pooled features this
  is exact, and equal to Grad-CAM of the same head;
- ``occlusion`` (tree and kernel heads: ``xgb``, ``rf``, ``svm``): how much the predicted class's
  probability drops when each patch of the image is blacked out; needs nothing but predictions.

The class score is the class's logit less the mean logit over classes: the softmax cannot tell the
two apart, and the centred score is positive for the predicted class, so its map shows where the
evidence for it lies even when every raw logit is negative. Every map is rectified, scaled to 0..1
per image and resized to the input. The gradient step is the one backend-specific piece:
TensorFlow uses a ``GradientTape``, JAX ``jax.grad``. A dense head's scores come from its kernels and
biases (:class:`featx.heads.fold_trainer.TrainedHead`, the arrays that predict), loaded into Keras
layers only for that gradient (:func:`score_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from featx.fileio import make_folder, replaced_atomically, safe_name
from featx.heads.dense import dense_head, load_into
from featx.heads.fold_trainer import TrainedHead

OCCLUSION_GRID = 8
log = logging.getLogger(__name__)


def method_for(model) -> str:
    """The explanation method of a loaded model (fine-tuned models: Grad-CAM), a key of :data:`METHODS`."""
    from featx.heads.registry import get_head

    return "grad-cam" if model.manifest.finetuned else get_head(model.manifest.head).family.explanation


def conv_model(base):
    """The backbone up to its last convolutional feature map (the layer before pooling)."""
    import keras

    pooling = base.layers[-1]
    return keras.Model(base.inputs, pooling.input, name=f"{base.name}_conv")


def score_model(head: TrainedHead):
    """A dense head's centred class scores (logits less their mean) as a Keras model of the pooled features,
    its layers loaded with ``head``'s kernels and biases (for the gradient through a backbone)."""
    import keras

    inputs = keras.Input(shape=(head.kernels[0].shape[0],))
    logits = dense_head(inputs, head.hidden, 0.0, head.n_classes, activation=None)
    model = keras.Model(inputs, logits - keras.ops.mean(logits, axis=-1, keepdims=True))
    load_into(model, head)
    return model


def _feature_map_gradient(scores, feature_map: np.ndarray, class_index: int) -> np.ndarray:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(feature_map)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            score = scores(keras.ops.mean(tensor, axis=(1, 2)))[:, class_index]
        return tape.gradient(score, tensor).numpy()
    if backend == "jax":
        import jax

        def score(fmap):
            return scores(keras.ops.mean(fmap, axis=(1, 2)))[:, class_index].sum()

        return np.asarray(jax.grad(score)(feature_map))
    raise NotImplementedError(f"Grad-CAM supports the tensorflow and jax backends, not {backend}")


def _to_input_size(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rectify, scale each map to 0..1 (all zero where nothing is positive), resize bilinearly."""
    resized = []
    for cam in np.maximum(maps, 0):
        peak = cam.max()
        cam = cam / peak if peak > 0 else cam
        resized.append(np.asarray(Image.fromarray(cam.astype(np.float32)).resize((width, height), Image.BILINEAR)))
    return np.clip(np.stack(resized), 0, 1)


def grad_cam(conv, head: TrainedHead, batch: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM maps for a preprocessed batch, at the input resolution.

    Parameters
    ----------
    conv : keras.Model
        Input images -> last convolutional feature map (N, h, w, C).
    head : TrainedHead
        Pooled features (N, C) -> class probabilities; its class scores before the softmax are used.
    batch : numpy.ndarray, (N, H, W, 3)
        Preprocessed images.
    class_index : int

    Returns
    -------
    numpy.ndarray, (N, H, W)
    """
    feature_map = np.asarray(conv.predict(batch, verbose=0), dtype=np.float32)
    gradient = _feature_map_gradient(score_model(head), feature_map, class_index)
    weights = gradient.mean(axis=(1, 2), keepdims=True)
    return _to_input_size((weights * feature_map).sum(axis=-1), *batch.shape[1:3])


def class_activation_map(conv, weights: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """CAM for a linear head: the feature map weighted by the class's coefficients on the pooled features.

    Parameters
    ----------
    conv : keras.Model
    weights : numpy.ndarray, (C,)
        The class score's coefficient on each pooled feature.
    batch : numpy.ndarray, (N, H, W, 3)
        Preprocessed images.
    """
    feature_map = np.asarray(conv.predict(batch, verbose=0), dtype=np.float32)
    return _to_input_size(feature_map @ np.asarray(weights, dtype=np.float32), *batch.shape[1:3])


def linear_weights(model, class_index: int) -> np.ndarray:
    """The coefficients of a linear head's centred class score on the raw pooled features.

    ``model`` is a :class:`featx.models.predict.LoadedModel` whose head is linear in the pooled features
    (a softmax head, a standardised logistic regression): its ``linear_scores()``, (head columns, C).
    """
    kernel = np.asarray(model.head.linear_scores(), dtype=np.float32)
    return kernel[list(model.manifest.head_classes).index(class_index)] - kernel.mean(axis=0)


def occlusion_map(predict_proba, image: np.ndarray, class_index: int, grid: int = OCCLUSION_GRID) -> np.ndarray:
    """How much the class's probability drops when each of ``grid`` x ``grid`` patches is blacked out.

    Parameters
    ----------
    predict_proba : callable
        Letterboxed RGB uint8 images (N, H, W, 3) -> class probabilities.
    image : numpy.ndarray, (H, W, 3) uint8
    class_index : int
    grid : int

    Returns
    -------
    numpy.ndarray, (H, W)
    """
    height, width = image.shape[:2]
    rows = np.linspace(0, height, grid + 1).astype(int)
    cols = np.linspace(0, width, grid + 1).astype(int)
    occluded = []
    for i in range(grid):
        for j in range(grid):
            copy = image.copy()
            copy[rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = 0
            occluded.append(copy)
    proba = predict_proba(np.stack([image, *occluded]))[:, class_index]
    drop = (proba[0] - proba[1:]).reshape(grid, grid)
    return _to_input_size(drop[None], height, width)[0]


def overlay(image: np.ndarray, cam: np.ndarray, label: str, alpha: float = 0.4) -> np.ndarray:
    """Blend a 0..1 heatmap (jet colours) over an RGB uint8 image and write the method's name on it."""
    from matplotlib import colormaps

    colours = colormaps["jet"](cam)[..., :3] * 255
    blended = Image.fromarray(np.clip((1 - alpha) * image + alpha * colours, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(blended)
    draw.rectangle((0, 0, 7 * len(label) + 6, 13), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return np.asarray(blended)


def _grad_cam_of(model, image: np.ndarray, class_index: int, conv) -> np.ndarray:
    return grad_cam(conv, model.dense_head(), model.image.scale(image[None]), class_index)[0]


def _cam_of(model, image: np.ndarray, class_index: int, conv) -> np.ndarray:
    return class_activation_map(conv, linear_weights(model, class_index), model.image.scale(image[None]))[0]


def _occlusion_of(model, image: np.ndarray, class_index: int, conv) -> np.ndarray:
    return occlusion_map(model.predict_proba, image, class_index)


@dataclass(frozen=True, kw_only=True)
class Method:
    """One explanation method.

    Attributes
    ----------
    label : str
        Written on the overlay.
    heatmap : callable
        ``heatmap(model, image, class_index, conv)`` -> (H, W) in 0..1 for a letterboxed image.
    uses_feature_map : bool
        Whether it reads the backbone's last feature map (``conv``, see :func:`conv_model`); default True.
    """

    label: str
    heatmap: Callable
    uses_feature_map: bool = True


METHODS = {
    "grad-cam": Method(label="Grad-CAM", heatmap=_grad_cam_of),
    "cam": Method(label="CAM", heatmap=_cam_of),
    "occlusion": Method(label="occlusion", heatmap=_occlusion_of, uses_feature_map=False),
}


def explanation(model, image: np.ndarray, class_index: int, conv=None) -> tuple[str, np.ndarray]:
    """The method and heatmap, (H, W) in 0..1, of one letterboxed image for ``class_index``
    (``conv``: the backbone to its last feature map, built here when None and the method reads it)."""
    name = method_for(model)
    method = METHODS[name]
    if conv is None and method.uses_feature_map:
        conv = conv_model(model.base)
    return name, method.heatmap(model, image, class_index, conv)


def explain(model, decoded, table, out_dir: Path) -> list[Path]:
    """Write an overlay PNG of the predicted class's heatmap for each decoded image.

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
        ``<stem>-<method>-<class>.png`` per image (made safe as a file name, see
        :func:`featx.fileio.safe_name`; ``-2``, ... when two inputs share a stem).
    """
    make_folder(out_dir)
    method = METHODS[method_for(model)]
    conv = conv_model(model.base) if method.uses_feature_map else None
    predicted = dict(zip(table["file"], table["predicted"], strict=True))
    written = []
    for path, image in decoded:
        name = predicted[str(path)]
        used, cam = explanation(model, image, model.classes.index(name), conv)
        target = _unused(out_dir, safe_name(f"{Path(path).stem}-{used}-{name}"), written)
        with replaced_atomically(target) as temporary:
            Image.fromarray(overlay(image, cam, f"{method.label}: {name}")).save(temporary, format="PNG")
        written.append(target)
    log.info("%s overlays: %s (%d images)", method.label, out_dir, len(written))
    return written


def _unused(out_dir: Path, stem: str, written: list) -> Path:
    """``out_dir/stem.png``, or ``stem-2.png``, ... when an image of this run already took it
    (two inputs of the same name in different folders)."""
    target, count = out_dir / f"{stem}.png", 1
    while target in written:
        count += 1
        target = out_dir / f"{stem}-{count}.png"
    return target
