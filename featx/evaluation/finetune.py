"""Phase 3: unfreeze the layers past the backbone's cutoff and train end to end, per fold.

The first ``cutoff`` layers stay frozen; every BatchNorm layer stays in inference mode (its
moving statistics and scale never change: the base is called with ``training=False`` and, since
Keras 3 lets an outer ``training=True`` override that, BatchNorm layers are also made
non-trainable); the model is compiled after trainability is set.  Images stream from disk through a
``keras.utils.PyDataset`` that decodes in worker threads, so memory does not grow with the
dataset.  Out-of-fold probabilities land in the same result format as phase 2.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from featx import __version__
from featx.data import images
from featx.backbones.registry import build_base, cutoff_for, get_spec, preprocess
from featx.data.dataset import CLASSES
from featx.exceptions import FeatxError
from featx.fileio import write_text_atomic
from featx.heads.dense import dense_head, dense_layers, hidden_layers, is_keras_head, make_head
from featx.evaluation.results import load_result, result_path, save_result
from featx.evaluation.splits import fold_of_each_image, load_or_make_split, protocol_groups

PRECISIONS = ("float32", "mixed_bfloat16")
DEFAULT_LR = 1e-4


def image_batches(paths, labels, spec, input_size, batch_size: int, shuffle_seed=None, workers: int = 2):
    """A ``keras.utils.PyDataset`` of preprocessed images (and labels when given).

    Parameters
    ----------
    paths : sequence of str
    labels : numpy.ndarray of int or None
    spec : featx.backbones.BackboneSpec
    input_size : tuple of int
        (width, height).
    batch_size : int
    shuffle_seed : int, optional
        Shuffle the order at every epoch, reproducibly.
    workers : int
        Decoding threads.
    """
    import keras

    class ImageBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
            self.order = np.arange(len(paths))
            self.epoch = 0
            if shuffle_seed is not None:
                self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(paths) / batch_size)

        def __getitem__(self, index):
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            batch = preprocess(spec, np.stack([images.load(paths[i], input_size) for i in chosen]))
            return batch if labels is None else (batch, labels[chosen])

        def on_epoch_end(self):
            if shuffle_seed is not None:
                self.order = np.random.default_rng(shuffle_seed + self.epoch).permutation(len(paths))
                self.epoch += 1

    return ImageBatches()


def build_finetune_model(spec, input_size, weights, head: str, cutoff=None, precision: str = "float32"):
    """Backbone with the layers past ``cutoff`` trainable, and a dense head; compiled later.

    Returns
    -------
    model : keras.Model
    base : keras.Model
        The backbone inside ``model``.
    cutoff : int
        Layers ``base.layers[:cutoff]`` are frozen.
    provenance : dict
        Weights provenance.
    """
    import keras

    if precision not in PRECISIONS:
        raise FeatxError(f"Unknown --precision {precision!r}. Available: {', '.join(PRECISIONS)}")
    if not is_keras_head(head):
        raise FeatxError(f"Fine-tuning needs a Keras head (softmax or mlpN-M), got {head!r}")
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        base, provenance = build_base(spec, input_size, weights)
        cutoff = cutoff_for(spec, base) if cutoff is None else int(cutoff)
        if not 0 <= cutoff <= len(base.layers):
            raise FeatxError(f"--cutoff {cutoff} is outside 0..{len(base.layers)} for {spec.name}")
        for index, layer in enumerate(base.layers):
            # Keras 3 lets an outer training=True override the base's training=False
            # (keras-team/keras#20285); a non-trainable BatchNormalization always runs in
            # inference mode, so BatchNorm layers are frozen explicitly.
            layer.trainable = index >= cutoff and not isinstance(layer, keras.layers.BatchNormalization)
        width, height = input_size
        inputs = keras.Input(shape=(height, width, 3), name="image")
        features = base(inputs, training=False)  # BatchNorm stays in inference mode
        outputs = dense_head(features, hidden_layers(head), 0.5, len(CLASSES))
        model = keras.Model(inputs, outputs, name=f"{spec.name}_finetune")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return model, base, cutoff, provenance


def compile_model(model, learning_rate: float) -> None:
    """Compile (again) after trainability changed: Adam at a low learning rate."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")


def warm_start_head(model, head: str, features, labels, seed: int, params: dict) -> None:
    """Initialise ``model``'s head from the phase-2 head trained on cached features."""
    trained = make_head(head, random_state=seed, **params).fit(features, labels)
    for target, source in zip(dense_layers(model), dense_layers(trained.model_), strict=True):
        target.set_weights(source.get_weights())


def estimate_seconds(model, batches, steps_total: int) -> float:
    """Time one training step on the first batch and extrapolate to ``steps_total`` steps."""
    x, y = batches[0]
    model.train_on_batch(x, y)  # traces the step
    started = time.perf_counter()
    model.train_on_batch(x, y)
    return (time.perf_counter() - started) * steps_total


def finetune_variant(dataset, backbone: str, head: str = "paper", cutoff=None, weights: str = "imagenet",
                     input_size=images.DEFAULT_SIZE, group_by: str = "patient", folds: int = 10, seed: int = 0,
                     epochs: int = 10, batch_size: int = 64, learning_rate: float = DEFAULT_LR,
                     precision: str = "float32", warm_start: bool = False, cache_dir="cache", refit: bool = False,
                     progress: bool = True, log=sys.stderr) -> dict:
    """Fine-tune per fold and store out-of-fold probabilities in the phase-2 result format.

    Finished folds are checkpointed beside the result, so a killed run resumes at the next
    fold and (being seeded per fold) ends with the same numbers.

    Returns
    -------
    dict
        The result record's summary (see :func:`featx.evaluate.summary_of`).
    """
    from featx.evaluation.crossval import summary_of

    spec = get_spec(backbone)
    head = spec.paper_head if head == "paper" else head
    split, split_file = load_or_make_split(cache_dir, dataset, group_by, folds, seed)
    from featx.backbones.weights import fingerprint

    weights_info = fingerprint(spec, weights)
    variant = {
        "phase": 3, "backbone": backbone, "weights": weights_info["weights"], "input_size": list(input_size),
        "head": head, "head_params": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                                      "cutoff": cutoff, "precision": precision, "warm_start": warm_start},
        "sampler": "none", "protocol": group_by, "folds": folds, "seed": seed,
        "weights_sha256": weights_info["weights_sha256"], "preprocessing": spec.preprocessing,
        "dataset_id": dataset.id, "subset": dataset.subset, "split_file": str(split_file),
    }
    path = result_path(cache_dir, dataset.id, variant)
    if path.exists() and not refit:
        return summary_of(load_result(path), reused=True)
    checkpoint = path.with_name(path.stem + ".partial.json")
    done = json.loads(checkpoint.read_text()) if checkpoint.exists() and not refit else {}
    paths = dataset.table["path"].to_numpy()
    y = dataset.label_indices()
    fold = fold_of_each_image(split, dataset.table["image_id"])
    features = _cached_features(dataset, backbone, weights, input_size, cache_dir) if warm_start else None
    proba = np.zeros((len(y), len(CLASSES)))
    fit_seconds = []
    for k in range(folds):
        test = fold == k
        if str(k) in done:
            proba[test] = np.asarray(done[str(k)]["proba"])
            fit_seconds.append(done[str(k)]["seconds"])
            continue
        started = time.perf_counter()
        proba[test] = _run_fold(spec, head, cutoff, weights, input_size, paths, y, fold, k, seed, epochs, batch_size,
                                learning_rate, precision, features, progress, log)
        fit_seconds.append(time.perf_counter() - started)
        done[str(k)] = {"proba": proba[test].tolist(), "seconds": fit_seconds[-1]}
        write_text_atomic(checkpoint, json.dumps(done))
    variant["featx_version"] = __version__
    groups = protocol_groups(dataset, group_by)
    timings = {"fit_seconds": fit_seconds, "total_seconds": float(sum(fit_seconds))}
    save_result(path, variant, dataset.table["image_id"], y, proba, fold, groups, timings)
    checkpoint.unlink(missing_ok=True)
    return summary_of(load_result(path), reused=False)


def _cached_features(dataset, backbone, weights, input_size, cache_dir):
    from featx.features.store import collect_features
    from featx.exceptions import CacheError
    from featx.evaluation.crossval import extract_command
    from featx.features.extract import store_identity

    identity = store_identity(dataset, backbone, weights, input_size)
    features, missing, _ = collect_features(cache_dir, identity, dataset.table["content_hash"])
    if missing.any():
        raise CacheError("--warm-start trains the head on cached features first; make them with:\n  "
                         + extract_command(dataset, backbone, weights, input_size))
    return features


def _run_fold(spec, head, cutoff, weights, input_size, paths, y, fold, k, seed, epochs, batch_size, learning_rate,
              precision, features, progress, log):
    import keras

    train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)

    def fresh_model():
        keras.utils.set_random_seed(seed + k)
        model, base, first_trainable, _ = build_finetune_model(spec, input_size, weights, head, cutoff, precision)
        if features is not None:
            warm_start_head(model, head, features[train], y[train], seed, {})
        compile_model(model, learning_rate)
        return model, len(base.layers), first_trainable

    model, n_layers, first_trainable = fresh_model()
    batches = image_batches(paths[train], y[train], spec, input_size, batch_size, shuffle_seed=seed + k)
    if k == 0:
        n_folds = int(fold.max()) + 1
        estimate = estimate_seconds(model, batches, len(batches) * epochs * n_folds)
        print(f"fine-tuning {spec.name} past layer {first_trainable} of {n_layers}: about {estimate / 60:.0f} min "
              f"for {n_folds} folds x {epochs} epochs on this machine (timed first batch)", file=log, flush=True)
        model, _, _ = fresh_model()  # the timing step changed the weights
    model.fit(batches, epochs=epochs, verbose=2 if progress else 0)
    test_batches = image_batches(paths[test], None, spec, input_size, batch_size)
    return np.asarray(model.predict(test_batches, verbose=0), dtype=np.float64)
