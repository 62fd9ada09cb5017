"""Prediction with a saved model folder: decode, letterbox, backbone, head; every file gets a row.

Files become pixels exactly as the model's training rows did: by the image record its manifest
holds (input size, decoder, mask, preprocessing), through phase 1's decode pool and, where a cache
folder is given, its pixel cache (see :func:`featx.features.pixels.hold_pixels`); a head on frozen
features gets them from the same uint8-in model, in the same runtime and precision, that computed
its training rows (:class:`featx.features.forward.Forward`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featx.backbones.registry import get_spec
from featx.backbones.weights import build_base, fingerprint
from featx.data.dataset import IMAGE_SUFFIXES, visible_files
from featx.data.images import as_rgb
from featx.exceptions import DatasetError, FileSystemError, ModelFolderError, ParameterError
from featx.features.forward import Forward, batch_memory
from featx.features.identity import ImageRecord
from featx.features.pixels import hold_pixels
from featx.features.runtime import runnable_here
from featx.features.store import DimensionStatistics, FeatureHealth
from featx.fileio import sha256_file, write_csv
from featx.heads.dense import trained_head_of
from featx.heads.fold_trainer import TrainedHead
from featx.heads.registry import get_head
from featx.limits import check_memory
from featx.models.folder import MANIFEST, ModelManifest, load_head, load_keras

log = logging.getLogger(__name__)


class LoadedModel:
    """A model folder ready to predict; nothing in it is executed (see :mod:`featx.models.folder`).

    A head on frozen features gets them through :class:`featx.features.forward.Forward` in the runtime
    and precision of the store it was trained on (recorded in the manifest): the code that computed
    its training rows, so the model that predicts is the model that was validated. Where that runtime
    cannot run here, Keras computes them, said in one line (see :func:`featx.features.runtime.runnable_here`).

    Parameters
    ----------
    model_dir : str or Path
    batch_size : int
        Images through the backbone at once; default 32 (``extract``'s, whose padded batch shape the
        features were computed at).

    Attributes
    ----------
    image : ImageRecord
        How files become this model's input: the record it was trained with (see
        :attr:`featx.models.folder.ModelManifest.image`).
    features : FeatureSpec or None
        What computes a head's input here (None for a fine-tuned model): the manifest's, or Keras'
        where its runtime cannot run here.
    computed : DimensionStatistics or None
        Per-dimension statistics of every feature row computed so far (None for a fine-tuned model):
        what :attr:`health` is judged from.

    Raises
    ------
    ModelFolderError
        When the folder is not a featx model, is damaged, its model's output columns are not the
        classes its manifest names, or its backbone weights differ from those it was trained with.
    """

    def __init__(self, model_dir, batch_size: int = 32):
        self.model_dir = Path(model_dir)
        self.manifest = ModelManifest.read(self.model_dir)
        self.backbone_spec = get_spec(self.manifest.backbone)
        self.image = self.manifest.image
        self.input_size = self.image.input_size
        self.classes = list(self.manifest.classes)
        self.batch_size = int(batch_size)
        model_path = self.manifest.path_in(self.model_dir)
        if self.manifest.finetuned:
            self.keras_model = load_keras(model_path)
            self.head = None
            self.features = self.computed = None
            self._check_columns(model_path, self.keras_model.output_shape[-1], len(self.classes), "classes")
        else:
            self.keras_model = None
            self.head = load_head(model_path, get_head(self.manifest.head))
            try:
                columns = self.head.predict_proba(
                    np.zeros((1, self.backbone_spec.feature_dim), dtype=np.float32)
                ).shape[1]
            except ValueError as error:  # each head's library words a wrong width its own way
                raise ModelFolderError(
                    f"{model_path}: the head does not take the {self.backbone_spec.feature_dim} features of "
                    f"{self.manifest.backbone} ({error}); the manifest does not belong to this model"
                ) from None
            self._check_columns(model_path, columns, len(self.manifest.head_classes), "head_classes")
            provenance = fingerprint(
                self.backbone_spec, self.manifest.weights_argument
            )  # checked before Keras reads it
            if provenance.weights_sha256 != self.manifest.weights_sha256:
                raise ModelFolderError(
                    f"{self.model_dir}: the backbone weights here ({provenance.weights_sha256[:12] or 'none'}, "
                    f"{provenance.weights_source}) differ from those the head was trained on "
                    f"({self.manifest.weights_sha256[:12] or 'none'})"
                )
            self.features = runnable_here(self.manifest.features)
            self.computed = DimensionStatistics(self.backbone_spec.feature_dim)

    @functools.cached_property
    def forward(self) -> Forward:
        """The backbone in :attr:`features`' runtime, for uint8 pixels (built on first use)."""
        return Forward(self.features, self.batch_size)

    @functools.cached_property
    def base(self):
        """The Keras backbone (pooled features out): the fine-tuned model's own, or the weights the head was
        trained on, built on first use (Grad-CAM and CAM read its feature map)."""
        import keras

        if self.manifest.finetuned:
            return next(layer for layer in self.keras_model.layers if isinstance(layer, keras.Model))
        return build_base(self.backbone_spec, self.input_size, self.manifest.weights_argument)[0]

    @property
    def health(self) -> FeatureHealth | None:
        """The health of the features computed so far (see :class:`featx.features.store.FeatureHealth`); None
        for a fine-tuned model or before any: degenerate features make every figure of it meaningless."""
        return None if self.computed is None or not self.computed.rows else self.computed.health()

    def _check_columns(self, model_path: Path, columns: int, named: int, field: str) -> None:
        if columns != named:
            raise ModelFolderError(
                f"{model_path}: the model has {columns} output columns but {self.model_dir / MANIFEST} names "
                f"{named} {field} ({len(self.classes)} classes); the manifest does not belong to this model"
            )

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) for letterboxed RGB uint8 images (N, H, W, 3).

        Raises
        ------
        ModelFolderError
            When the model yields a probability that is NaN or infinite (its training diverged).
        """
        if self.head is None:
            full = np.asarray(self.keras_model.predict(self.image.scale(batch), verbose=0), dtype=np.float64)
        else:
            features = self.forward.features_of(batch)
            self.computed.add(features)
            proba = self.head.predict_proba(features)
            full = np.zeros((len(proba), len(self.classes)))
            full[:, list(self.manifest.head_classes)] = proba
        if not np.isfinite(full).all():
            raise ModelFolderError(
                f"{self.model_dir}: the model yields non-finite probabilities (its training diverged); "
                "train it again with a lower --lr"
            )
        return full

    def check_memory(self, images: int) -> None:
        """Refuse, before decoding, a request that needs more memory than is available: ``images``
        letterboxed images held at once, and a batch of :attr:`batch_size` through the backbone.

        Raises
        ------
        ResourceError
        """
        width, height = self.input_size
        batch = min(images, self.batch_size)
        check_memory(
            images * width * height * 3 + batch_memory(batch, self.input_size),
            f"predicting {images} images at the model's input size {width}x{height} in batches of {batch}",
            "use a smaller --batch-size or fewer images at once",
        )

    def predict_images(self, pixels: list) -> np.ndarray:
        """Class probabilities of letterboxed images (a list of (H, W, 3) uint8), :attr:`batch_size` at a time."""
        size = self.batch_size
        batches = [self.predict_proba(np.stack(pixels[i : i + size])) for i in range(0, len(pixels), size)]
        return np.concatenate(batches) if batches else np.zeros((0, len(self.classes)))

    def dense_head(self) -> TrainedHead:
        """The kernels and biases of a dense head (pooled features -> probabilities): the saved head, or a
        fine-tuned model's own head layers. Only for a model explained by Grad-CAM or a softmax head's CAM."""
        return trained_head_of(self.keras_model) if self.manifest.finetuned else self.head


def read_pixels(paths, image: ImageRecord, content_hashes=None, *, cache_dir=None) -> tuple[list, list]:
    """Letterbox every file that decodes as ``image`` says; name every one that does not.

    Parameters
    ----------
    paths : sequence of str or Path
    image : ImageRecord
        The model's (:attr:`LoadedModel.image`).
    content_hashes : sequence of str, optional
        One per file, when known (a dataset's); default: hashed here, a file that cannot be read
        failing with the reason.
    cache_dir : str or Path, optional
        Read and keep the pixels in this cache folder's pixel cache; default none.

    Returns
    -------
    decoded : list of (int, numpy.ndarray)
        Position in ``paths`` and (H, W, 3) uint8 pixels of each decoded file.
    failures : list of (int, str)
        Position and reason of each file that cannot be decoded.
    """
    paths = [str(path) for path in paths]
    if content_hashes is None:
        known, failures = _readable_hashes(paths)
    else:
        known, failures = dict(enumerate(content_hashes)), []
    readable = list(known)
    held = hold_pixels([paths[p] for p in readable], list(known.values()), image, cache_dir=cache_dir)
    decoded = [(readable[row], as_rgb(pixels)) for row, pixels in zip(held.positions, held.images, strict=True)]
    failures += [(readable[row], reason) for row, reason in held.failures]
    return decoded, sorted(failures)


def _readable_hashes(paths) -> tuple[dict, list]:
    """The content hash of each file that can be read, by position; the position and reason of each that cannot."""
    hashes, failures = {}, []
    for position, path in enumerate(paths):
        try:
            hashes[position] = sha256_file(path)
        except FileSystemError as error:
            failures.append((position, f"cannot be read ({error.cause})"))
    return hashes, failures


@dataclass(frozen=True, kw_only=True)
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
            files += sorted(visible_files(item))
        elif item.is_file():
            files.append(item)
        else:
            missing.append(str(item))
    if missing:
        raise DatasetError(f"{len(missing)} input(s) not found: {', '.join(missing)}")
    if not files:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return files


def predict_files(
    model_dir, inputs, *, out_csv=None, explain_dir=None, batch_size: int = 32, cache_dir=None
) -> Predictions:
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
    cache_dir : str or Path, optional
        Keep the letterboxed pixels in this cache folder's pixel cache (a repeated prediction decodes
        nothing); default: decode every file, keep nothing.

    Returns
    -------
    Predictions
    """
    from featx.models.explain import explain

    if int(batch_size) < 1:
        raise ParameterError("batch_size", batch_size, "must be >= 1")
    files = image_files(inputs)
    model = LoadedModel(model_dir, batch_size)
    model.check_memory(len(files))
    positions, failures = read_pixels(files, model.image, cache_dir=cache_dir)
    decoded = [(files[position], image) for position, image in positions]
    rows = [{"file": str(files[position]), "error": reason} for position, reason in failures]
    proba = model.predict_images([image for _, image in decoded])
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
    return Predictions(table=table, failed=int((table["error"] != "").sum()), explained=[str(p) for p in explained])
