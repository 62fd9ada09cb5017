"""``featx select``: nested cross-validation of choosing the best of several variants, the estimate of the
choice itself rather than the flattering figure of the variant chosen."""

from __future__ import annotations

from itertools import product

from featx.cli import inputs
from featx.cli.options import (
    OptionError,
    add_backbone,
    add_data,
    add_head,
    add_jobs,
    add_positive,
    add_protocol,
    add_training,
    bounded,
    new_command,
)
from featx.cli.output import emit
from featx.evaluation.metrics import METRICS


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "select",
        "nested cross-validation: choose the best of several variants inside each outer training fold, and "
        "estimate that choice on the outer folds (the best variant's own cross-validated figure flatters it)",
        [
            "featx select --subset dataset2   # the paper's head with each imbalance strategy",
            "featx select --head logreg svm mlp1000-750 --sampler none class-weight",
            "featx select --model efficientnet_lite0 --head logreg --sampler none smote --metric auc_positive",
        ],
    )
    add_backbone(parser, required=False)
    add_data(parser)
    add_protocol(parser)
    add_head(parser, several=True)
    add_positive(parser)
    add_jobs(parser)
    add_training(parser, {"epochs": None, "batch_size": None, "lr": None})
    parser.add_argument(
        "--metric",
        choices=list(METRICS),
        default=next(iter(METRICS)),
        help="the figure the choice maximises (default: %(default)s)",
    )
    parser.add_argument(
        "--inner-folds",
        type=bounded("--inner-folds"),
        default=5,
        help="folds of the inner cross-validation on each outer fold's training images, grouped as the outer "
        "ones (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.evaluation.selection import nested_select
    from featx.study.compare import selection_lines

    dataset = inputs.dataset(args)
    candidates = [
        (features, inputs.head_recipe(args, features.backbone, head, sampler))
        for features, head, sampler in product(inputs.chosen_features(args, dataset), args.head, args.sampler)
    ]
    candidates = list(dict.fromkeys(candidates))
    if len(candidates) < 2:
        described = ", ".join(
            f"{features.backbone} + {recipe.head} ({recipe.sampler})" for features, recipe in candidates
        )
        raise OptionError(
            f"featx select chooses among at least two candidates, got 1 ({described}): give several --head or "
            "--sampler values, or leave out --model where several backbones are extracted"
        )
    selection = nested_select(
        dataset,
        candidates,
        inputs.protocol(args),
        metric=args.metric,
        inner_folds=args.inner_folds,
        cache_dir=args.cache,
        positive=args.positive,
        jobs=args.jobs,
        progress=inputs.progress(args),
    )
    emit(args, {"dataset": dataset.describe(), **selection.to_json()}, selection_lines(selection))
    return 0
