"""Agreement of bfloat16 with float32 features (issue 20 item 3): Lite0 ImageNet on Dataset_2.

Measured in one run, through featx's own API, on the real radiographs of ../shared/data/cxr:

- the features of every image of the subset, extracted (:func:`featx.features.extract.extract`) by the
  default runtime (OpenVINO on a CPU) in float32 and in bfloat16 (``mixed_bfloat16``), each its own
  store: the largest and mean absolute deviation of bfloat16's from float32's, absolute and relative
  to the largest |float32 feature|, and the largest per-image deviation relative to that image's
  largest |feature|;
- the paper's head for the backbone (:attr:`featx.backbones.registry.BackboneSpec.paper_head`)
  cross-validated (:func:`featx.evaluation.crossval.fit_variant`) on each precision's features over
  the same saved patient-grouped folds: every headline figure with its 95% bootstrap interval
  (patients resampled), side by side, and the paired difference bfloat16 - float32 (featx's
  :func:`featx.evaluation.paired.compare_paired`: the same patients resampled for both, McNemar / DeLong / sign-flip,
  Holm over the figures).

Ends with one JSON line of every figure. Refused (featx's own message) on a CPU without bfloat16
instructions. The full run (a quiet machine; 1,442 images of Dataset_2 at 200x266, twice):

    python bench/bf16_agreement.py [--data ../shared/data/cxr] [--subset dataset2] [--folds 10] [--cache DIR]

A tiny run that proves it works: ``--per-label 12 --subset all --input-size 64x64 --folds 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.extract import SHARED, first_images  # noqa: E402
from featx.backbones.weights import PRECISIONS  # noqa: E402
from featx.data.dataset import SUBSETS, load_dataset  # noqa: E402
from featx.data.images import DEFAULT_SIZE  # noqa: E402
from featx.evaluation.crossval import fit_variant  # noqa: E402
from featx.evaluation.metrics import METRICS  # noqa: E402
from featx.evaluation.paired import compare_paired  # noqa: E402
from featx.evaluation.splits import Protocol  # noqa: E402
from featx.features import runtime  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402
from featx.features.store import load_features  # noqa: E402
from featx.heads.recipe import HeadRecipe  # noqa: E402

BACKBONE = "efficientnet_lite0"


def deviation(bf16: np.ndarray, f32: np.ndarray) -> dict:
    """How far bfloat16's features lie from float32's: absolute, over the feature scale, and per image."""
    difference = np.abs(bf16.astype(np.float64) - f32)
    scale = float(np.abs(f32).max()) or 1.0
    per_image_scale = np.maximum(np.abs(f32).max(axis=1), np.finfo(np.float32).tiny)
    return {
        "feature_scale": scale,
        "max_abs_dev": float(difference.max()),
        "mean_abs_dev": float(difference.mean()),
        "max_rel_dev": float(difference.max() / scale),
        "mean_rel_dev": float(difference.mean() / scale),
        "max_per_image_rel_dev": float((difference.max(axis=1) / per_image_scale).max()),
    }


def head_figures(summary) -> dict:
    """Every headline figure of a cross-validation with its 95% interval (None where undefined)."""
    metrics = summary.metrics
    return {name: {"value": metrics[name], "ci95": list(metrics["ci95"][name])} for name in METRICS if name in metrics}


def main(argv=None) -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cxr")
    parser.add_argument("--subset", default="dataset2", choices=list(SUBSETS))
    parser.add_argument("--per-label", type=int, default=None, help="the first N images of each label (default: all)")
    parser.add_argument("--input-size", default="x".join(map(str, DEFAULT_SIZE)), help="WIDTHxHEIGHT")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args(argv)
    size = tuple(int(side) for side in args.input_size.lower().split("x"))
    float32, bfloat16 = PRECISIONS
    runtime.check_cpu_precision(bfloat16)
    data = first_images(args.data, args.per_label, per_label=True) if args.per_label else args.data
    dataset = load_dataset(data, args.subset)
    protocol = Protocol(group_by="patient", folds=args.folds, seed=0)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Keras {keras.__version__} on {keras.backend.backend()}, "
        f"runtime {runtime.resolve_runtime()}"
    )
    print(f"{machine}; {dataset.describe()}, {len(dataset)} images at {args.input_size}", flush=True)
    with tempfile.TemporaryDirectory() as temporary:
        cache = args.cache or Path(temporary)
        features, summaries, seconds = {}, {}, {}
        for precision in (float32, bfloat16):
            spec = FeatureSpec(backbone=BACKBONE, weights="imagenet", input_size=size, precision=precision)
            started = time.perf_counter()
            extracted = extract(dataset, spec, batch_size=args.batch_size, cache_dir=cache, progress=False)
            seconds[precision] = round(time.perf_counter() - started, 1)
            features[precision] = load_features(cache, spec.key(dataset.id), dataset).features
            recipe = HeadRecipe(head=spec.backbone_spec.paper_head)
            summaries[precision] = fit_variant(dataset, spec, recipe, protocol, cache_dir=cache, progress=False)
            print(f"  {precision}: {extracted.images} images, {extracted.runtime}, {seconds[precision]} s", flush=True)
    heads = {precision: head_figures(summary) for precision, summary in summaries.items()}
    paired = compare_paired([summaries[float32].result, summaries[bfloat16].result])  # same images and folds
    difference = {
        d.metric: {
            "difference": d.difference,
            "ci95": list(d.interval),
            "test": d.test,
            "p_adjusted": d.p_adjusted,
            "distinguishable": d.distinguishable,
        }
        for d in paired
    }
    figures = {
        "machine": machine,
        "data": dataset.describe(),
        "images": len(dataset),
        "input_size": list(size),
        "backbone": BACKBONE,
        "head": summaries[float32].result.variant.head,
        "protocol": f"{protocol.group_by}, {protocol.folds} folds, seed {protocol.seed}",
        "extract_seconds": seconds,
        "features": deviation(features[bfloat16], features[float32]),
        "head_figures": heads,
        "bf16_minus_f32": difference,
        "degenerate": {precision: summary.degenerate for precision, summary in summaries.items()},
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
