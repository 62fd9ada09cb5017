"""Benchmark: phase 1 on the Ray engine against the local engine, over the same images, in one run.

Both extract the same real radiographs (../shared/data/cxr) with the same backbone, batch size and
input size into fresh caches, without the pixel cache so that both decode every image. Images/s
is over the whole run (the Ray figure includes starting a local Ray instance with this machine's
cores) and steady (after the first batch). Target on a 2-core CPU: Ray / local >= 0.8. On a GPU
machine with Ray installed, ``--gpus-per-worker 1`` runs one GPU actor (target >= 0.9 of local).
Ends with one JSON line of the figures.

    python bench/ray.py [--images 2173] [--model efficientnet_lite0] [--gpus-per-worker 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # this file is named ray.py: keep the package
sys.path.insert(0, str(HERE.parent))

from bench.extract import SHARED, first_images  # noqa: E402
from featx.cli.options import size_text  # noqa: E402
from featx.data.dataset import load_dataset  # noqa: E402
from featx.features.engine import LocalEngine  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402
from featx.features.ray_engine import RayEngine  # noqa: E402


def run(dataset, features: FeatureSpec, engine, batch_size: int) -> dict:
    """One extraction into a fresh cache; its images/s."""
    with tempfile.TemporaryDirectory() as cache:
        summary = extract(
            dataset, features, batch_size=batch_size, cache_dir=cache, progress=False, pixel_cache=False, engine=engine
        )
    return {"img_s": summary.images_per_s, "steady_img_s": summary.steady_images_per_s, "seconds": summary.seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cxr")
    parser.add_argument("--images", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = parser.parse_args(argv)
    dataset = load_dataset(first_images(args.data, args.images))
    features = FeatureSpec(
        backbone=args.model, weights="imagenet" if args.model.startswith("efficientnet_lite") else "none"
    )
    print(
        f"{len(dataset)} radiographs, {args.model} at {size_text(features.input_size)}, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    local = run(dataset, features, LocalEngine(), args.batch_size)
    ray = run(dataset, features, RayEngine(gpus_per_worker=args.gpus_per_worker), args.batch_size)
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "images": len(dataset),
        "model": args.model,
        "local": local,
        "ray": ray,
        "ray_vs_local": round(ray["img_s"] / local["img_s"], 3),
        "ray_vs_local_steady": round(ray["steady_img_s"] / local["steady_img_s"], 3),
    }
    print(f"{'engine':8s} {'img/s':>8s} {'steady img/s':>13s} {'seconds':>8s}")
    for name in ("local", "ray"):
        print(
            f"{name:8s} {figures[name]['img_s']:8.1f} {figures[name]['steady_img_s']:13.1f} "
            f"{figures[name]['seconds']:8.1f}"
        )
    print(f"ray / local: {figures['ray_vs_local']:.2f} (steady {figures['ray_vs_local_steady']:.2f})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
