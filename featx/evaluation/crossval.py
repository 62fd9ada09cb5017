"""Run one variant over the saved folds: out-of-fold probabilities, timings, provenance."""

from __future__ import annotations

import sys
import time

import numpy as np

from featx import __version__
from featx.backbones.registry import get_spec
from featx.features.store import collect_features
from featx.data.dataset import CLASSES
from featx.exceptions import CacheError
from featx.features.extract import store_identity
from featx.heads.dense import is_keras_head, make_head
from featx.evaluation.metrics import summarize
from featx.evaluation.results import load_result, result_path, save_result
from featx.heads.sampling import with_strategy
from featx.evaluation.splits import fold_of_each_image, load_or_make_split, protocol_groups


def out_of_fold_proba(features, y, fold, make_estimator, progress: bool = False):
    """Fit a fresh estimator per fold and predict its test rows.

    Parameters
    ----------
    features : numpy.ndarray, (N, D)
    y : numpy.ndarray of int, (N,)
    fold : numpy.ndarray of int, (N,)
        Test-fold number of each row.
    make_estimator : callable
        Returns an unfitted classifier; called once per fold.
    progress : bool

    Returns
    -------
    proba : numpy.ndarray, (N, len(CLASSES))
        Columns in :data:`featx.data.CLASSES` order (a class absent from a training fold
        gets probability 0).
    fit_seconds : list of float
    """
    from tqdm import tqdm

    proba = np.zeros((len(y), len(CLASSES)))
    fit_seconds = []
    for k in tqdm(np.unique(fold), desc="folds", disable=not progress, file=sys.stderr):
        train, test = fold != k, fold == k
        estimator = make_estimator()
        started = time.perf_counter()
        estimator.fit(features[train], y[train])
        fit_seconds.append(time.perf_counter() - started)
        proba[np.ix_(test, estimator.classes_)] = estimator.predict_proba(features[test])
    return proba, fit_seconds


def head_params(head: str, epochs: int | None, batch_size: int | None, learning_rate: float | None) -> dict:
    """The Keras head settings the user changed (empty for classical heads)."""
    if not is_keras_head(head):
        return {}
    given = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    return {key: value for key, value in given.items() if value is not None}


def extract_command(dataset, backbone, weights, input_size) -> str:
    """The CLI command that builds the store a fit needs."""
    width, height = input_size
    return (f"python cli.py extract --model {backbone} --data {dataset.root} --subset {dataset.subset} "
            f"--weights {weights} --input-size {width}x{height}")


def fit_variant(dataset, backbone: str, head: str = "paper", sampler: str = "none", weights: str = "imagenet",
                input_size=(200, 266), group_by: str = "patient", folds: int = 10, seed: int = 0,
                cache_dir="cache", epochs=None, batch_size=None, learning_rate=None, refit: bool = False,
                progress: bool = True) -> dict:
    """Evaluate backbone x head x sampler on the saved folds of ``dataset``; store and summarise.

    Returns
    -------
    dict
        Headline metrics (fractions), ``ci95``, ``protocol``, ``split_file``, ``result_file``,
        ``reused`` and the variant's provenance.

    Raises
    ------
    CacheError
        When no feature store holds the dataset's images (naming the extract command).
    """
    spec = get_spec(backbone)
    head = spec.paper_head if head == "paper" else head
    params = head_params(head, epochs, batch_size, learning_rate)
    make_head(head, random_state=seed, **params)  # unknown specs fail before any work
    with_strategy(make_head(head), sampler)
    identity = store_identity(dataset, backbone, weights, input_size)
    split, split_file = load_or_make_split(cache_dir, dataset, group_by, folds, seed)
    variant = {
        "phase": 2, "backbone": backbone, "weights": identity["weights"], "input_size": identity["input_size"],
        "head": head, "head_params": params, "sampler": sampler, "protocol": group_by, "folds": folds, "seed": seed,
        "weights_sha256": identity["weights_sha256"], "preprocessing": identity["preprocessing"],
        "dataset_id": dataset.id, "subset": dataset.subset, "split_file": str(split_file),
    }
    path = result_path(cache_dir, dataset.id, variant)
    if path.exists() and not refit:
        return summary_of(load_result(path), reused=True)
    features, missing, stores = collect_features(cache_dir, identity, dataset.table["content_hash"])
    if missing.any():
        raise CacheError(
            f"No feature store of {backbone} ({identity['weights']}, {input_size[0]}x{input_size[1]}) in {cache_dir} "
            f"holds {int(missing.sum())} of the {len(dataset)} images of {dataset.root} [{dataset.subset}] "
            f"(first: {dataset.table['image_id'].iat[int(np.argmax(missing))]}). Make it with:\n  "
            + extract_command(dataset, backbone, weights, input_size)
        )
    y = dataset.label_indices()
    fold = fold_of_each_image(split, dataset.table["image_id"])
    started = time.perf_counter()
    proba, fit_seconds = out_of_fold_proba(
        features, y, fold, lambda: with_strategy(make_head(head, random_state=seed, **params), sampler, seed), progress
    )
    variant["stores"] = stores
    variant["featx_version"] = __version__
    timings = {"fit_seconds": fit_seconds, "total_seconds": time.perf_counter() - started}
    save_result(path, variant, dataset.table["image_id"], y, proba, fold, protocol_groups(dataset, group_by), timings)
    return summary_of(load_result(path), reused=False)


def summary_of(result: dict, reused: bool) -> dict:
    """Headline metrics, intervals, per-fold spread and provenance of a stored result."""
    metrics = summarize(result["y_true"], result["proba"], result["fold"], result["groups"])
    headline = {key: metrics[key] for key in ("accuracy_3class", "accuracy_2class", "sensitivity", "specificity",
                                              "auc_covid", "auc_macro", "ppv", "npv", "confusion", "ci95")}
    variant = result["variant"]
    return {
        **headline,
        "per_fold": {key: {"mean": v["mean"], "std": v["std"]} for key, v in metrics["per_fold"].items()},
        "protocol": variant["protocol"],
        "split_file": variant["split_file"],
        "result_file": result["path"],
        "reused": reused,
        "fit_seconds": result["timings"]["total_seconds"],
        "variant": variant,
    }
