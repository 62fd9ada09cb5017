"""Benchmark: a 10-fold fit from the feature store vs the phase-1 extraction of the same images.

Both are measured in one run on the paper's Dataset_2 drawn from the real radiographs: the
extraction into a fresh cache, then each head's 10-fold fit from it.  The ratio is fit time
over extraction time (target <= 0.1: the store must make variants cheap).

    python bench/fit.py [--model efficientnet_lite0] [--heads mlp1000-750 logreg]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featx.data.dataset import load_dataset  # noqa: E402
from featx.evaluation.crossval import fit_variant  # noqa: E402
from featx.evaluation.splits import Protocol  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402
from featx.heads import HeadRecipe  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subset", default="dataset2")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--heads", nargs="+", default=["mlp1000-750", "logreg"])
    parser.add_argument("--group-by", default="patient")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, args.subset)
    print(f"{dataset.describe()}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        features = FeatureSpec(args.model)
        extract(dataset, features, cache_dir=cache, progress=False)
        extraction = time.perf_counter() - started
        print(f"phase 1 extract {args.model}: {extraction:.1f} s (model build included)")
        print(f"{'head':14s} {'10-fold fit s':>14s} {'fit/extract':>12s}  3-class acc ({args.group_by} folds)")
        for head in args.heads:
            started = time.perf_counter()
            summary = fit_variant(
                dataset, features, HeadRecipe(head), Protocol(args.group_by), cache_dir=cache, progress=False
            )
            seconds = time.perf_counter() - started
            print(f"{head:14s} {seconds:14.1f} {seconds / extraction:12.2f}  {summary['accuracy_3class'] * 100:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
