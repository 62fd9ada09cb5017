"""``featx predict``: class probabilities for radiographs from a saved model folder."""

from __future__ import annotations

import logging

from featx.cli.options import add_forward_batch, add_pixel_cache, new_command, output_file, output_folder
from featx.cli.output import emit

PARTIAL = 3
log = logging.getLogger("featx")


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "predict",
        "predict radiographs with a saved model folder (exit 3 when some files could not be read)",
        [
            "featx predict --model-dir models/lite0 new/ image.png --out preds.csv",
            "featx predict --model-dir models/lite0 new/ --explain cams/ --json",
        ],
    )
    parser.add_argument("--model-dir", required=True, metavar="DIR", help="a folder made by featx train")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--out", type=output_file("--out"), metavar="FILE", help="CSV file (default: print the table)")
    parser.add_argument(
        "--explain",
        type=output_folder("--explain"),
        metavar="DIR",
        help="write a heatmap overlay per image: Grad-CAM, CAM (linear heads) or occlusion (tree and kernel heads)",
    )
    add_forward_batch(parser)
    add_pixel_cache(parser, "predicting them again")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.fileio import csv_text
    from featx.models.predict import predict_files

    predictions = predict_files(
        args.model_dir,
        args.inputs,
        out_csv=args.out,
        explain_dir=args.explain,
        batch_size=args.batch_size,
        cache_dir=args.cache,
    )
    table = predictions.table
    for row in table[table["error"] != ""].itertuples():
        log.warning("could not predict %s: %s", row.file, row.error)
    if args.out is None:
        lines = [csv_text(table).rstrip()]
    else:
        lines = [f"{len(table)} rows written to {args.out}"]
    emit(args, predictions.to_json(), lines)
    if predictions.failed == len(table):
        log.error("none of the %d files could be predicted", len(table))
        return 1
    return PARTIAL if predictions.failed else 0
