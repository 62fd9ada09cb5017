"""``featx extract``: phase 1, a backbone's pooled features cached in HDF5."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import add_backbone, add_data, integer, new_command
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
        ],
    )
    add_backbone(parser)
    add_data(parser)
    parser.add_argument("--batch-size", type=integer("--batch-size", 1), default=32, help="images per forward pass")
    parser.add_argument("--strict", action="store_true", help="stop before writing if any image cannot be decoded")
    parser.add_argument("--rebuild", action="store_true", help="discard an existing or damaged store first")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.features.extract import extract

    features = inputs.features(args)
    summary = extract(
        inputs.dataset(args),
        features,
        batch_size=args.batch_size,
        cache_dir=args.cache,
        strict=args.strict,
        rebuild=args.rebuild,
        progress=inputs.progress(args),
    )
    lines = [summary.store]
    lines += [f"skipped {skipped['image_id']}: {skipped['reason']}" for skipped in summary.skipped_files]
    state = "already complete, no CNN work" if summary.cached else f"{summary.images_per_s:.1f} images/s"
    label = ": RANDOM-INIT, not transfer learning" if summary.weights == "random-init" else ""
    lines.append(
        f"{summary.images} images, {summary.skipped} skipped, {state} "
        f"({summary.backbone}, weights {summary.weights}{label})"
    )
    emit(args, summary.to_json(), lines)
    return 0
