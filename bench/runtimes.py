"""Benchmark (CPU): the backbone runtimes, bare and inside the whole `extract`, per backbone.

Measured in one run, on the real radiographs of ../shared/data/cxr:

- per backbone, runtime and precision (Keras float32; OpenVINO float32; OpenVINO bfloat16 where the
  CPU has bfloat16 instructions): the bare forward pass, uint8 batches already decoded and
  letterboxed fed to the loaded model (:class:`featx.features.runtime.Runner`), images/s after a
  warm-up batch; the seconds to load it (the first OpenVINO load converts, later ones read the
  cached conversion); and the deviation of its features from Keras float32 (largest and mean
  absolute difference, relative to the largest |feature|);
- per backbone, the whole `extract` in Keras float32 (today's path) from a fresh cache, the bar of issue 20's
  "done when": each default `extract` below gives its ratio to it (``extract_vs_keras_extract``);
- per backbone, the whole `extract` under the default runtime (``auto``) in each precision, from a
  fresh cache (every image decoded) and again reading the pixels it cached: steady images/s after
  the first batch, and the ratio to the bare forward of the same runtime;
- per backbone and precision, where the whole `extract`'s time goes (``accounting``), measured in
  the same run: hashing every file (sha256, what loading a dataset costs), the CPU seconds of
  decoding and letterboxing every image (one after another in this process, ``process_time``: what the
  decoding workers do, without the pool's own costs),
  and inside each `extract` its seconds in the forward pass, in writing chunks, in assembling the
  store and in waiting for pixels (the rest); then the gap of the cold `extract` to the bare forward
  beside the decoding CPU seconds (issue 20 item 4: on two cores the decoder and the model share
  them, so the gap should be no more than the decoding CPU time), and the pixel-cache `extract`
  against the bare forward (target >= 0.95).

Each backbone is measured ``--repeats`` times (default 3), every runtime and `extract` once per repeat; the
median of each rate and of each ratio taken within a repeat is its summary (rates on this 2-core machine
move by about 15% from one minute to the next). Ends with one JSON line of every figure.

    python bench/runtimes.py [--images 1024] [--models efficientnet_lite0 mobilenet_v2] [--input-size 200x266]
        [--repeats 3]

Run it on a quiet machine: every figure is a rate, and other work on the cores slows each one.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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

from bench.extract import SHARED, first_images, weights_for  # noqa: E402
from featx.backbones.registry import BACKBONES  # noqa: E402
from featx.backbones.weights import PRECISIONS  # noqa: E402
from featx.data import images  # noqa: E402
from featx.data.dataset import load_dataset  # noqa: E402
from featx.features import chunks, runtime  # noqa: E402
from featx.features.extract import extract  # noqa: E402
from featx.features.forward import Forward  # noqa: E402
from featx.features.identity import FeatureSpec  # noqa: E402
from featx.fileio import sha256_file  # noqa: E402

FLOAT32, BFLOAT16 = PRECISIONS


def settings() -> list[tuple[str, str]]:
    """(runtime, precision) pairs this machine can run, Keras float32 (the reference) first."""
    pairs = [("keras", FLOAT32)]
    if runtime.RUNTIMES["openvino"].available():
        pairs.append(("openvino", FLOAT32))
        if runtime.cpu_has_bf16():
            pairs.append(("openvino", BFLOAT16))
    return pairs


def decoded(dataset, size) -> tuple[np.ndarray, float]:
    """Every image of ``dataset`` letterboxed to ``size``, (N, H, W, 3) uint8, and the CPU seconds of decoding
    and letterboxing them one after another in this process (``process_time``): the work a decoding worker
    does per image, without the pool's own costs (processes, shared memory), which the `extract` pays."""
    started = time.process_time()
    compact = [images.load_compact(path, size, None, "jpeg-draft") for path in dataset.table["path"]]
    seconds = time.process_time() - started
    return np.stack([images.as_rgb(pixels) for pixels in compact]), seconds


def hashing_seconds(dataset) -> float:
    """Seconds to hash every file of ``dataset`` (sha256 of its bytes, as loading a dataset does)."""
    started = time.perf_counter()
    for path in dataset.table["path"]:
        sha256_file(path)
    return time.perf_counter() - started


@contextlib.contextmanager
def timed(stages: dict):
    """Time, while open, the stages of `extract` named in ``stages`` (name -> (owner, attribute)): each call's
    seconds are added up under its name in the dict this yields."""
    totals = dict.fromkeys(stages, 0.0)
    originals = {name: getattr(owner, attribute) for name, (owner, attribute) in stages.items()}

    def wrapper(name, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - started

        return call

    for name, (owner, attribute) in stages.items():
        setattr(owner, attribute, wrapper(name, originals[name]))
    try:
        yield totals
    finally:
        for name, (owner, attribute) in stages.items():
            setattr(owner, attribute, originals[name])


EXTRACT_STAGES = {
    "load_s": (Forward, "__init__"),
    "forward_s": (Forward, "_features"),
    "chunk_write_s": (chunks, "write_chunk"),
    "store_write_s": (importlib.import_module("featx.features.extract"), "write_store"),
}
"""Where the whole `extract`'s time goes: loading the backbone in its runtime (the cached conversion read and
compiled), its forward pass (the runner, batch by batch), the kill-safe chunks, the store assembled from
them (with its contents checksum)."""


def accounted_extract(dataset, features: FeatureSpec, batch_size: int, cache) -> tuple:
    """One `extract` into ``cache`` and its time by stage (see :data:`EXTRACT_STAGES`); waiting for pixels
    (decoding, or reading the pixel cache, beyond what overlaps the model) is the rest of its batch loop."""
    with timed(EXTRACT_STAGES) as stages:
        summary = extract(dataset, features, batch_size=batch_size, cache_dir=cache, progress=False)
    loop = summary.seconds  # loading the backbone and the batch loop; the store is assembled after it
    waiting = loop - stages["load_s"] - stages["forward_s"] - stages["chunk_write_s"]
    figures = {"loop_s": round(loop, 2), **{name: round(value, 2) for name, value in stages.items()}}
    return summary, {**figures, "waiting_for_pixels_s": round(waiting, 2)}


def bare(features: FeatureSpec, pixels: np.ndarray, batch_size: int) -> tuple[dict, np.ndarray]:
    """Load time, steady images/s of the loaded runner over ``pixels``, and its features."""
    started = time.perf_counter()
    runner = runtime.RUNTIMES[features.runtime].load(features, batch_size)
    loaded = time.perf_counter() - started
    padding = (-len(pixels)) % batch_size
    batches = np.concatenate([pixels, pixels[:padding]]).reshape(-1, batch_size, *pixels.shape[1:])
    runner.features(runner.stage(batches[0]))  # warm-up: tracing, first allocations
    started = time.perf_counter()
    outputs = [runner.features(runner.stage(batch)) for batch in batches]
    seconds = time.perf_counter() - started
    figures = {"load_s": round(loaded, 2), "bare_img_s": round(len(pixels) / seconds, 2)}
    return figures, np.concatenate(outputs)[: len(pixels)]


def deviation(features: np.ndarray, reference: np.ndarray) -> dict:
    """Largest and mean absolute difference from ``reference``, relative to its largest |feature|."""
    scale = float(np.abs(reference).max()) or 1.0
    difference = np.abs(features - reference)
    return {
        "max_rel_dev": float(f"{difference.max() / scale:.3g}"),
        "mean_rel_dev": float(f"{difference.mean() / scale:.3g}"),
    }


def whole_extract(dataset, features: FeatureSpec, batch_size: int) -> dict:
    """Steady images/s of ``extract`` from a fresh cache (every image decoded), then reading its pixel cache,
    with each run's time by stage (see :func:`accounted_extract`)."""
    with tempfile.TemporaryDirectory() as cache:
        cold, cold_stages = accounted_extract(dataset, features, batch_size, cache)
        Path(cold.store).unlink()
        warm, warm_stages = accounted_extract(dataset, features, batch_size, cache)
    assert cold.decoded_images == len(dataset) and warm.decoded_images == 0
    return {
        "runtime": cold.runtime,
        "extract_img_s": cold.steady_images_per_s,
        "extract_whole_run_img_s": cold.images_per_s,
        "extract_pixel_cache_img_s": warm.steady_images_per_s,
        "stages_decoded": cold_stages,
        "stages_pixel_cache": warm_stages,
    }


def accounting(whole: dict, images: int, bare_img_s: float, decode_cpu_s: float, hash_s: float) -> dict:
    """The cold `extract`'s gap to the bare forward beside the decoding CPU seconds, and the pixel-cache
    `extract` against the bare forward (the targets of issue 20 item 4); the backbone's load left out of both."""
    bare_s = images / bare_img_s
    decoded = whole["stages_decoded"]["loop_s"] - whole["stages_decoded"]["load_s"]
    cached = whole["stages_pixel_cache"]["loop_s"] - whole["stages_pixel_cache"]["load_s"]
    gap = decoded - bare_s
    return {
        "hash_s": round(hash_s, 2),
        "decode_cpu_s": round(decode_cpu_s, 2),
        "bare_forward_s": round(bare_s, 2),
        "decoded_extract_s": round(decoded, 2),
        "decoded_gap_to_bare_s": round(gap, 2),
        "decoded_gap_within_decode_cpu": bool(gap <= decode_cpu_s),
        "pixel_cache_extract_s": round(cached, 2),
        "pixel_cache_vs_bare": round(bare_s / cached, 3) if cached > 0 else None,
    }


def model_figures(name: str, dataset, pixels: np.ndarray, size, batch_size: int, costs: dict) -> dict:
    """Every runtime's bare figures and the default runtime's whole `extract` and its accounting, for one
    backbone (``costs``: this run's ``decode_cpu_s`` and ``hash_s``)."""
    weights = weights_for(name)
    runtimes, reference = {}, None
    for runtime_name, precision in settings():
        features = FeatureSpec(
            backbone=name, weights=weights, input_size=size, precision=precision, runtime=runtime_name
        )
        figures, outputs = bare(features, pixels, batch_size)
        reference = outputs if reference is None else reference
        runtimes[f"{runtime_name}-{precision}"] = {**figures, **deviation(outputs, reference)}
        print(f"  {name} {runtime_name} {precision}: {runtimes[f'{runtime_name}-{precision}']}", flush=True)
    keras_extract = whole_extract(
        dataset, FeatureSpec(backbone=name, weights=weights, input_size=size, runtime="keras"), batch_size
    )  # today's path, the bar of issue 20's "done when"
    print(f"  {name} extract (keras, float32): {keras_extract}", flush=True)
    default = {}
    for precision in sorted({precision for _, precision in settings()}):
        whole = whole_extract(
            dataset, FeatureSpec(backbone=name, weights=weights, input_size=size, precision=precision), batch_size
        )
        own = runtimes[f"{whole['runtime']}-{precision}"]["bare_img_s"]
        whole["extract_vs_bare"] = round(whole["extract_img_s"] / own, 3)
        whole["extract_pixel_cache_vs_bare"] = round(whole["extract_pixel_cache_img_s"] / own, 3)
        whole["extract_vs_keras_extract"] = round(whole["extract_img_s"] / keras_extract["extract_img_s"], 3)
        whole["accounting"] = accounting(whole, len(dataset), own, **costs)
        default[precision] = whole
        print(f"  {name} extract (auto, {precision}): {whole}", flush=True)
    return {"weights": weights, "runtimes": runtimes, "keras_extract": keras_extract, "extract": default}


def medians(repeats: list[dict]) -> dict:
    """The median over repeats of :func:`model_figures` of each rate and each ratio taken within one repeat."""

    def median(pick):
        return round(float(np.median([pick(figures) for figures in repeats])), 3)

    first = repeats[0]
    summary = {
        f"bare_img_s {key}": median(lambda f, k=key: f["runtimes"][k]["bare_img_s"]) for key in first["runtimes"]
    }
    summary["keras_extract_img_s"] = median(lambda f: f["keras_extract"]["extract_img_s"])
    for precision in first["extract"]:
        for figure in ("extract_img_s", "extract_pixel_cache_img_s", "extract_vs_keras_extract", "extract_vs_bare"):
            summary[f"{figure} {precision}"] = median(lambda f, p=precision, g=figure: f["extract"][p][g])
        summary[f"pixel_cache_vs_bare {precision}"] = median(
            lambda f, p=precision: f["extract"][p]["accounting"]["pixel_cache_vs_bare"]
        )
    return summary


def main(argv=None) -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cxr")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", default="200x266", help="WIDTHxHEIGHT")
    parser.add_argument("--models", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--repeats", type=int, default=3, help="whole measurements per backbone, one after another")
    args = parser.parse_args(argv)
    size = tuple(int(side) for side in args.input_size.lower().split("x"))
    openvino = runtime.RUNTIMES["openvino"]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, bf16 {'yes' if runtime.cpu_has_bf16() else 'no'}, "
        f"Python {platform.python_version()}, Keras {keras.__version__} on {keras.backend.backend()}, "
        f"OpenVINO {openvino.version() if openvino.available() else 'not installed'}"
    )
    print(f"{machine}; {args.images} radiographs at {args.input_size}, batch {args.batch_size}", flush=True)
    dataset = load_dataset(first_images(args.data, args.images))
    pixels, decode_cpu_s = decoded(dataset, size)
    costs = {"decode_cpu_s": decode_cpu_s, "hash_s": hashing_seconds(dataset)}
    figures = {
        "machine": machine,
        "load_average_start": round(os.getloadavg()[0], 2),
        "images": len(dataset),
        "input_size": list(size),
        "batch_size": args.batch_size,
        "auto": runtime.resolve_runtime(),
        **costs,
        "repeats": args.repeats,
        "models": {},
    }
    for name in args.models:  # each repeat measures every runtime and extract once: its ratios are its own
        repeats = [model_figures(name, dataset, pixels, size, args.batch_size, costs) for _ in range(args.repeats)]
        figures["models"][name] = {"median": medians(repeats), "repeats": repeats}
        print(f"  {name} median of {args.repeats}: {figures['models'][name]['median']}", flush=True)
    figures["load_average_end"] = round(os.getloadavg()[0], 2)  # other work on the machine slows every figure
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
