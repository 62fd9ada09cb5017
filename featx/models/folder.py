"""The model folder: a manifest and one weights file, in formats that load without running code.

``featx-model.json`` records the backbone, its weights' provenance, the input size, the classes,
the head and the cross-validated metrics the model was chosen by. Beside it lies one file:

- ``head.keras``: a Keras dense head, loaded with ``safe_mode=True``;
- ``head.xgb.json``: an xgboost head in xgboost's own JSON format;
- ``head.skops``: a scikit-learn head in skops format, loaded only when every type it names
  is on :data:`TRUSTED_SKOPS_TYPES`;
- ``model.keras``: a fine-tuned backbone with its head, loaded with ``safe_mode=True``.

Nothing is ever unpickled: a folder that names any other file is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from featx.exceptions import ModelFolderError

MANIFEST = "featx-model.json"
FORMAT_VERSION = 1
FINETUNED_FILE = "model.keras"
HEAD_FILES = {"keras": "head.keras", "xgboost": "head.xgb.json", "skops": "head.skops"}
TRUSTED_SKOPS_TYPES = frozenset(
    {
        "featx.heads.classical.Standardized",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.tree._tree.Tree",
    }
)


@dataclass(frozen=True)
class ModelManifest:
    """What a model folder holds and how it was made.

    Attributes
    ----------
    backbone, weights, weights_argument, weights_sha256, weights_source : str
        The backbone and its weights (label, the argument that rebuilds them, their hash and file).
    input_size : tuple of int
        (width, height).
    preprocessing : str
    classes : tuple of str
        Class names, in the order of the model's probability columns.
    positive : str
        The class the binary figures (sensitivity, specificity, ...) are about.
    head, sampler : str
    finetuned : bool
    model_file : str
        The one weights file beside the manifest.
    head_classes : tuple of int
        Class index of each output column of the head (a head never trained on a class lacks its column).
    trained_on : str
    training_images : tuple of str
        Content hashes of the training images (so that validation can leave them out).
    cross_validation : dict
        The cross-validated metrics of the same variant (or a note saying there are none).
    featx_version : str
    format_version : int
    """

    backbone: str
    weights: str
    weights_argument: str
    weights_sha256: str
    weights_source: str
    input_size: tuple
    preprocessing: str
    classes: tuple
    positive: str
    head: str
    sampler: str
    finetuned: bool
    model_file: str
    head_classes: tuple
    trained_on: str
    training_images: tuple
    cross_validation: dict
    featx_version: str
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        """JSON-ready form (tuples as lists)."""
        return {
            **asdict(self),
            "input_size": list(self.input_size),
            "classes": list(self.classes),
            "head_classes": list(self.head_classes),
            "training_images": list(self.training_images),
        }

    @classmethod
    def read(cls, model_dir) -> ModelManifest:
        """Read and check ``model_dir``'s manifest.

        Raises
        ------
        ModelFolderError
            When the folder or manifest is missing, the JSON is damaged, a key is missing, the
            format is another version's, or the weights file it names is absent or not one
            featx loads.
        """
        model_dir = Path(model_dir)
        path = model_dir / MANIFEST
        if not path.is_file():
            raise ModelFolderError(f"{model_dir}: not a featx model folder (no {MANIFEST}); make one with featx train")
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ModelFolderError(f"{path}: damaged manifest ({error}); train the model again") from None
        if not isinstance(values, dict):
            raise ModelFolderError(f"{path}: damaged manifest (not a JSON object); train the model again")
        missing = [field.name for field in fields(cls) if field.name not in values]
        if missing:
            raise ModelFolderError(
                f"{path}: manifest lacks {', '.join(missing)}; it was not written by this featx, train the model again"
            )
        if values["format_version"] != FORMAT_VERSION:
            raise ModelFolderError(
                f"{path}: model folder format {values['format_version']!r}, this featx reads "
                f"{FORMAT_VERSION}; train the model again"
            )
        manifest = cls(
            **{
                **values,
                "input_size": tuple(values["input_size"]),
                "classes": tuple(values["classes"]),
                "head_classes": tuple(values["head_classes"]),
                "training_images": tuple(values["training_images"]),
            }
        )
        allowed = {FINETUNED_FILE} if manifest.finetuned else set(HEAD_FILES.values())
        if manifest.model_file not in allowed:
            raise ModelFolderError(
                f"{path}: names {manifest.model_file!r}; featx loads only {', '.join(sorted(allowed))} "
                "here and never unpickles a file (a pickle can run code)"
            )
        if not (model_dir / manifest.model_file).is_file():
            raise ModelFolderError(f"{model_dir}: the model file {manifest.model_file} is missing")
        return manifest


def head_file_format(model_file: str) -> str:
    """The format of a head file name (see :data:`HEAD_FILES`)."""
    return {name: file_format for file_format, name in HEAD_FILES.items()}[model_file]


def save_head(head, file_format: str, folder: Path) -> str:
    """Write a fitted head (the classifier itself, outside any sampler pipeline) in ``file_format``.

    Returns
    -------
    str
        The file name written inside ``folder``.
    """
    name = HEAD_FILES[file_format]
    if file_format == "keras":
        head.model_.save(folder / name)
    elif file_format == "xgboost":
        head.model_.save_model(folder / name)
    else:
        import skops.io

        skops.io.dump(head, folder / name)
    return name


class SavedHead:
    """A head loaded from a model folder: pooled features -> probabilities of its classes.

    Attributes
    ----------
    keras_model : keras.Model or None
        The Keras head (for Grad-CAM and CAM), None for other formats.
    estimator : object or None
        The scikit-learn head loaded from skops (for CAM of a linear head), None for other formats.
    """

    def __init__(self, predict_proba, keras_model=None, estimator=None):
        self._predict_proba = predict_proba
        self.keras_model = keras_model
        self.estimator = estimator

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probabilities, one column per class the head was trained on."""
        return np.asarray(self._predict_proba(features), dtype=np.float64)


def load_head(path: Path) -> SavedHead:
    """Load a head file safely.

    Raises
    ------
    ModelFolderError
        When the file is unreadable, of the wrong kind, or (skops) names a type outside the trusted list.
    """
    file_format = head_file_format(path.name)
    try:
        if file_format == "keras":
            model = load_keras(path)
            return SavedHead(lambda x: model.predict(x, verbose=0), model)
        if file_format == "xgboost":
            from xgboost import XGBClassifier

            booster = XGBClassifier()
            booster.load_model(path)
            return SavedHead(booster.predict_proba)
        estimator = _load_skops(path)
        return SavedHead(estimator.predict_proba, estimator=estimator)
    except ModelFolderError:
        raise
    except Exception as error:  # each format's loader raises its own types for a bad file
        raise ModelFolderError(
            f"{path}: cannot be loaded as a {file_format} head ({type(error).__name__}: {error})"
        ) from None


def load_keras(path: Path):
    """A ``.keras`` model loaded with ``safe_mode=True`` (no code from the file is run)."""
    import keras

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _load_skops(path: Path):
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(file=path))
    refused = sorted(untrusted - TRUSTED_SKOPS_TYPES)
    if refused:
        raise ModelFolderError(f"{path}: refused, it names types featx does not trust: {', '.join(refused)}")
    return skops.io.load(path, trusted=sorted(untrusted))


def check_target(model_dir) -> None:
    """Refuse to write a model into a folder that holds anything but an earlier featx model.

    Raises
    ------
    ModelFolderError
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and (
        not model_dir.is_dir() or (any(model_dir.iterdir()) and not (model_dir / MANIFEST).is_file())
    ):
        raise ModelFolderError(f"{model_dir}: exists and is not a featx model folder; choose another model folder")


def write_folder(model_dir, manifest_for, write_model) -> ModelManifest:
    """Write a model folder so that it appears whole or not at all.

    ``write_model(temporary_folder)`` writes the weights file and returns its name;
    ``manifest_for(file_name)`` makes the manifest. Both go to a temporary folder beside
    ``model_dir``, which then replaces it.
    """
    model_dir = Path(model_dir)
    check_target(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    building = model_dir.with_name(f".{model_dir.name}.{os.getpid()}.tmp")
    old = model_dir.with_name(f".{model_dir.name}.{os.getpid()}.old")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        manifest = manifest_for(write_model(building))
        (building / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, default=str))
        if model_dir.exists():
            os.replace(model_dir, old)
        os.replace(building, model_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return manifest
