"""``featx compare``: every stored variant of a dataset side by side, with intervals."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import add_data, add_positive, new_command
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
    add_data(parser)
    add_positive(parser)
    parser.add_argument("--csv", metavar="FILE", help="CSV file to write (default: CACHE/<dataset id>/compare.csv)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.study.compare import compare_rows, markdown_table, write_csv

    dataset = inputs.dataset(args)
    rows = compare_rows(args.cache, dataset.id, args.positive)
    if not rows:
        raise CacheError(f"No stored results for {dataset.describe()} in {args.cache}; run `featx fit` first")
    path = write_csv(rows, args.csv or f"{args.cache}/{dataset.id}/compare.csv")
    lines = [
        f"{dataset.describe()}; 95% bootstrap intervals (patients resampled under the patient protocol)",
        markdown_table(rows),
        f"CSV: {path}",
    ]
    emit(args, {"dataset": dataset.describe(), "rows": rows, "csv": str(path)}, lines)
    return 0
