"""Final models: train on all the data, save a model folder, predict and explain new radiographs.

A model folder holds ``featx-model.json`` (backbone, weights provenance, input size,
preprocessing, class names, the cross-validated metrics the model was chosen by) and either
``head.joblib`` (a head on frozen backbone features) or ``model.keras`` (a fine-tuned model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage

from featx import __version__
from featx.data import images
from featx.backbones.registry import build_base, get_spec, preprocess
from featx.data.dataset import CLASSES, IMAGE_SUFFIXES
from featx.exceptions import FeatxError, ImageDecodeError
from featx.fileio import write_text_atomic

MANIFEST = "featx-model.json"


def _cv_metrics(summary: dict) -> dict:
    keys = ("accuracy_3class", "accuracy_2class", "sensitivity", "specificity", "auc_covid", "ci95", "protocol",
            "result_file")
    return {key: summary[key] for key in keys}


def train_model(dataset, backbone: str, head: str, model_dir, weights: str = "imagenet",
                input_size=images.DEFAULT_SIZE, sampler: str = "none", finetune: bool = False, epochs: int = 10,
                batch_size: int = 64, learning_rate=None, group_by: str = "patient", folds: int = 10, seed: int = 0,
                cache_dir="cache", progress: bool = True) -> dict:
    """Cross-validate the variant (reusing a stored result), then train it on every image and save.

    For fine-tuned models the cross-validation is the phase-3 result of the same settings if
    one is stored (fine-tuning every fold is hours on a CPU); otherwise the manifest says so.

    Returns
    -------
    dict
        The manifest written to ``model_dir``.
    """
    import joblib

    from featx.evaluation.crossval import fit_variant
    from featx.features.extract import extract
    from featx.backbones.weights import fingerprint

    spec = get_spec(backbone)
    head = spec.paper_head if head == "paper" else head
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "featx_version": __version__, "backbone": backbone, "weights_arg": weights, **fingerprint(spec, weights),
        "input_size": list(input_size), "preprocessing": spec.preprocessing, "classes": list(CLASSES),
        "head": head, "sampler": sampler, "finetuned": finetune, "trained_on": dataset.describe(),
    }
    if finetune:
        manifest["cross_validation"] = _stored_finetune_cv(dataset, backbone, head, weights, input_size, group_by,
                                                          folds, seed, epochs, batch_size, learning_rate, cache_dir)
        _train_finetuned(dataset, spec, head, weights, input_size, epochs, batch_size, learning_rate, seed,
                         model_dir, progress)
    else:
        extract(dataset, backbone, weights, input_size, cache_dir=cache_dir, progress=progress)
        summary = fit_variant(dataset, backbone, head, sampler, weights, input_size, group_by, folds, seed, cache_dir,
                              epochs=None if epochs == 10 else epochs, learning_rate=learning_rate, progress=progress)
        manifest["cross_validation"] = _cv_metrics(summary)
        estimator = _fit_head_on_all(dataset, backbone, head, sampler, weights, input_size, seed, cache_dir, summary)
        joblib.dump(estimator, model_dir / "head.joblib")
    write_text_atomic(model_dir / MANIFEST, json.dumps(manifest, indent=1, default=str))
    return manifest


def _fit_head_on_all(dataset, backbone, head, sampler, weights, input_size, seed, cache_dir, summary):
    from featx.features.store import collect_features
    from featx.features.extract import store_identity
    from featx.heads.dense import make_head
    from featx.heads.sampling import with_strategy

    identity = store_identity(dataset, backbone, weights, input_size)
    features, _, _ = collect_features(cache_dir, identity, dataset.table["content_hash"])
    params = summary["variant"]["head_params"]
    estimator = with_strategy(make_head(head, random_state=seed, **params), sampler, seed)
    return estimator.fit(features, dataset.label_indices())


def _stored_finetune_cv(dataset, backbone, head, weights, input_size, group_by, folds, seed, epochs, batch_size,
                        learning_rate, cache_dir):
    from featx.evaluation.crossval import summary_of
    from featx.evaluation.results import list_results

    for result in list_results(cache_dir, dataset.id):
        variant = result["variant"]
        if (variant["phase"], variant["backbone"], variant["head"], variant["protocol"]) == (3, backbone, head, group_by) \
                and variant["head_params"]["epochs"] == epochs:
            return _cv_metrics(summary_of(result, reused=True))
    return {"note": "not cross-validated: run `cli.py finetune` with the same settings first to get CV metrics"}


def _train_finetuned(dataset, spec, head, weights, input_size, epochs, batch_size, learning_rate, seed, model_dir,
                     progress):
    import keras

    from featx.evaluation.finetune import DEFAULT_LR, build_finetune_model, compile_model, image_batches

    keras.utils.set_random_seed(seed)
    model, _base, _cutoff, _ = build_finetune_model(spec, input_size, weights, head)
    compile_model(model, learning_rate or DEFAULT_LR)
    batches = image_batches(dataset.table["path"].to_numpy(), dataset.label_indices(), spec, input_size, batch_size,
                            shuffle_seed=seed)
    model.fit(batches, epochs=epochs, verbose=2 if progress else 0)
    model.save(model_dir / "model.keras")


class LoadedModel:
    """A model folder ready to predict.

    Parameters
    ----------
    model_dir : str or Path

    Raises
    ------
    FeatxError
        When the folder is not a featx model or its weights differ from those it was trained with.
    """

    def __init__(self, model_dir):
        self.model_dir = Path(model_dir)
        manifest_path = self.model_dir / MANIFEST
        if not manifest_path.exists():
            raise FeatxError(f"{self.model_dir}: not a featx model folder (no {MANIFEST}); make one with `cli.py train`")
        self.manifest = json.loads(manifest_path.read_text())
        self.spec = get_spec(self.manifest["backbone"])
        self.input_size = tuple(self.manifest["input_size"])
        self.classes = self.manifest["classes"]
        if self.manifest["finetuned"]:
            import keras

            self.keras_model = keras.saving.load_model(self.model_dir / "model.keras")
            self.base = next(layer for layer in self.keras_model.layers if isinstance(layer, keras.Model))
            self.head = None
        else:
            import joblib

            self.head = joblib.load(self.model_dir / "head.joblib")
            self.base, provenance = build_base(self.spec, self.input_size, self.manifest["weights_arg"])
            if provenance["weights_sha256"] != self.manifest["weights_sha256"]:
                raise FeatxError(f"{self.model_dir}: the backbone weights here ({provenance['weights_sha256'][:12]}) "
                                 f"differ from those the head was trained on ({self.manifest['weights_sha256'][:12]})")

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for letterboxed RGB uint8 images (N, H, W, 3)."""
        x = preprocess(self.spec, batch)
        if self.head is None:
            return np.asarray(self.keras_model.predict(x, verbose=0), dtype=np.float64)
        features = np.asarray(self.base.predict(x, verbose=0))
        return self.head.predict_proba(features)

    def keras_head(self):
        """Pooled features -> probabilities as a Keras callable, or None if the head is not Keras."""
        import keras

        if self.head is None:
            inputs = keras.Input(shape=(self.spec.feature_dim,))
            x = inputs
            for layer in self.keras_model.layers[2:]:
                x = layer(x)
            return keras.Model(inputs, x)
        estimator = self.head.steps[-1][1]
        estimator = getattr(estimator, "estimator_", estimator)
        return getattr(estimator, "model_", None)


def image_files(inputs) -> list[Path]:
    """Expand files and folders (recursively, image suffixes only) into a sorted file list."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def predict_files(model_dir, inputs, out_csv=None, explain_dir=None, batch_size: int = 32) -> pd.DataFrame:
    """Predict every image; undecodable files get a row with their error, the rest still predict.

    Parameters
    ----------
    model_dir : str or Path
    inputs : sequence of str or Path
        Files and folders.
    out_csv : str or Path, optional
    explain_dir : str or Path, optional
        Write a Grad-CAM overlay PNG per image (Keras heads only).

    Returns
    -------
    pandas.DataFrame
        Columns ``file``, ``p_<class>`` for each class, ``predicted``, ``error``.
    """
    model = LoadedModel(model_dir)
    files = image_files(inputs)
    rows = []
    decoded = []
    for path in files:
        try:
            decoded.append((path, images.load(path, model.input_size)))
        except ImageDecodeError as error:
            rows.append({"file": str(path), "error": error.reason})
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start:start + batch_size]
        proba = model.predict_proba(np.stack([image for _, image in chunk]))
        for (path, _), p in zip(chunk, proba):
            row = {"file": str(path), **{f"p_{c}": float(v) for c, v in zip(model.classes, p)}}
            rows.append({**row, "predicted": model.classes[int(np.argmax(p))], "error": ""})
    columns = ["file"] + [f"p_{c}" for c in model.classes] + ["predicted", "error"]
    table = pd.DataFrame(rows, columns=columns).fillna({"predicted": "", "error": ""})
    order = {str(path): index for index, path in enumerate(files)}
    table = table.sort_values("file", key=lambda s: s.map(order)).reset_index(drop=True)
    if explain_dir is not None:
        explain(model, decoded, table, Path(explain_dir))
    if out_csv is not None:
        write_text_atomic(out_csv, table.to_csv(index=False))
    return table


def explain(model: LoadedModel, decoded, table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write a Grad-CAM overlay of the predicted class for each decoded image."""
    from featx.models.explain import conv_model, grad_cam, overlay

    head = model.keras_head()
    if head is None:
        raise FeatxError(f"--explain needs a Keras head (softmax or mlpN-M); this model's head is "
                         f"{model.manifest['head']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    conv = conv_model(model.base)
    predicted = dict(zip(table["file"], table["predicted"]))
    written = []
    for path, image in decoded:
        class_index = model.classes.index(predicted[str(path)])
        cam = grad_cam(conv, head, preprocess(model.spec, image[None]), class_index)[0]
        target = out_dir / f"{Path(path).stem}-gradcam-{predicted[str(path)]}.png"
        PILImage.fromarray(overlay(image, cam)).save(target)
        written.append(target)
    print(f"Grad-CAM overlays: {out_dir} ({len(written)} images)", file=sys.stderr)
    return written
