"""GPU benchmark (Keras on JAX): phase 1's pipeline against the bare forward pass, and the whole paper's phase 1.

Measured in one run on the same GPU:

- bare: the backbone's ``predict_on_batch`` on one preprocessed batch already on the device,
  repeated (no decoding, no I/O, no transfer);
- pipeline: featx's whole ``extract`` path over >= 20,000 image files (the shared radiographs
  under new names), every image decoded in worker processes (``pixel_cache=False``, as for a
  first backbone), uint8 batches staged on the device ahead, chunks, store: steady images/s after
  the first batch, and the ratio steady / bare (target >= 0.8), for each model and precision;
  and the same again reading the pixel cache (a second backbone);
- phase 1 of the paper: every registered backbone over the 2,173 radiographs in one cache (ImageNet
  weights where they are on the machine, ``none`` otherwise), with its wall time;
- fine-tuning (optional): ``model.fit`` images/s of the phase-3 model, second epoch.

Ends with one JSON line of every figure.

    KERAS_BACKEND=jax python bench/gpu.py [--data ../shared/data/cxr] [--copies 10] [--workers 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featx.backbones.registry import BACKBONES, get_preprocessing, get_spec  # noqa: E402
from featx.backbones.weights import PRECISIONS, build_base, imagenet_availability  # noqa: E402
from featx.data import images  # noqa: E402
from featx.data.dataset import dataset_from_paths, load_dataset  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402

SIZE = images.DEFAULT_SIZE
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"


def many_files(source: Path, copies: int, limit: int | None = None) -> list[Path]:
    """Copies of every radiograph in ``source/images`` under new names, ``copies`` times.

    Each copy gets one changed trailing byte (after the JPEG end marker, which decoders ignore),
    so every file has its own content hash and is decoded on its own: no cache can serve one
    file for another.
    """
    folder = Path(tempfile.mkdtemp(prefix="featx-gpu-"))
    originals = sorted((source / "images").glob("*.jpg"))
    files = []
    for copy in range(copies):
        for original in originals:
            target = folder / f"c{copy}_{original.name}"
            target.write_bytes(original.read_bytes() + copy.to_bytes(4, "little"))
            files.append(target)
            if limit and len(files) >= limit:
                return files
    return files


def weights_for(name: str) -> str:
    """ImageNet where it is on this machine, random-init otherwise (speed does not depend on values)."""
    return "imagenet" if imagenet_availability(get_spec(name))[0] else "none"


def bare_rate(name: str, precision: str, sample: np.ndarray, batch_size: int, repeats: int = 20) -> float:
    """images/s of ``predict_on_batch`` on one preprocessed batch already on the device."""
    import keras

    spec = get_spec(name)
    model, _ = build_base(spec, SIZE, weights_for(name), precision)
    batch = get_preprocessing(spec.preprocessing).host(sample[:batch_size])
    if keras.backend.backend() == "jax":
        import jax

        batch = jax.device_put(batch)
    np.asarray(model.predict_on_batch(batch))  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        np.asarray(model.predict_on_batch(batch))
    return repeats * batch_size / (time.perf_counter() - started)


def pipeline_figures(name, precision, dataset, *, batch_size, workers) -> dict:
    """The whole ``extract`` path decoding every image, then again reading a filled pixel cache."""
    features = FeatureSpec(backbone=name, weights=weights_for(name), input_size=SIZE, precision=precision)
    with tempfile.TemporaryDirectory() as cache:
        options = {"batch_size": batch_size, "cache_dir": cache, "progress": False, "workers": workers}
        decoding = extract(dataset, features, pixel_cache=False, **options)
        extract(dataset, features, rebuild=True, **options)  # again, filling the pixel cache
        features.key(dataset.id).path(cache).unlink()  # the store goes, the pixels stay: a second backbone's case
        reading = extract(dataset, features, **options)
    assert reading.decoded_images == 0
    return {
        "decoding_steady_img_s": decoding.steady_images_per_s,
        "decoding_whole_run_img_s": decoding.images_per_s,
        "pixel_cache_steady_img_s": reading.steady_images_per_s,
    }


def finetune_rate(name, files, precision, batch_size=64) -> float:
    """``model.fit`` images/s of the phase-3 model (layers past the cutoff trainable), second epoch."""
    from featx.evaluation.finetune import FinetuneRecipe, build_finetune_model, compile_model, image_batches

    spec = get_spec(name)
    features = FeatureSpec(backbone=name, weights=weights_for(name), input_size=SIZE)
    model = build_finetune_model(features, FinetuneRecipe(head=spec.paper_head, precision=precision), 3).model
    compile_model(model, 1e-4)
    labels = np.arange(len(files)) % 3
    batches = image_batches([str(f) for f in files], labels, features, batch_size, shuffle_seed=0, workers=12)
    model.fit(batches, epochs=1, verbose=0)  # compile
    started = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    return len(files) / (time.perf_counter() - started)


def paper_phase1(data: Path, *, batch_size, workers, limit=None) -> dict:
    """Every registered backbone over the data folder in one cache (pixels decoded once), with wall time."""
    dataset = load_dataset(data)
    if limit:
        dataset = dataset_from_paths(list(dataset.table["path"][:limit]))
    started = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in BACKBONES:
            summary = extract(
                dataset,
                FeatureSpec(backbone=name, weights=weights_for(name), input_size=SIZE),
                batch_size=batch_size,
                cache_dir=cache,
                progress=False,
                workers=workers,
            )
            runs[name] = {
                "weights": summary.weights,
                "seconds": summary.seconds,
                "steady_img_s": summary.steady_images_per_s,
                "decoded_images": summary.decoded_images,
            }
            print(f"  phase 1 {name} ({summary.weights}): {summary.seconds:.1f} s", flush=True)
    return {"images": len(dataset), "wall_seconds": round(time.perf_counter() - started, 1), "backbones": runs}


def main(argv=None) -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="a featx data folder (images/*.jpg)")
    parser.add_argument("--copies", type=int, default=10, help="copies of every image (10 x 2,173 >= 20,000 files)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many files (a quick check)")
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--phase1-limit", type=int, default=None, help="at most this many images in phase 1")
    parser.add_argument("--skip-phase1", action="store_true")
    parser.add_argument("--finetune-images", type=int, default=0, help="0 skips the fine-tuning measurement")
    args = parser.parse_args(argv)
    files = many_files(args.data, args.copies, args.limit)
    dataset = dataset_from_paths(files)
    sample = np.stack([images.load(f, SIZE) for f in files[: args.batch_size]])
    if len(sample) < args.batch_size:
        sample = np.concatenate([sample] * (args.batch_size // len(sample) + 1))[: args.batch_size]
    figures = {"backend": keras.backend.backend(), "files": len(files), "batch_size": args.batch_size, "models": {}}
    print(f"backend {figures['backend']}, {len(files)} image files, input {SIZE[0]}x{SIZE[1]}", flush=True)
    for name in args.models:
        for precision in args.precisions:
            bare = bare_rate(name, precision, sample, args.batch_size)
            pipeline = pipeline_figures(name, precision, dataset, batch_size=args.batch_size, workers=args.workers)
            row = {
                "bare_img_s": round(bare, 1),
                **pipeline,
                "pipeline_vs_bare": round(pipeline["decoding_steady_img_s"] / bare, 3),
                "pixel_cache_vs_bare": round(pipeline["pixel_cache_steady_img_s"] / bare, 3),
            }
            if args.finetune_images:
                row["finetune_img_s"] = round(finetune_rate(name, files[: args.finetune_images], precision), 1)
            figures["models"][f"{name}/{precision}"] = row
            print(f"  {name} {precision}: {row}", flush=True)
    if not args.skip_phase1:
        figures["paper_phase1"] = paper_phase1(
            args.data, batch_size=args.batch_size, workers=args.workers, limit=args.phase1_limit
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
