"""``featx compare``: every stored variant of a dataset side by side, with intervals, and with
``--baseline`` each variant's paired differences from a baseline (which differences are real)."""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import OptionError, add_data, add_positive, bounded, new_command, output_file
from featx.cli.output import emit
from featx.evaluation.paired import CORRECTIONS
from featx.exceptions import CacheError

FIRST_SHOWN = ""
"""``--baseline`` without a name: the first variant shown."""


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "compare",
        "every stored variant of a dataset side by side (phases 2 and 3, identical folds, 95% bootstrap intervals); "
        "with --baseline, each variant's paired difference from a baseline, its interval and adjusted p-value",
        [
            "featx compare --subset dataset2",
            "featx compare --json --csv results.csv",
            "featx compare --baseline   # differences from the first variant shown",
            "featx compare --baseline logreg-none --correction fdr_bh",
            "featx compare --repeats 3 --baseline   # after featx fit --repeats 3",
        ],
    )
    add_data(parser, writes_cache=False)  # only the default CSV is written there: checked in run
    add_positive(parser)
    parser.add_argument(
        "--baseline",
        nargs="?",
        const=FIRST_SHOWN,
        metavar="VARIANT",
        help="compare every variant with this one on the same images and folds: its name as listed (or text only "
        "its name holds); without a name, the first variant shown. Every variant must share its dataset, protocol "
        "and saved folds (default: no paired comparison)",
    )
    parser.add_argument(
        "--correction",
        choices=list(CORRECTIONS),
        default="holm",
        help="how --baseline's p-values are adjusted over the comparisons shown: "
        + "; ".join(f"{name}: {text}" for name, text in CORRECTIONS.items()),
    )
    parser.add_argument(
        "--repeats",
        type=bounded("--repeats"),
        default=None,
        help="repeated cross-validation: each variant over the split sets of seeds S..S+R-1 (`featx fit --seed S "
        "--repeats R`; S is --seed); the rows are those of seed S with each figure's spread over the split sets, "
        "differences are averaged over them and tested by the corrected resampled t-test on every fold "
        "(default: every stored result on its own)",
    )
    parser.add_argument(
        "--seed",
        type=bounded("--seed"),
        default=0,
        help="with --repeats: the first split set's seed, as given to `featx fit --seed S --repeats R`",
    )
    parser.add_argument(
        "--csv",
        type=output_file("--csv"),
        metavar="FILE",
        help="CSV file to write (default: CACHE/<dataset id>/compare.csv)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.fileio import check_output_file
    from featx.study.compare import (
        add_differences,
        add_repeat_spread,
        best_variant,
        choose_baseline,
        compare_summaries,
        difference_record,
        differences_table,
        markdown_table,
        paired_against,
        repeated_runs,
        variant_row,
        write_csv,
    )

    dataset = inputs.dataset(args)
    csv = args.csv or check_output_file(f"{args.cache}/{dataset.id}/compare.csv", "--csv")
    summaries = compare_summaries(args.cache, dataset.id, args.positive)
    if not summaries:
        raise CacheError(f"No stored results for {dataset.describe()} in {args.cache}; run `featx fit` first")
    runs, notes = [(summary,) for summary in summaries], []
    if args.seed and args.repeats is None:
        raise OptionError("--seed chooses the first of the split sets of --repeats; give --repeats R with it")
    if args.repeats is not None:
        runs, left_out = repeated_runs(summaries, args.repeats, args.seed)
        summaries = [run[0] for run in runs]
        last = args.seed + args.repeats - 1
        notes.append(
            f"Repeated cross-validation: figures of the split set of seed {args.seed}; differences averaged over the "
            f"{args.repeats} split sets of seeds {args.seed}..{last}; *_repeat_std in the CSV and --json: the "
            "spread over the split sets (with the split and the head's seed together unless `featx fit --head-seed` "
            "fixed the latter)."
        )
        notes += [f"Left out (not on all {args.repeats} split sets): {variant}" for variant in left_out]
    task = summaries[0].task
    rows = [variant_row(summary) for summary in summaries]
    if args.repeats is not None:
        for row, run in zip(rows, runs, strict=True):
            add_repeat_spread(row, run)
    payload = {"dataset": dataset.describe()}
    paired_lines = [f"Variants: {', '.join(row['variant'] for row in rows)}"]
    if args.baseline is not None:
        baseline = summaries.index(choose_baseline(summaries, args.baseline))
        if len(summaries) < 2:
            raise CacheError(f"Only one stored variant for {dataset.describe()}: nothing to compare with the baseline")
        differences = paired_against(runs, baseline, correction=args.correction)
        add_differences(rows, differences)
        payload.update(
            baseline=summaries[baseline].result.variant.name(),
            correction=args.correction,
            differences=[difference_record(difference) for difference in differences],
        )
        paired_lines = ["", differences_table(differences, task, args.correction)]
    best = best_variant(summaries)
    path = write_csv(rows, csv)
    lines = [
        f"{dataset.describe()}; 95% bootstrap intervals (patients resampled under the patient protocol)",
        markdown_table(rows, task),
        *notes,
        *paired_lines,
        *([] if best is None else ["", best["note"]]),
        f"CSV: {path}",
    ]
    emit(args, {**payload, "rows": rows, "best": best, "csv": str(path)}, lines)
    return 0
