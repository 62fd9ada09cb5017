"""GPU benchmark (Keras on JAX): extraction and fine-tuning images/s vs bare forward passes.

For each model and precision, measured in one run on the same GPU:
- bare: ``model.predict_on_batch`` on one device-ready batch of 256 (no decoding, no I/O);
- pipeline: featx's whole ``extract`` path (decode, letterbox, preprocess, store) over real
  radiographs reused under new names, as a whole (first batch's XLA compile included) and
  steady (after the first batch); the ratio is steady pipeline / bare;
- fine-tune: ``model.fit`` images/s of featx's phase-3 model (layers past the cutoff
  trainable), second epoch, images streamed from disk.

    KERAS_BACKEND=jax python bench/gpu.py --images DIR [--copies 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featx.backbones.registry import get_spec, preprocess  # noqa: E402
from featx.backbones.weights import build_base  # noqa: E402
from featx.data import images  # noqa: E402
from featx.data.dataset import dataset_from_paths  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402

SIZE = images.DEFAULT_SIZE


def many_files(source: Path, copies: int) -> list[Path]:
    """Symlinks to every image in ``source``, ``copies`` times under new names (new content ids
    are not needed: extraction speed does not depend on it, but distinct names keep rows apart)."""
    folder = Path(tempfile.mkdtemp(prefix="featx-gpu-"))
    originals = sorted(p for p in source.rglob("*.jpg"))
    links = []
    for copy in range(copies):
        for original in originals:
            link = folder / f"c{copy}_{original.name}"
            os.symlink(original.resolve(), link)
            links.append(link)
    return links


def bare_rate(model, spec, batch_uint8, repeats: int = 10) -> float:
    x = preprocess(spec, batch_uint8)
    model.predict_on_batch(x)
    started = time.perf_counter()
    for _ in range(repeats):
        np.asarray(model.predict_on_batch(x))
    return repeats * len(x) / (time.perf_counter() - started)


def finetune_rate(name, files, precision, batch_size=64) -> float:
    from featx.evaluation.finetune import FinetuneRecipe, build_finetune_model, compile_model, image_batches

    spec = get_spec(name)
    features = FeatureSpec(name, "imagenet" if spec.keras_module is None else "none", SIZE)
    model = build_finetune_model(features, FinetuneRecipe(spec.paper_head, precision=precision), 3).model
    compile_model(model, 1e-4)
    labels = np.arange(len(files)) % 3
    batches = image_batches([str(f) for f in files], labels, features, batch_size, shuffle_seed=0, workers=12)
    model.fit(batches, epochs=1, verbose=0)  # compile
    started = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    return len(files) / (time.perf_counter() - started)


def main(argv=None) -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    parser.add_argument("--finetune-images", type=int, default=2048, help="0 skips the fine-tuning measurement")
    args = parser.parse_args(argv)
    files = many_files(args.images, args.copies)
    dataset = dataset_from_paths(files)
    sample = np.stack([images.load(f, SIZE) for f in files[:256]])
    print(f"backend {keras.backend.backend()}, {len(files)} image files, input {SIZE[0]}x{SIZE[1]}")
    print(
        f"{'model':20s} {'precision':15s} {'bare fwd img/s':>15s} {'extract img/s':>14s} {'steady img/s':>14s} "
        f"{'ratio':>6s} {'finetune img/s':>15s}"
    )
    for name in args.models:
        spec = get_spec(name)
        weights = "imagenet" if spec.keras_module is None else "none"
        for precision in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_dtype_policy(precision)
            model, _ = build_base(spec, SIZE, weights)
            bare = bare_rate(model, spec, sample)
            with tempfile.TemporaryDirectory() as cache:
                summary = extract(
                    dataset, FeatureSpec(name, weights, SIZE), batch_size=256, cache_dir=cache, progress=False
                ).to_json()
            keras.mixed_precision.set_dtype_policy("float32")
            tuned = finetune_rate(name, files[: args.finetune_images], precision) if args.finetune_images else 0.0
            steady = summary["steady_images_per_s"]
            print(
                f"{name:20s} {precision:15s} {bare:15.0f} {summary['images_per_s']:14.0f} {steady:14.0f} "
                f"{steady / bare:6.2f} {tuned:15.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
