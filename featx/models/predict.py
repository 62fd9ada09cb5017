"""Prediction with a saved model folder: decode, letterbox, backbone, head; every file gets a row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featx.backbones.registry import get_spec, preprocess
from featx.backbones.weights import build_base
from featx.data import images
from featx.data.dataset import IMAGE_SUFFIXES
from featx.exceptions import DatasetError, ImageDecodeError, ModelFolderError, ParameterError
from featx.fileio import write_csv
from featx.models.folder import ModelManifest, load_head, load_keras

log = logging.getLogger(__name__)


class LoadedModel:
    """A model folder ready to predict; nothing in it is executed (see :mod:`featx.models.folder`).

    Parameters
    ----------
    model_dir : str or Path

    Raises
    ------
    ModelFolderError
        When the folder is not a featx model, is damaged, or its backbone weights differ from
        those it was trained with.
    """

    def __init__(self, model_dir):
        self.model_dir = Path(model_dir)
        self.manifest = ModelManifest.read(self.model_dir)
        self.spec = get_spec(self.manifest.backbone)
        self.input_size = tuple(self.manifest.input_size)
        self.classes = list(self.manifest.classes)
        model_path = self.model_dir / self.manifest.model_file
        if self.manifest.finetuned:
            import keras

            self.keras_model = load_keras(model_path)
            self.base = next(layer for layer in self.keras_model.layers if isinstance(layer, keras.Model))
            self.head = None
        else:
            self.keras_model = None
            self.head = load_head(model_path)
            self.base, provenance = build_base(self.spec, self.input_size, self.manifest.weights_argument)
            if provenance["weights_sha256"] != self.manifest.weights_sha256:
                raise ModelFolderError(
                    f"{self.model_dir}: the backbone weights here ({provenance['weights_sha256'][:12] or 'none'}) "
                    f"differ from those the head was trained on ({self.manifest.weights_sha256[:12] or 'none'})"
                )

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) for letterboxed RGB uint8 images (N, H, W, 3)."""
        x = preprocess(self.spec, batch)
        if self.head is None:
            return np.asarray(self.keras_model.predict(x, verbose=0), dtype=np.float64)
        proba = self.head.predict_proba(np.asarray(self.base.predict(x, verbose=0)))
        full = np.zeros((len(proba), len(self.classes)))
        full[:, list(self.manifest.head_classes)] = proba
        return full

    def predict_images(self, pixels: list, batch_size: int) -> np.ndarray:
        """Class probabilities of letterboxed images (a list of (H, W, 3) uint8), ``batch_size`` at a time."""
        batches = [self.predict_proba(np.stack(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
        return np.concatenate(batches) if batches else np.zeros((0, len(self.classes)))

    def keras_head(self):
        """Pooled features -> probabilities as a Keras model, or None when the head is not Keras."""
        import keras

        if self.head is None:
            inputs = keras.Input(shape=(self.spec.feature_dim,))
            x = inputs
            for layer in self.keras_model.layers[2:]:
                x = layer(x)
            return keras.Model(inputs, x)
        return self.head.keras_model


def decode_each(paths, size) -> tuple[list, list]:
    """Letterbox every file that decodes; name every one that does not.

    Returns
    -------
    decoded : list of (int, numpy.ndarray)
        Position in ``paths`` and (H, W, 3) uint8 pixels of each decoded file.
    failures : list of (int, str)
        Position and reason of each file that cannot be decoded.
    """
    decoded, failures = [], []
    for position, path in enumerate(paths):
        try:
            decoded.append((position, images.load(path, size)))
        except ImageDecodeError as error:
            failures.append((position, error.reason))
    return decoded, failures


@dataclass(frozen=True)
class Predictions:
    """Predictions for a list of files.

    Attributes
    ----------
    table : pandas.DataFrame
        ``file``, ``p_<class>`` per class, ``predicted``, ``error`` (empty when predicted).
    failed : int
        Files that could not be predicted.
    explained : list of str
        Heatmap files written.
    """

    table: pd.DataFrame
    failed: int
    explained: list

    def to_json(self) -> dict:
        """Rows as records, with the counts."""
        return {
            "rows": self.table.to_dict(orient="records"),
            "files": len(self.table),
            "failed": self.failed,
            "explained": list(self.explained),
        }


def image_files(inputs) -> list[Path]:
    """Expand files and folders (recursively, image suffixes only) into a file list, in the order given.

    Raises
    ------
    DatasetError
        When an input does not exist or no image file is found.
    """
    files, missing = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            missing.append(str(item))
    if missing:
        raise DatasetError(f"{len(missing)} input(s) not found: {', '.join(missing)}")
    if not files:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return files


def predict_files(model_dir, inputs, *, out_csv=None, explain_dir=None, batch_size: int = 32) -> Predictions:
    """Predict every image; undecodable files get a row with their error, the rest still predict.

    Parameters
    ----------
    model_dir : str or Path
    inputs : sequence of str or Path
        Files and folders.
    out_csv : str or Path, optional
        Written atomically.
    explain_dir : str or Path, optional
        Write a heatmap PNG per image (Grad-CAM, CAM or occlusion, by the head; see :mod:`featx.models.explain`).
    batch_size : int

    Returns
    -------
    Predictions
    """
    from featx.models.explain import explain

    if int(batch_size) < 1:
        raise ParameterError("batch_size", batch_size, "must be >= 1")
    files = image_files(inputs)
    model = LoadedModel(model_dir)
    positions, failures = decode_each(files, model.input_size)
    decoded = [(files[position], image) for position, image in positions]
    rows = [{"file": str(files[position]), "error": reason} for position, reason in failures]
    proba = model.predict_images([image for _, image in decoded], batch_size)
    for (path, _), p in zip(decoded, proba, strict=True):
        row = {"file": str(path), **{f"p_{c}": float(v) for c, v in zip(model.classes, p, strict=True)}}
        rows.append({**row, "predicted": model.classes[int(np.argmax(p))], "error": ""})
    columns = ["file"] + [f"p_{c}" for c in model.classes] + ["predicted", "error"]
    table = pd.DataFrame(rows, columns=columns).fillna({"predicted": "", "error": ""})
    order = {str(path): index for index, path in enumerate(files)}
    table = table.sort_values("file", key=lambda s: s.map(order)).reset_index(drop=True)
    explained = [] if explain_dir is None else explain(model, decoded, table, Path(explain_dir))
    if out_csv is not None:
        write_csv(table, out_csv)
    return Predictions(table, int((table["error"] != "").sum()), [str(p) for p in explained])
