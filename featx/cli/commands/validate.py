"""``featx validate``: a trained model on an external labelled folder, beside its cross-validated estimate."""

from __future__ import annotations

from pathlib import Path

from featx.cli.options import add_forward_batch, add_pixel_cache, new_command, output_folder
from featx.cli.output import emit


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "validate",
        "external validation: run a model folder over a labelled "
        "folder from other sources and set its figures beside the model's cross-validated ones",
        [
            "featx validate --model-dir models/lite0 --data hospital-b/ --out reports/hospital-b",
            "featx validate --model-dir models/lite0 --data covid-only/ --json",
        ],
    )
    parser.add_argument("--model-dir", required=True, metavar="DIR", help="a folder made by featx train")
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="the external folder: metadata.csv or class sub-folders; some classes may be absent",
    )
    parser.add_argument(
        "--out",
        type=output_folder("--out"),
        metavar="DIR",
        help="report folder (default: reports/validate-<model folder name>)",
    )
    add_forward_batch(parser)
    add_pixel_cache(parser, "a repeated validation")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.data.dataset import load_dataset
    from featx.fileio import check_output_folder, written_together
    from featx.study.validate import validate, write_predictions
    from featx.study.validation_report import summary_lines, validation_report

    out = check_output_folder(args.out or f"reports/validate-{Path(args.model_dir).resolve().name}", "--out")
    dataset = load_dataset(args.data, min_classes=1)
    validation = validate(args.model_dir, dataset, batch_size=args.batch_size, cache_dir=args.cache)
    with written_together(out) as staging:  # the report and the predictions it is computed from, or neither
        write_predictions(validation, staging)
        validation_report(validation, staging)
    predictions, markdown, html = (out / name for name in ("predictions.csv", "report.md", "report.html"))
    payload = {
        **validation.to_json(),
        "predictions": str(predictions),
        "report_md": str(markdown),
        "report_html": str(html),
    }
    emit(args, payload, summary_lines(validation) + [f"report: {markdown} and {html}; predictions: {predictions}"])
    return 0
