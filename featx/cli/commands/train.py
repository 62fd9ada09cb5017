"""``featx train``: cross-validate a variant, train it on every image, save a model folder."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import (
    add_backbone,
    add_data,
    add_head,
    add_jobs,
    add_positive,
    add_protocol,
    add_training,
    new_command,
    output_folder,
)
from featx.cli.output import emit


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "train",
        "train a final model on all the data and save it to a folder "
        "(with the cross-validated metrics of the same variant)",
        [
            "featx train --model efficientnet_lite0 --head mlp1000-750 --subset dataset2 --model-dir models/lite0",
            "featx train --model efficientnet_lite0 --head logreg --model-dir models/lite0-logreg",
        ],
    )
    add_backbone(parser)
    add_data(parser)
    add_protocol(parser)
    add_head(parser)
    add_positive(parser)
    add_jobs(parser)
    add_training(parser, {"epochs": None, "batch_size": None, "lr": None})
    parser.add_argument(
        "--model-dir",
        required=True,
        type=output_folder("--model-dir"),
        metavar="DIR",
        help="folder to save the model in",
    )
    parser.add_argument(
        "--finetune", action="store_true", help="fine-tune past the cutoff instead of a frozen backbone"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.models.folder import CrossValidationFigures
    from featx.models.train import train_model

    recipe = inputs.finetune_recipe(args) if args.finetune else inputs.head_recipe(args, args.model)
    manifest = train_model(
        inputs.dataset(args),
        inputs.features(args),
        recipe,
        inputs.protocol(args),
        model_dir=args.model_dir,
        cache_dir=args.cache,
        positive=args.positive,
        jobs=args.jobs,
        progress=inputs.progress(args),
    )
    cv = manifest.cross_validation
    lines = [
        f"model saved to {args.model_dir} ({manifest.backbone}, weights {manifest.weights}, head {manifest.head}"
        f"{', fine-tuned' if manifest.finetuned else ''})"
    ]
    if isinstance(cv, CrossValidationFigures):
        figures = cv.figures
        lines.append(
            f"chosen by {cv.protocol}-grouped CV: accuracy {figures['accuracy'] * 100:.2f}%, "
            f"{cv.positive} sens {figures['sensitivity'] * 100:.2f}%, spec {figures['specificity'] * 100:.2f}%"
        )
    else:
        lines.append(cv.note)
    emit(args, manifest.to_json(), lines)
    return 0
