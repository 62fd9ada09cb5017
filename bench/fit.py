"""Benchmark: phase 2 at the machine's speed, measured in one run on the paper's Dataset_2.

- numpy float32 matmul (sgemm) GFLOP/s at the paper's head shapes, batch 64 (best of many);
- phase-1 extraction of Dataset_2 with EfficientNet-Lite0 (ImageNet) into a fresh cache;
- 10-fold fit of the paper's head mlp1000-750 from that store (patient-grouped folds): seconds,
  matmul GFLOP/s of its training, fraction of sgemm (target >= 0.5), and its ratio to the
  extraction (target <= 0.15);
- 10-fold logreg (folds in parallel) and xgb fits: seconds.

Ends with one JSON line of the figures.

    python bench/fit.py [--data ../shared/data/cxr]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featx.data.dataset import load_dataset  # noqa: E402
from featx.evaluation.crossval import fit_variant  # noqa: E402
from featx.evaluation.splits import Protocol  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402
from featx.heads import HeadRecipe  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"
HEAD_SHAPES = ((64, 1280, 1000), (64, 1000, 750))


def sgemm_gflops(shapes=HEAD_SHAPES, repeats: int = 200) -> float:
    """numpy float32 matmul GFLOP/s over the head's layer shapes: best time of each, summed."""
    rng = np.random.default_rng(0)
    flops = seconds = 0.0
    for m, k, n in shapes:
        a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        best = min(_timed(lambda: a @ b) for _ in range(repeats))  # noqa: B023
        flops += 2 * m * k * n
        seconds += best
    return flops / seconds / 1e9


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subset", default="dataset2")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, args.subset)
    features = FeatureSpec(backbone="efficientnet_lite0")
    print(f"{dataset.describe()}; {os.cpu_count()} CPUs", flush=True)
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "images": len(dataset)}
    figures["sgemm_gflops"] = round(sgemm_gflops(), 1)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        extract(dataset, features, cache_dir=cache, progress=False)
        figures["extract_s"] = round(time.perf_counter() - started, 1)
        for head in ("mlp1000-750", "logreg", "xgb"):
            summary = fit_variant(dataset, features, HeadRecipe(head=head), Protocol(), cache_dir=cache, progress=False)
            timings = summary.result.timings
            name = "mlp" if head.startswith("mlp") else head
            figures[f"{name}_fit_s"] = round(timings.total_seconds, 2)
            figures[f"{name}_accuracy"] = round(summary["accuracy"], 4)
            if timings.gflops is not None:
                figures[f"{name}_gflops"] = round(timings.gflops, 1)
        figures["sgemm_gflops_after"] = round(sgemm_gflops(), 1)
    sgemm = max(figures["sgemm_gflops"], figures["sgemm_gflops_after"])
    figures["mlp_sgemm_fraction"] = round(figures["mlp_gflops"] / sgemm, 3)
    figures["mlp_fit_vs_extract"] = round(figures["mlp_fit_s"] / figures["extract_s"], 3)
    print(f"sgemm at the head's shapes: {sgemm:.0f} GFLOP/s")
    print(f"phase-1 extraction: {figures['extract_s']:.1f} s")
    print(
        f"10-fold mlp1000-750: {figures['mlp_fit_s']:.1f} s, {figures['mlp_gflops']:.1f} GFLOP/s "
        f"({figures['mlp_sgemm_fraction']:.2f} of sgemm), {figures['mlp_fit_vs_extract']:.2f} of the extraction, "
        f"accuracy {figures['mlp_accuracy'] * 100:.2f}%"
    )
    print(f"10-fold logreg: {figures['logreg_fit_s']:.1f} s; xgb: {figures['xgb_fit_s']:.1f} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
