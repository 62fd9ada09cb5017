"""Phase 2: train a head on cached features over the saved folds and store its out-of-fold predictions.

How a head trains over the folds is its family's (see :mod:`featx.heads.family`); this module gathers
the features and folds, and stores and summarises the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from featx import __version__
from featx.evaluation.results import Result, ResultProvenance, Timings, find_result, result_path
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split, protocol_groups
from featx.evaluation.summary import CVSummary
from featx.evaluation.variant import Variant
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads.recipe import HeadRecipe
from featx.heads.registry import get_head


def fit_variant(
    dataset,
    feature_spec: FeatureSpec,
    recipe: HeadRecipe,
    protocol: Protocol = Protocol(),
    *,
    cache_dir="cache",
    refit: bool = False,
    positive: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    head_seed: int | None = None,
) -> CVSummary:
    """Evaluate ``recipe`` on ``feature_spec`` over the saved folds of ``dataset``; store and summarise.

    A stored result of the same variant is reused unless ``refit``. ``positive`` names the class the
    binary figures are about (default: see :mod:`featx.evaluation.task`). ``jobs`` folds are trained
    at once (default: one per core) unless the head keeps every core busy itself. ``head_seed`` seeds
    the head apart from the folds (default None: ``protocol.seed`` seeds both; see
    :class:`featx.evaluation.variant.Variant`).

    Returns
    -------
    CVSummary

    Raises
    ------
    MissingFeaturesError
        When no feature store holds the dataset's images.
    """
    variant = Variant.of(2, dataset, feature_spec, recipe, protocol, head_seed)

    def train_folds(fold, _path) -> FoldsRun:
        gathered = load_features(cache_dir, variant.features, dataset)
        started = time.perf_counter()
        out_of_fold = get_head(recipe.head).family.out_of_fold(
            gathered.features,
            dataset.label_indices(),
            fold,
            recipe,
            seed=variant.seed_of_head,
            n_classes=len(dataset.classes),
            jobs=jobs,
            progress=progress,
        )
        timings = Timings(
            fold_seconds=out_of_fold.fold_seconds,
            total_seconds=time.perf_counter() - started,
            gflops=out_of_fold.gflops,
        )
        return FoldsRun(proba=out_of_fold.proba, timings=timings, stores=tuple(gathered.sources))

    return cross_validate(dataset, variant, train_folds, cache_dir=cache_dir, refit=refit, positive=positive)


@dataclass(frozen=True, kw_only=True)
class FoldsRun:
    """What a phase's training over the folds hands back to :func:`cross_validate`.

    Attributes
    ----------
    proba : numpy.ndarray, (N, n_classes)
        Out-of-fold probabilities, rows in dataset order.
    timings : Timings
    stores : tuple of str
        The feature stores read (empty for phase 3, which reads images).
    """

    proba: np.ndarray
    timings: Timings
    stores: tuple = ()


def cross_validate(
    dataset, variant: Variant, train_folds, *, cache_dir, refit: bool, positive: str | None
) -> CVSummary:
    """The frame phases 2 and 3 share: reuse a stored result of ``variant`` unless ``refit``; otherwise load
    or make the saved split, let ``train_folds(fold, result_path)`` train every fold, then store the result
    and summarise it.

    Parameters
    ----------
    dataset : featx.data.Dataset
    variant : Variant
    train_folds : callable
        ``train_folds(fold, path)`` -> :class:`FoldsRun`, given each image's test fold and where the result
        will be saved (phase 3 checkpoints finished folds beside it).
    cache_dir : str or Path
    refit : bool
    positive : str or None
        The class the binary figures are about (default: see :mod:`featx.evaluation.task`).

    Returns
    -------
    CVSummary
    """
    stored = None if refit else find_result(cache_dir, variant)
    if stored is not None:
        return CVSummary.of(stored, reused=True, positive=positive)
    split, split_file = load_or_make_split(cache_dir, dataset, variant.protocol)
    fold = fold_of_each_image(split, dataset.table["image_id"])
    path = result_path(cache_dir, variant)
    run = train_folds(fold, path)
    result = Result(
        variant=variant,
        classes=dataset.classes,
        image_ids=tuple(dataset.table["image_id"]),
        groups=protocol_groups(dataset, variant.protocol.group_by).to_numpy(),
        y_true=dataset.label_indices(),
        fold=fold,
        proba=run.proba,
        timings=run.timings,
        provenance=provenance(split_file, run.stores),
    )
    return CVSummary.of(result.save(path), reused=False, positive=positive)


def provenance(split_file, stores) -> ResultProvenance:
    """What a stored result records about how it was made."""
    return ResultProvenance(
        featx_version=__version__,
        split_file=str(split_file),
        stores=tuple(stores),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
