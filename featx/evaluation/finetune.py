"""Phase 3: unfreeze the layers past the backbone's cutoff and train end to end, per fold.

The first ``cutoff`` layers stay frozen; every BatchNorm layer stays in inference mode (its
moving statistics and scale never change: the base is called with ``training=False`` and, since
Keras 3 lets an outer ``training=True`` override that, BatchNorm layers are also made
non-trainable); the model is compiled after trainability is set. Images reach the model as they
reach phase 1's: by the variant's image record (input size, decoder, mask, preprocessing), through
the decode pool and the pixel cache of the run's cache folder (:func:`featx.features.pixels.hold_pixels`),
so a second run, or a run over images phase 1 has letterboxed, decodes nothing. The letterboxed
pixels are held in memory (one channel for grayscale radiographs) and scaled batch by batch.
Out-of-fold probabilities land in the same result format as phase 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from featx import limits
from featx.backbones.registry import cutoff_for
from featx.backbones.weights import PRECISIONS, WeightsProvenance, build_base
from featx.evaluation.crossval import FoldsRun, cross_validate
from featx.evaluation.results import Timings, read_checkpoint, result_path
from featx.evaluation.splits import Protocol
from featx.evaluation.summary import CVSummary
from featx.evaluation.variant import Variant
from featx.exceptions import DatasetError, DivergedError, ParameterError, UnknownNameError
from featx.features.forward import check_batch_memory
from featx.features.identity import FeatureSpec, ImageRecord
from featx.features.pixels import HeldPixels, hold_pixels
from featx.features.store import load_features
from featx.fileio import write_text_atomic
from featx.heads.dense import dense_head, hidden_layers, is_dense_name, load_into
from featx.heads.family import check_finite
from featx.heads.registry import get_head, make_head

DEFAULT_LR = 1e-4
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FinetuneRecipe:
    """How to fine-tune a backbone with a dense head.

    Attributes
    ----------
    head : str
        A dense head: ``softmax`` or ``mlpN[-M...]``.
    cutoff : int or None
        First trainable layer of the backbone; None is the paper's cutoff.
    epochs, batch_size : int
    learning_rate : float
        Adam's learning rate (low: the unfrozen layers start from ImageNet weights).
    precision : str
        ``float32`` or ``mixed_bfloat16``.
    warm_start : bool
        Initialise the head from the phase-2 head trained on cached features of the same fold.
    """

    head: str
    cutoff: int | None = None
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = DEFAULT_LR
    precision: str = "float32"
    warm_start: bool = False

    def __post_init__(self):
        if not is_dense_name(self.head):
            raise ParameterError("head", self.head, "must be a dense head (softmax or mlpN-M) to fine-tune")
        get_head(self.head)  # hidden widths in range
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        for name in ("epochs", "batch_size", "learning_rate", "cutoff"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, limits.check(name, getattr(self, name)))

    @property
    def sampler(self) -> str:
        """Fine-tuning trains on each fold as it is."""
        return "none"

    def params(self) -> dict:
        """Every setting but the head, by name."""
        settings = asdict(self)
        settings.pop("head")
        return settings


@dataclass(frozen=True, kw_only=True)
class FinetuneModel:
    """A backbone with its layers past the cutoff trainable, and a dense head (compiled later).

    Attributes
    ----------
    model : keras.Model
    base : keras.Model
        The backbone inside ``model``.
    cutoff : int
        Layers ``base.layers[:cutoff]`` are frozen.
    provenance : WeightsProvenance
        Weights provenance.
    """

    model: object
    base: object
    cutoff: int
    provenance: WeightsProvenance


def dataset_pixels(dataset, image: ImageRecord, cache_dir) -> HeldPixels:
    """Every image of ``dataset`` letterboxed as ``image`` says, read from (or kept in) ``cache_dir``'s pixel cache.

    Raises
    ------
    ResourceError
        When the letterboxed images would not fit in memory.
    DatasetError
        Naming each image that cannot be decoded (fine-tuning trains on every image of its folds).
    """
    width, height = image.input_size
    limits.check_memory(
        len(dataset) * width * height * 3,
        f"holding {len(dataset)} letterboxed images at {width}x{height}",
        "use a smaller --input-size or --subset",
    )
    held = hold_pixels(dataset.table["path"], dataset.table["content_hash"], image, cache_dir=cache_dir)
    if held.failures:
        listed = "; ".join(f"{dataset.table['image_id'].iat[p]}: {reason}" for p, reason in held.failures)
        raise DatasetError(f"{dataset.root}: {len(held.failures)} image(s) cannot be decoded: {listed}")
    return held


def image_batches(pixels: HeldPixels, rows, labels, image: ImageRecord, batch_size: int, *, shuffle_seed=None):
    """A ``keras.utils.PyDataset`` of the model inputs of held images (and their labels when given).

    Parameters
    ----------
    pixels : HeldPixels
        Letterboxed images (see :func:`dataset_pixels`).
    rows : numpy.ndarray of int
        The images to serve, as indices into ``pixels.images``.
    labels : numpy.ndarray of int or None
        One per entry of ``rows``.
    image : ImageRecord
        Its preprocessing scales each batch.
    batch_size : int
    shuffle_seed : int, optional
        Shuffle the order at every epoch, reproducibly.
    """
    import keras

    rows = np.asarray(rows)

    class ImageBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.arange(len(rows))
            self.epoch = 0
            if shuffle_seed is not None:
                self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(rows) / batch_size)

        def __getitem__(self, index):
            chosen = self.order[index * batch_size : (index + 1) * batch_size]
            batch = image.scale(pixels.rgb(rows[chosen]))
            return batch if labels is None else (batch, labels[chosen])

        def on_epoch_end(self):
            if shuffle_seed is not None:
                self.order = np.random.default_rng(shuffle_seed + self.epoch).permutation(len(rows))
                self.epoch += 1

    return ImageBatches()


def build_finetune_model(feature_spec: FeatureSpec, recipe: FinetuneRecipe, n_classes: int) -> FinetuneModel:
    """The backbone of ``feature_spec`` with ``recipe``'s head for ``n_classes`` classes, frozen up to the cutoff.

    Raises
    ------
    ParameterError
        When the cutoff lies outside the backbone.
    """
    import keras

    keras.mixed_precision.set_dtype_policy(recipe.precision)
    try:
        base, weights_provenance = build_base(feature_spec.backbone_spec, feature_spec.input_size, feature_spec.weights)
        cutoff = cutoff_for(feature_spec.backbone_spec, base) if recipe.cutoff is None else int(recipe.cutoff)
        if cutoff > len(base.layers):
            raise ParameterError("cutoff", cutoff, f"must be within 0..{len(base.layers)} for {feature_spec.backbone}")
        for index, layer in enumerate(base.layers):
            # Keras 3 lets an outer training=True override the base's training=False
            # (keras-team/keras#20285); a non-trainable BatchNormalization always runs in
            # inference mode, so BatchNorm layers are frozen explicitly.
            layer.trainable = index >= cutoff and not isinstance(layer, keras.layers.BatchNormalization)
        width, height = feature_spec.input_size
        inputs = keras.Input(shape=(height, width, 3), name="image")
        pooled = base(inputs, training=False)  # BatchNorm stays in inference mode
        outputs = dense_head(pooled, hidden_layers(recipe.head), 0.5, n_classes)
        model = keras.Model(inputs, outputs, name=f"{feature_spec.backbone}_finetune")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return FinetuneModel(model=model, base=base, cutoff=cutoff, provenance=weights_provenance)


def compile_model(model, learning_rate: float) -> None:
    """Compile (again) after trainability changed: Adam at a low learning rate."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")


def warm_start_head(model, head: str, features, labels, seed: int) -> None:
    """Initialise ``model``'s head from the phase-2 head trained on cached features."""
    load_into(model, make_head(head, random_state=seed).fit(features, labels).trained_)


def fit_model(model, batches, epochs: int, progress: bool, fold: int | None = None) -> None:
    """``model.fit`` with Keras' per-epoch lines on stderr (stdout is kept for results and JSON).

    Training stops at the end of the first epoch whose loss is not finite.

    Raises
    ------
    DivergedError
        Naming ``fold`` (None: a fit on every image) and the epoch.
    """
    import keras

    class StopWhenDiverged(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                rate = float(np.asarray(self.model.optimizer.learning_rate))
                where = f"epoch {epoch + 1} of {epochs}"
                raise DivergedError(
                    where if fold is None else f"fold {fold}, {where}",
                    f"the loss became non-finite at learning rate {rate:g}",
                )

    with contextlib.redirect_stdout(sys.stderr):
        model.fit(batches, epochs=epochs, verbose=2 if progress else 0, callbacks=[StopWhenDiverged()])


def estimate_seconds(model, batches, steps_total: int) -> float:
    """Time one training step on the first batch and extrapolate to ``steps_total`` steps."""
    x, y = batches[0]
    model.train_on_batch(x, y)  # traces the step
    started = time.perf_counter()
    model.train_on_batch(x, y)
    return (time.perf_counter() - started) * steps_total


def finetune_variant(
    dataset,
    feature_spec: FeatureSpec,
    recipe: FinetuneRecipe,
    protocol: Protocol = Protocol(),
    *,
    cache_dir="cache",
    refit: bool = False,
    positive: str | None = None,
    progress: bool = True,
) -> CVSummary:
    """Fine-tune per fold and store out-of-fold probabilities in the phase-2 result format.

    Finished folds are checkpointed beside the result, so a killed run resumes at the next
    fold and (being seeded per fold) ends with the same numbers.

    Returns
    -------
    CVSummary

    Raises
    ------
    featx.exceptions.ResourceError
        Before anything is loaded, when one forward pass of a batch would not fit in memory (training
        needs more: this refuses only what cannot work).
    featx.exceptions.DivergedError
        When a fold's loss becomes non-finite (naming the fold and the epoch); no result is written.
    """
    check_batch_memory(recipe.batch_size, feature_spec.input_size)
    variant = Variant.of(3, dataset, feature_spec, recipe, protocol)

    def train_folds(fold, path) -> FoldsRun:
        checkpoint = path.with_name(path.stem + ".partial.json")
        done = read_checkpoint(checkpoint) if checkpoint.exists() and not refit else {}
        cached = load_features(cache_dir, variant.features, dataset).features if recipe.warm_start else None
        image = variant.features.image  # what the result records is what the folds are trained on
        pixels = dataset_pixels(dataset, image, cache_dir)
        trainer = _FoldFinetuner(feature_spec, recipe, dataset, (pixels, image), fold, protocol.seed, cached, progress)
        proba = np.zeros((len(dataset), len(dataset.classes)))
        fold_seconds = []
        for k in tqdm(range(protocol.folds), desc="folds", disable=not progress, file=sys.stderr):
            if str(k) not in done:
                started = time.perf_counter()
                predicted = trainer.run(k)
                done[str(k)] = {"proba": predicted.tolist(), "seconds": time.perf_counter() - started}
                write_text_atomic(checkpoint, json.dumps(done))
            proba[fold == k] = np.asarray(done[str(k)]["proba"])
            fold_seconds.append(done[str(k)]["seconds"])
        return FoldsRun(
            proba=proba, timings=Timings(fold_seconds=tuple(fold_seconds), total_seconds=float(sum(fold_seconds)))
        )

    summary = cross_validate(dataset, variant, train_folds, cache_dir=cache_dir, refit=refit, positive=positive)
    path = result_path(cache_dir, variant)
    path.with_name(path.stem + ".partial.json").unlink(missing_ok=True)  # the result holds every fold now
    return summary


class _FoldFinetuner:
    """Fine-tunes one fold at a time over a dataset's images (``inputs``: the held pixels of all of them, in
    dataset order, and the image record that scales them)."""

    def __init__(self, feature_spec, recipe, dataset, inputs, fold, seed, cached_features, progress):
        self.feature_spec = feature_spec
        self.recipe = recipe
        self.pixels, self.image = inputs
        self.y = dataset.label_indices()
        self.n_classes = len(dataset.classes)
        self.fold = fold
        self.seed = seed
        self.cached_features = cached_features
        self.progress = progress

    def _fresh_model(self, k: int, train: np.ndarray) -> FinetuneModel:
        import keras

        keras.utils.set_random_seed(self.seed + k)
        built = build_finetune_model(self.feature_spec, self.recipe, self.n_classes)
        if self.cached_features is not None:
            warm_start_head(built.model, self.recipe.head, self.cached_features[train], self.y[train], self.seed)
        compile_model(built.model, self.recipe.learning_rate)
        return built

    def run(self, k: int) -> np.ndarray:
        """Train on every fold but ``k``; return the probabilities of fold ``k``'s images."""
        train, test = np.flatnonzero(self.fold != k), np.flatnonzero(self.fold == k)
        recipe = self.recipe
        built = self._fresh_model(k, train)
        batches = image_batches(
            self.pixels, train, self.y[train], self.image, recipe.batch_size, shuffle_seed=self.seed + k
        )
        if k == 0:
            n_folds = int(self.fold.max()) + 1
            estimate = estimate_seconds(built.model, batches, len(batches) * recipe.epochs * n_folds)
            log.info(
                "fine-tuning %s past layer %d of %d: about %.0f min for %d folds x %d epochs on this machine "
                "(timed first batch)",
                self.feature_spec.backbone,
                built.cutoff,
                len(built.base.layers),
                estimate / 60,
                n_folds,
                recipe.epochs,
            )
            built = self._fresh_model(k, train)  # the timing step changed the weights
        fit_model(built.model, batches, recipe.epochs, self.progress, fold=k)
        test_batches = image_batches(self.pixels, test, None, self.image, recipe.batch_size)
        return check_finite(np.asarray(built.model.predict(test_batches, verbose=0), dtype=np.float64), k)
