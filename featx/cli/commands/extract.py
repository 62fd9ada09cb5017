"""``featx extract``: phase 1, a backbone's pooled features cached in HDF5."""

from __future__ import annotations

import dataclasses

from featx.cli import inputs
from featx.cli.options import add_backbone, add_data, add_engine, add_forward_batch, add_runtime, bounded, new_command
from featx.cli.output import emit


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "extract",
        "phase 1: run a frozen backbone once over the images and cache its pooled features",
        [
            "featx extract --model efficientnet_lite0 --data data/cxr",
            "featx extract --model xception --weights none --subset dataset2 --json",
            "featx extract --model mobilenet_v2 --precision bf16  # CPU with AVX512_BF16 or AMX: OpenVINO, bfloat16",
            "featx extract --model mobilenet_v2 --precision bf16 --workers 16  # GPU, KERAS_BACKEND=jax",
            "featx extract --model efficientnet_lite0 --engine ray --address auto --gpus-per-worker 1",
        ],
    )
    add_backbone(parser)
    add_data(parser)
    add_engine(parser)
    add_runtime(parser)
    add_forward_batch(parser)
    parser.add_argument("--strict", action="store_true", help="stop before writing if any image cannot be decoded")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="discard an existing or damaged store, and its pixel cache, first, and run every image through the "
        "backbone (without it, rows other stores of the same features hold are copied)",
    )
    parser.add_argument(
        "--no-pixel-cache",
        dest="pixel_cache",
        action="store_false",
        help="decode every image instead of reading and keeping letterboxed pixels in CACHE/pixels",
    )
    parser.add_argument(
        "--lock-timeout",
        type=bounded("--lock-timeout"),
        metavar="S",
        help="seconds to wait while another featx process extracts the same store, then reuse its store "
        "(0: fail at once; default: an hour)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.features.extract import LOCK_TIMEOUT, extract

    features = dataclasses.replace(inputs.features(args), precision=args.precision, runtime=args.runtime)
    summary = extract(
        inputs.dataset(args),
        features,
        batch_size=args.batch_size,
        cache_dir=args.cache,
        strict=args.strict,
        rebuild=args.rebuild,
        progress=inputs.progress(args),
        pixel_cache=args.pixel_cache,
        engine=inputs.engine(args),
        lock_timeout=LOCK_TIMEOUT if args.lock_timeout is None else args.lock_timeout,
    )
    lines = [summary.store]
    if not summary.cached:
        lines.append(f"{summary.decoded_images} images decoded, {summary.resumed_images} resumed from earlier chunks")
    if summary.pixel_cache is not None:
        lines.append(f"pixel cache {summary.pixel_cache}: {summary.pixel_cache_bytes / 1e6:.1f} MB on disk")
    lines += [f"skipped {skipped.image_id}: {skipped.reason}" for skipped in summary.skipped_files]
    state = "already complete, no CNN work" if summary.cached else f"{summary.images_per_s:.1f} images/s"
    label = ": RANDOM-INIT, not transfer learning" if summary.weights == "random-init" else ""
    lines.append(
        f"{summary.images} images, {summary.skipped} skipped, {state} "
        f"({summary.backbone}, weights {summary.weights}{label}, runtime {summary.runtime})"
    )
    emit(args, summary.to_json(), lines)
    return 0
