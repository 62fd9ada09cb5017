"""Final models: cross-validate a variant, train it on every image, save a model folder."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np

from featx import __version__
from featx.backbones.weights import fingerprint
from featx.cli.output import finite
from featx.evaluation.crossval import fit_variant
from featx.evaluation.finetune import (
    FinetuneRecipe,
    build_finetune_model,
    compile_model,
    dataset_pixels,
    fit_model,
    image_batches,
)
from featx.evaluation.results import find_result
from featx.evaluation.splits import Protocol
from featx.evaluation.summary import CVSummary
from featx.evaluation.task import Task
from featx.evaluation.variant import Variant
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.runtime import KERAS
from featx.features.store import load_features
from featx.heads.recipe import HeadRecipe
from featx.heads.registry import get_head
from featx.models.folder import (
    FIGURE_NAMES,
    FINETUNED_FILE,
    FORMAT_VERSION,
    CrossValidationFigures,
    ModelManifest,
    NotCrossValidated,
    check_finite,
    check_target,
    write_folder,
)

log = logging.getLogger(__name__)


SAMPLE_ROWS = 8
"""Training rows a head predicts before it is saved, to check that its probabilities are finite."""


def cross_validation_record(summary: CVSummary | None) -> CrossValidationFigures | NotCrossValidated:
    """What a model folder records of its variant's cross-validation; figures the data do not define
    (NaN: a sensitivity without positives) are recorded as None."""
    if summary is None:
        return NotCrossValidated(
            note="not cross-validated: fine-tune with the same settings first (featx finetune) to record "
            "cross-validated metrics here"
        )
    return CrossValidationFigures(
        figures={name: finite(summary[name]) for name in FIGURE_NAMES},
        per_class_recall=finite(summary["per_class_recall"]),
        confusion=tuple(tuple(int(count) for count in row) for row in summary["confusion"]),
        ci95={name: tuple(finite(interval)) for name, interval in summary["ci95"].items()},
        positive=summary.task.positive,
        protocol=summary.result.variant.protocol.group_by,
        variant=summary.result.variant.to_record(),
        result_file=str(summary.result.path),
    )


def train_model(
    dataset,
    feature_spec: FeatureSpec,
    recipe: HeadRecipe | FinetuneRecipe,
    protocol: Protocol = Protocol(),
    *,
    model_dir,
    cache_dir="cache",
    positive: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> ModelManifest:
    """Cross-validate the variant (reusing a stored result), train it on every image, save the folder.

    A head on cached features is trained by its family's ``fit``: the call that trains each fold in
    cross-validation, here on every image (fold index 0, the protocol's seed), and the folder saves what it
    returns, so the saved head computes the same function as the cross-validated ones.

    Parameters
    ----------
    dataset : featx.data.Dataset
    feature_spec : FeatureSpec
    recipe : HeadRecipe or FinetuneRecipe
        A head on the frozen backbone's cached features, or a fine-tuned backbone.
    protocol : Protocol
        The cross-validation recorded in the folder (and the seed of the final fit).
    model_dir : str or Path
        Holds the old model or the new one at every instant; the user's own files there are kept
        (see :func:`featx.models.folder.write_folder`).
    cache_dir : str or Path
    positive : str, optional
        The class the binary figures are about (default: see :mod:`featx.evaluation.task`).
    jobs : int, optional
        Folds cross-validated at once (see :func:`featx.evaluation.crossval.fit_variant`).
    progress : bool

    Returns
    -------
    ModelManifest

    Raises
    ------
    ModelFolderError
        When ``model_dir`` is refused before any work, or training diverged (non-finite weights,
        probabilities or cross-validated probabilities): nothing is saved and ``model_dir`` is left
        as it was.

    Notes
    -----
    Fine-tuning every fold is hours on a CPU, so for a fine-tuned model the folder records the
    stored phase-3 result of exactly the same variant if there is one, and says so if not.
    """
    model_dir = check_target(model_dir)
    task = Task.of(dataset.classes, dataset.table["label"], positive)
    provenance = fingerprint(feature_spec.backbone_spec, feature_spec.weights)
    if isinstance(recipe, FinetuneRecipe):
        summary = _stored_summary(cache_dir, Variant.of(3, dataset, feature_spec, recipe, protocol), task.positive)
        model = _finetuned_model(dataset, feature_spec, recipe, protocol.seed, cache_dir, progress)
        trained = model.get_weights()
        write = _finetuned_writer(model)
        head_classes, sampler = tuple(range(len(dataset.classes))), "none"
    else:
        extract(dataset, feature_spec, cache_dir=cache_dir, progress=progress)
        summary = fit_variant(
            dataset,
            feature_spec,
            recipe,
            protocol,
            cache_dir=cache_dir,
            positive=task.positive,
            jobs=jobs,
            progress=progress,
        )
        x = load_features(cache_dir, feature_spec.key(dataset.id), dataset).features
        family = get_head(recipe.head).family
        head = family.fit(x, dataset.label_indices(), recipe, seed=protocol.seed, n_classes=len(dataset.classes))
        trained = [head.predictor.predict_proba(x[:SAMPLE_ROWS])]
        write = partial(family.save, head.predictor)
        head_classes, sampler = head.classes, recipe.sampler

    check_finite(model_dir, trained if summary is None else [*trained, summary.result.proba])

    def manifest_for(model_folder: str, model_file: str) -> ModelManifest:
        return ModelManifest(
            backbone=feature_spec.backbone,
            weights=provenance.weights,
            weights_argument=feature_spec.weights,
            weights_sha256=provenance.weights_sha256,
            weights_source=provenance.weights_source,
            input_size=feature_spec.input_size,
            preprocessing=feature_spec.backbone_spec.preprocessing,
            decoder=feature_spec.decoder,
            mask=feature_spec.mask,
            runtime=KERAS if isinstance(recipe, FinetuneRecipe) else feature_spec.resolved.runtime,
            precision=feature_spec.precision,
            classes=dataset.classes,
            positive=task.positive,
            head=recipe.head,
            sampler=sampler,
            finetuned=isinstance(recipe, FinetuneRecipe),
            model_folder=model_folder,
            model_file=model_file,
            head_classes=head_classes,
            trained_on=dataset.describe(),
            training_images=tuple(dataset.table["content_hash"]),
            cross_validation=cross_validation_record(summary),
            featx_version=__version__,
            format_version=FORMAT_VERSION,
        )

    return write_folder(model_dir, manifest_for, write)


def _stored_summary(cache_dir, variant, positive: str) -> CVSummary | None:
    stored = find_result(cache_dir, variant)
    return None if stored is None else CVSummary.of(stored, reused=True, positive=positive)


def _finetuned_model(dataset, feature_spec: FeatureSpec, recipe: FinetuneRecipe, seed: int, cache_dir, progress: bool):
    """The fine-tuned model trained on every image (its pixels read through ``cache_dir``'s pixel cache)."""
    import keras

    pixels = dataset_pixels(dataset, feature_spec.image, cache_dir)
    keras.utils.set_random_seed(seed)
    built = build_finetune_model(feature_spec, recipe, len(dataset.classes))
    compile_model(built.model, recipe.learning_rate)
    rows = np.arange(len(dataset))
    batches = image_batches(
        pixels, rows, dataset.label_indices(), feature_spec.image, recipe.batch_size, shuffle_seed=seed
    )
    fit_model(built.model, batches, recipe.epochs, progress)
    return built.model


def _finetuned_writer(model):
    def write(folder):
        model.save(folder / FINETUNED_FILE)
        return FINETUNED_FILE

    return write
