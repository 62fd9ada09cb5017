"""``featx fit``: phase 2, a head trained on cached features over the saved folds, per extracted store."""

from __future__ import annotations

import logging
from itertools import product

from featx.cli import inputs
from featx.cli.options import (
    add_backbone,
    add_data,
    add_head,
    add_jobs,
    add_positive,
    add_protocol,
    add_training,
    bounded,
    new_command,
    size_text,
)
from featx.cli.output import emit, metrics_lines

log = logging.getLogger("featx")


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "fit",
        "phase 2: train a head on cached features over saved folds, "
        "for every extracted backbone (or the one named), and compare them",
        [
            "featx fit --head mlp1000-750 --data data/cxr",
            "featx fit --model efficientnet_lite0 --head logreg --sampler smote --subset dataset2",
            "featx fit --head mlp1000-750 --group-by image --json   # the paper's protocol",
            "featx fit --head logreg --folds 5 --repeats 3   # repeated cross-validation",
        ],
    )
    add_backbone(parser, required=False)
    add_data(parser)
    add_protocol(parser)
    add_head(parser)
    add_positive(parser)
    add_jobs(parser)
    add_training(parser, {"epochs": None, "batch_size": None, "lr": None})
    parser.add_argument(
        "--head-seed",
        type=bounded("--head-seed"),
        default=None,
        help="seed of the head and sampler apart from the folds' (default: --seed seeds both); the same "
        "variant under two head seeds shows the spread due to the head alone",
    )
    parser.add_argument(
        "--repeats",
        type=bounded("--repeats"),
        default=1,
        help="repeated cross-validation: fit on this many split sets, of seeds --seed, --seed + 1, ... (each saved "
        "once and shared by every variant); `featx compare --repeats` tests differences over all of them",
    )
    parser.add_argument("--refit", action="store_true", help="train again even if this variant's result exists")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.evaluation.crossval import fit_variant
    from featx.study.compare import markdown_table, variant_order, variant_row

    dataset = inputs.dataset(args)
    protocols = inputs.protocol(args).repeated(args.repeats)
    chosen = inputs.chosen_features(args, dataset)
    recipes = [inputs.head_recipe(args, features.backbone) for features in chosen]
    summaries = []
    for (features, recipe), protocol in product(zip(chosen, recipes, strict=True), protocols):
        if len(chosen) > 1:
            log.info(
                "%s (%s, %s) + %s", features.backbone, features.weights, size_text(features.input_size), recipe.head
            )
        summaries.append(
            fit_variant(
                dataset,
                features,
                recipe,
                protocol,
                cache_dir=args.cache,
                refit=args.refit,
                positive=args.positive,
                jobs=args.jobs,
                progress=inputs.progress(args),
                head_seed=args.head_seed,
            )
        )
    lines = [line for summary in summaries for line in metrics_lines(summary)]
    if len(summaries) > 1:
        rows = [variant_row(summary) for summary in sorted(summaries, key=variant_order)]
        lines += ["", markdown_table(rows, summaries[0].task)]
    payload = summaries[0].to_json() if len(summaries) == 1 else {"variants": [s.to_json() for s in summaries]}
    emit(args, payload, lines)
    return 0
