"""Rebuild the paper's experiment: Dataset_1 and Dataset_2, each backbone with the paper's
head, under the paper's image-level protocol and the patient-grouped one; reuse every store,
split and result that already exists."""

from __future__ import annotations

import sys

from featx.backbones.registry import get_spec
from featx.data.dataset import load_dataset
from featx.evaluation.crossval import fit_variant
from featx.exceptions import WeightsError
from featx.features.extract import extract

SUBSETS = ("dataset1", "dataset2")
PROTOCOLS = ("image", "patient")
FALLBACKS = ("random-init", "skip")


def usable_weights(backbone: str, data, input_size, cache_dir, fallback: str, progress: bool, log=sys.stderr):
    """Extract the whole folder once with ImageNet weights, or fall back; return the weights used.

    Returns
    -------
    str or None
        ``imagenet``, ``none`` (random-init) or None when the backbone is skipped.
    """
    dataset = load_dataset(data, "all")
    try:
        extract(dataset, backbone, "imagenet", input_size, cache_dir=cache_dir, progress=progress)
        return "imagenet"
    except WeightsError as error:
        if fallback == "skip":
            print(f"skipping {backbone}: {error}", file=log)
            return None
        print(f"{backbone}: ImageNet weights unavailable here, running it as RANDOM-INIT (labelled so): "
              f"{str(error).split('.')[0]}", file=log)
        extract(dataset, backbone, "none", input_size, cache_dir=cache_dir, progress=progress)
        return "none"


def reproduce(data, models, phase: int = 2, input_size=(200, 266), folds: int = 10, seed: int = 0,
              cache_dir="cache", fallback: str = "random-init", epochs: int = 10, progress: bool = True,
              log=sys.stderr, subsets=SUBSETS) -> dict:
    """Run (or reuse) every variant of the paper's design.

    Returns
    -------
    dict
        ``runs`` (one summary per subset x backbone x protocol), ``skipped`` (backbone -> reason),
        ``datasets`` (subset -> dataset id).
    """
    runs, skipped, datasets = [], {}, {}
    for backbone in models:
        spec = get_spec(backbone)
        weights = usable_weights(backbone, data, input_size, cache_dir, fallback, progress, log)
        if weights is None:
            skipped[backbone] = "ImageNet weights unavailable (no network); rerun with --fallback random-init"
            continue
        for subset in subsets:
            dataset = load_dataset(data, subset)
            datasets[subset] = dataset.id
            for protocol in PROTOCOLS:
                print(f"{backbone} ({weights}) {subset} {protocol}-level folds, head {spec.paper_head}", file=log)
                if phase == 3:
                    from featx.evaluation.finetune import finetune_variant

                    summary = finetune_variant(dataset, backbone, "paper", None, weights, input_size, protocol, folds,
                                               seed, epochs=epochs, cache_dir=cache_dir, progress=progress)
                else:
                    summary = fit_variant(dataset, backbone, "paper", "none", weights, input_size, protocol, folds,
                                          seed, cache_dir, progress=progress)
                runs.append({"subset": subset, **summary})
    return {"runs": runs, "skipped": skipped, "datasets": datasets}
