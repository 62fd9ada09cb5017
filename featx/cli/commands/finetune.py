"""``featx finetune``: phase 3, the layers past the paper's cutoff trained end to end, per fold."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import (
    add_backbone,
    add_data,
    add_head,
    add_positive,
    add_protocol,
    add_training,
    bounded,
    new_command,
)
from featx.cli.output import emit, metrics_lines


def register(subparsers, common) -> None:
    from featx.evaluation.finetune import DEFAULT_LR, PRECISIONS

    parser = new_command(
        subparsers,
        common,
        "finetune",
        "phase 3: fine-tune past the paper's cutoff on each fold (same folds and result format as fit)",
        [
            "featx finetune --model efficientnet_lite0 --subset dataset2 --epochs 2",
            "featx finetune --model mobilenet_v2 --weights none --precision mixed_bfloat16",
        ],
    )
    add_backbone(parser)
    add_data(parser)
    add_protocol(parser)
    add_head(parser, samplers=False)
    add_positive(parser)
    add_training(parser, {"epochs": 10, "batch_size": 64, "lr": DEFAULT_LR})
    parser.add_argument("--cutoff", type=bounded("--cutoff"), help="first trainable layer (default: the paper's)")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument(
        "--warm-start", action="store_true", help="initialise the head from the phase-2 head trained on cached features"
    )
    parser.add_argument("--refit", action="store_true", help="train again even if this variant's result exists")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.evaluation.finetune import finetune_variant

    summary = finetune_variant(
        inputs.dataset(args),
        inputs.features(args),
        inputs.finetune_recipe(args),
        inputs.protocol(args),
        cache_dir=args.cache,
        refit=args.refit,
        positive=args.positive,
        progress=inputs.progress(args),
    )
    emit(args, summary.to_json(), metrics_lines(summary))
    return 0
