"""``featx compare``: every stored variant of a dataset side by side, with intervals."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import add_data, add_positive, new_command, output_file
from featx.cli.output import emit
from featx.exceptions import CacheError


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "compare",
        "every stored variant of a dataset side by side (phases 2 and 3, identical folds, 95% bootstrap intervals)",
        ["featx compare --subset dataset2", "featx compare --json --csv results.csv"],
    )
    add_data(parser, writes_cache=False)  # only the default CSV is written there: checked in run
    add_positive(parser)
    parser.add_argument(
        "--csv",
        type=output_file("--csv"),
        metavar="FILE",
        help="CSV file to write (default: CACHE/<dataset id>/compare.csv)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.fileio import check_output_file
    from featx.study.compare import compare_summaries, markdown_table, variant_row, write_csv

    dataset = inputs.dataset(args)
    csv = args.csv or check_output_file(f"{args.cache}/{dataset.id}/compare.csv", "--csv")
    summaries = compare_summaries(args.cache, dataset.id, args.positive)
    if not summaries:
        raise CacheError(f"No stored results for {dataset.describe()} in {args.cache}; run `featx fit` first")
    rows = [variant_row(summary) for summary in summaries]
    path = write_csv(rows, csv)
    lines = [
        f"{dataset.describe()}; 95% bootstrap intervals (patients resampled under the patient protocol)",
        markdown_table(rows, summaries[0].task),
        f"CSV: {path}",
    ]
    emit(args, {"dataset": dataset.describe(), "rows": rows, "csv": str(path)}, lines)
    return 0
