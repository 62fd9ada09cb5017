"""Benchmark: the whole `extract` path vs bare `model.predict` on the same decoded images.

Both are measured in one run, on the same real radiographs, model and batch size; the ratio
is pipeline images/s divided by bare images/s (target >= 0.9 on a 2-core CPU).

    python bench/extract.py [--images 512] [--models efficientnet_lite0 mobilenet_v2]
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

import numpy as np  # noqa: E402

from featx.backbones.registry import get_spec, preprocess  # noqa: E402
from featx.backbones.weights import build_base  # noqa: E402
from featx.data import images  # noqa: E402
from featx.data.dataset import load_dataset  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"


def first_images(data: Path, count: int) -> Path:
    """A throwaway data folder whose manifest lists the first ``count`` shared images."""
    import pandas as pd

    table = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False).head(count)
    folder = Path(tempfile.mkdtemp(prefix="featx-bench-"))
    (folder / "images").mkdir()
    for filename in table["filename"]:
        os.symlink(data / filename, folder / filename)
    table.to_csv(folder / "metadata.csv", index=False)
    return folder


def bare_predict_rate(name: str, dataset, size, batch_size: int, weights: str) -> float:
    """images/s of model.predict on already decoded and preprocessed images."""
    spec = get_spec(name)
    model, _ = build_base(spec, size, weights)
    batch = preprocess(spec, np.stack([images.load(p, size) for p in dataset.table["path"]]))
    model.predict(batch[:batch_size], batch_size=batch_size, verbose=0)  # warm-up / tracing
    started = time.perf_counter()
    model.predict(batch, batch_size=batch_size, verbose=0)
    return len(batch) / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "mobilenet_v2"])
    args = parser.parse_args(argv)
    size = images.DEFAULT_SIZE
    folder = first_images(args.data, args.images)
    dataset = load_dataset(folder)
    print(f"{len(dataset)} real radiographs, input {size[0]}x{size[1]}, batch {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"{'model':20s} {'pipeline img/s':>15s} {'bare predict img/s':>19s} {'ratio':>6s}")
    for name in args.models:
        weights = "imagenet" if get_spec(name).keras_module is None else "none"  # speed does not depend on values
        with tempfile.TemporaryDirectory() as cache:
            summary = extract(
                dataset, FeatureSpec(name, weights, size), batch_size=args.batch_size, cache_dir=cache, progress=False
            ).to_json()
        bare = bare_predict_rate(name, dataset, size, args.batch_size, weights)
        ratio = summary["images_per_s"] / bare
        print(f"{name:20s} {summary['images_per_s']:15.1f} {bare:19.1f} {ratio:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
