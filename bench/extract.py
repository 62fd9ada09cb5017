"""Benchmark (CPU): phase 1's whole `extract` path against the bare model, the pixel cache, decoding.

Measured in one run, on the real radiographs of ../shared/data/cxr (and the full-size originals of
../shared/data/cxr-fullsize for decoding):

- per model: the whole `extract` path (decoding in worker processes with a cold pixel cache,
  letterboxing, the forward pass, chunks, the store), steady images/s after the first batch,
  against bare `model.predict_on_batch` on the same images already decoded and preprocessed,
  same batch size, after a warm-up batch (target: ratio >= 0.95); and the same extraction again
  reading the pixels it cached;
- a second backbone over every image after a first one filled the pixel cache, with and without
  the cache: seconds and images decoded;
- decoding on one process of the full-size files: images/s of the plain and the draft decoder,
  and the largest per-pixel difference between them.

Ends with one JSON line of every figure.

    python bench/extract.py [--images 512] [--models efficientnet_lite0 mobilenet_v2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featx.backbones.registry import get_preprocessing, get_spec  # noqa: E402
from featx.backbones.weights import build_base  # noqa: E402
from featx.data import images  # noqa: E402
from featx.data.dataset import load_dataset  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZE = images.DEFAULT_SIZE


def first_images(data: Path, count: int | None, *, per_label: bool = False) -> Path:
    """A throwaway data folder whose manifest lists the first ``count`` shared images (all: None), or with
    ``per_label`` (default False) the first ``count`` of each label."""
    import pandas as pd

    table = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    if count:
        table = table.groupby("label", sort=False).head(count) if per_label else table.head(count)
    folder = Path(tempfile.mkdtemp(prefix="featx-bench-"))
    (folder / "images").mkdir()
    for filename in table["filename"]:
        shutil.copyfile(data / filename, folder / filename)  # a link out of the folder is refused as data
    table.to_csv(folder / "metadata.csv", index=False)
    return folder


def weights_for(name: str) -> str:
    """ImageNet where featx ships it (EfficientNet-Lite); random-init otherwise (speed does not depend on values)."""
    return "imagenet" if get_spec(name).keras_module is None else "none"


def bare_rate(name: str, dataset, batch_size: int) -> float:
    """images/s of ``predict_on_batch`` on already decoded and preprocessed batches of the same size."""
    spec = get_spec(name)
    model, _ = build_base(spec, SIZE, weights_for(name))
    pixels = np.stack([images.load(path, SIZE) for path in dataset.table["path"]])
    padding = (-len(pixels)) % batch_size
    scaled = get_preprocessing(spec.preprocessing).host(np.concatenate([pixels, pixels[:padding]]))
    batches = scaled.reshape(-1, batch_size, SIZE[1], SIZE[0], 3)
    model.predict_on_batch(batches[0])  # tracing
    started = time.perf_counter()
    for batch in batches:
        np.asarray(model.predict_on_batch(batch))
    return len(pixels) / (time.perf_counter() - started)


def pipeline_rates(name: str, dataset, batch_size: int) -> tuple[float, float, float]:
    """Steady and whole-run images/s of ``extract`` decoding every image (a cold pixel cache), and
    steady images/s of the same extraction again reading the pixels it cached (a second backbone's case)."""
    features = FeatureSpec(backbone=name, weights=weights_for(name), input_size=SIZE)
    with tempfile.TemporaryDirectory() as cache:
        cold = extract(dataset, features, batch_size=batch_size, cache_dir=cache, progress=False)
        Path(cold.store).unlink()
        warm = extract(dataset, features, batch_size=batch_size, cache_dir=cache, progress=False)
    assert cold.decoded_images == len(dataset) and warm.decoded_images == 0
    return cold.steady_images_per_s, cold.images_per_s, warm.steady_images_per_s


def model_figures(name: str, dataset, batch_size: int, repeats: int) -> dict:
    """Pipeline and bare rates, measured alternately ``repeats`` times: medians, and the best of the
    paired ratios (other work on the machine only ever slows a measurement down)."""
    runs = []
    for _ in range(repeats):
        pipeline, whole, cached = pipeline_rates(name, dataset, batch_size)
        bare = bare_rate(name, dataset, batch_size)
        runs.append({"pipeline": pipeline, "whole": whole, "cached": cached, "bare": bare})
        print(
            f"  {name}: pipeline {pipeline:.1f} img/s (whole run {whole:.1f}, pixels cached {cached:.1f}), "
            f"bare {bare:.1f} img/s",
            flush=True,
        )

    def median(field):
        return round(statistics.median(run[field] for run in runs), 2)

    def ratios(field):
        return [run[field] / run["bare"] for run in runs]

    return {
        "pipeline_vs_bare": round(statistics.median(ratios("pipeline")), 3),
        "pipeline_img_s": median("pipeline"),
        "bare_img_s": median("bare"),
        "pipeline_vs_bare_best": round(max(ratios("pipeline")), 3),
        "pipeline_whole_run_img_s": median("whole"),
        "cached_pipeline_vs_bare": round(statistics.median(ratios("cached")), 3),
        "cached_pipeline_vs_bare_best": round(max(ratios("cached")), 3),
        "cached_pipeline_img_s": median("cached"),
        "weights": weights_for(name),
    }


def second_backbone(data: Path, first: str, second: str, batch_size: int) -> dict:
    """``second`` over every image after ``first`` filled the pixel cache, with and without it."""
    dataset = load_dataset(first_images(data, None))
    figures = {"images": len(dataset), "first": first, "second": second}
    with tempfile.TemporaryDirectory() as cache:
        spec = FeatureSpec(backbone=first, weights=weights_for(first), input_size=SIZE)
        filled = extract(dataset, spec, batch_size=batch_size, cache_dir=cache, progress=False)
        figures["first_decoded_images"] = filled.decoded_images
        figures["pixel_cache_bytes"] = filled.pixel_cache_bytes
        for label, use_cache in (("with_pixel_cache", True), ("without_pixel_cache", False)):
            spec = FeatureSpec(backbone=second, weights=weights_for(second), input_size=SIZE)
            started = time.perf_counter()
            summary = extract(  # without the cache: the store made with it is discarded, the pixels are left alone
                dataset,
                spec,
                batch_size=batch_size,
                cache_dir=cache,
                progress=False,
                pixel_cache=use_cache,
                rebuild=not use_cache,
            )
            seconds = time.perf_counter() - started
            figures[label] = {"seconds": round(seconds, 2), "decoded_images": summary.decoded_images}
            print(f"  {second} {label}: {seconds:.1f} s, {summary.decoded_images} images decoded", flush=True)
    return figures


def decode_figures(folder: Path, repeats: int) -> dict:
    """Images/s of one process decoding the full-size files, plain vs draft (median of ``repeats``,
    files already in the page cache), and the largest per-pixel difference between the two."""
    files = sorted((folder / "images").glob("*"))
    for path in files:
        path.read_bytes()  # in the page cache: decoding is measured, not the disk
    rates, made = {decoder: [] for decoder in images.DECODERS}, {}
    for _ in range(repeats):
        for decoder in images.DECODERS:
            started = time.perf_counter()
            made[decoder] = [images.load(path, SIZE, decoder=decoder) for path in files]
            rates[decoder].append(len(files) / (time.perf_counter() - started))
    plain, draft = statistics.median(rates["plain"]), statistics.median(rates["jpeg-draft"])
    differences = [
        np.abs(drafted.astype(np.int16) - full.astype(np.int16))
        for drafted, full in zip(made["jpeg-draft"], made["plain"], strict=True)
    ]
    worst = int(np.argmax([d.max() for d in differences]))
    return {
        "files": len(files),
        "plain_img_s": round(plain, 1),
        "draft_img_s": round(draft, 1),
        "plain_img_s_best": round(max(rates["plain"]), 1),
        "draft_img_s_best": round(max(rates["jpeg-draft"]), 1),
        "draft_speedup": round(draft / plain, 2),
        "max_abs_difference": int(differences[worst].max()),
        "max_difference_file": files[worst].name,
        "mean_abs_difference": round(float(np.mean([d.mean() for d in differences])), 4),
        "p99_abs_difference": float(np.percentile(np.concatenate([d.ravel() for d in differences]), 99)),
    }


def main(argv=None) -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cxr")
    parser.add_argument("--fullsize", type=Path, default=SHARED / "cxr-fullsize")
    parser.add_argument("--images", type=int, default=512, help="images for the pipeline vs bare comparison")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "mobilenet_v2"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-second-backbone", action="store_true")
    args = parser.parse_args(argv)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, Keras {keras.__version__}"
    print(f"{machine}; {args.images} radiographs at {SIZE[0]}x{SIZE[1]}, batch {args.batch_size}", flush=True)
    dataset = load_dataset(first_images(args.data, args.images))
    figures = {
        "machine": machine,
        "backend": keras.backend.backend(),
        "images": len(dataset),
        "batch_size": args.batch_size,
        "models": {name: model_figures(name, dataset, args.batch_size, args.repeats) for name in args.models},
    }
    if not args.skip_second_backbone:
        figures["second_backbone"] = second_backbone(args.data, args.models[0], args.models[-1], args.batch_size)
    figures["decode_full_size"] = decode_figures(args.fullsize, args.repeats)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
