"""Side-by-side comparison of stored variants; every number is recomputed by :mod:`featx.evaluation.metrics`.

Each variant's own interval says how well its figure is known; whether two variants differ is asked
of the pairs instead (:mod:`featx.evaluation.paired`): the difference from a baseline with a paired
bootstrap interval and a paired test, adjusted over the family of comparisons shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from featx.evaluation.metrics import DESCRIPTIVE, METRICS, task_aliases
from featx.evaluation.paired import ALPHA, CORRECTIONS, PAIRED_TESTS, PairedDifference, compare_paired
from featx.evaluation.results import list_results
from featx.evaluation.summary import CVSummary
from featx.evaluation.task import Task
from featx.exceptions import CacheError, ParameterError
from featx.features.store import not_a_result
from featx.fileio import write_csv as write_table

DESCRIPTION = ("phase", "backbone", "weights", "head", "sampler", "protocol")


def variant_row(summary: CVSummary) -> dict:
    """One comparison row: provenance, each headline figure with its 95% interval and spread over folds,
    the task's aliases, the further figures, calibration and fit time (fractions, not percentages)."""
    result, metrics = summary.result, summary.metrics
    variant = result.variant.to_dict()
    row = {key: variant[key] for key in DESCRIPTION}
    row["positive"] = summary.task.positive
    row["input"] = "x".join(str(v) for v in variant["input_size"])
    row["images"] = len(result.y_true)
    row["head_seed"] = result.variant.head_seed
    for key in METRICS:
        low, high = metrics["ci95"][key]
        row[key] = metrics[key]
        row[f"{key}_low"], row[f"{key}_high"] = low, high
        row[f"{key}_fold_std"] = metrics["per_fold"][key]["std"]
    row.update(task_aliases(summary.task, metrics))
    row.update({key: metrics[key] for key in DESCRIPTIVE})
    row["ece_positive"] = metrics["ece_positive"]
    row["fit_seconds"] = result.timings.total_seconds
    row["fit_gflops"] = result.timings.gflops
    row["variant"] = result.variant.name()
    row["degenerate"] = summary.degenerate
    row["degenerate_reasons"] = "; ".join(summary.degenerate_reasons)
    row["result_file"] = str(result.path)
    return row


def variant_order(summary: CVSummary) -> tuple:
    """The order of comparison rows: by phase, backbone, protocol, head, sampler."""
    variant = summary.result.variant.to_dict()
    return tuple(variant[key] for key in ("phase", "backbone", "protocol", "head", "sampler"))


def compare_summaries(cache_dir, dataset_id: str, positive: str | None = None) -> list[CVSummary]:
    """The summary of every stored variant of a dataset, its binary figures about ``positive`` (default:
    see :mod:`featx.evaluation.task`), in :func:`variant_order`."""
    summaries = [CVSummary.of(result, reused=True, positive=positive) for result in list_results(cache_dir, dataset_id)]
    return sorted(summaries, key=variant_order)


def markdown_table(rows: list[dict], task: Task) -> str:
    """Markdown table of comparison rows of ``task``: each headline figure with its 95% bootstrap interval
    (percentages without the sign), calibration and fit time."""
    header = (
        list(DESCRIPTION)
        + ["input"]
        + [metric.abbreviation_for(task) for metric in METRICS.values()]
        + [f"ECE {task.positive}", "fit s"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[key]) for key in DESCRIPTION] + [row["input"]]
        if row.get("head_seed") is not None:  # a head trained apart from the folds' seed
            cells[DESCRIPTION.index("head")] += f" (head seed {row['head_seed']})"
        if row.get("degenerate"):  # figures computed from nothing are not printed as results (no flag: unknown)
            cells += [not_a_result([row["degenerate_reasons"]])] + ["-"] * len(METRICS)
        else:
            cells += [
                metric.unit.with_interval(row[key], (row[f"{key}_low"], row[f"{key}_high"]), suffix=False)
                for key, metric in METRICS.items()
            ]
            cells.append(f"{row['ece_positive']:.3f}")
        cells.append(f"{row['fit_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path) -> Path:
    """Write comparison rows as CSV (fractions, not percentages), escaped and atomically (see :mod:`featx.fileio`)."""
    return write_table(rows, path, columns=list(rows[0]) if rows else list(DESCRIPTION))


def choose_baseline(summaries: list[CVSummary], wanted: str | None = None) -> CVSummary:
    """The baseline of a comparison: the variant named ``wanted`` (its full name, or text only its name
    holds), or the first shown (default).

    Raises
    ------
    ParameterError
        When ``wanted`` names no variant shown, or several (listing their names).
    """
    if not wanted:
        return summaries[0]
    names = [summary.result.variant.name() for summary in summaries]
    if wanted in names:
        return summaries[names.index(wanted)]
    matching = [summary for summary, name in zip(summaries, names, strict=True) if wanted in name]
    if len(matching) == 1:
        return matching[0]
    problem = "names several variants" if matching else "names none of the variants shown"
    listed = [summary.result.variant.name() for summary in matching] if matching else names
    raise ParameterError("baseline", wanted, f"{problem} ({', '.join(listed)}); give one variant's name")


def repeated_runs(
    summaries: list[CVSummary], repeats: int, first_seed: int = 0
) -> tuple[list[tuple[CVSummary, ...]], list[str]]:
    """Each variant's summaries on the split sets of seeds ``first_seed`` (default 0), ``first_seed + 1``, ...,
    ``repeats`` of them (as ``featx fit --seed first_seed --repeats repeats`` makes them), in the order of
    ``summaries``.

    Returns
    -------
    runs : list of tuple of CVSummary
        Per variant stored on every one of the split sets, its summaries in seed order.
    left_out : list of str
        The variants (described) missing from some of them.

    Raises
    ------
    CacheError
        When no variant is stored on every split set.
    """
    by_variant = {}
    for summary in summaries:
        variant = summary.result.variant.to_dict()
        seed = variant.pop("seed")
        by_variant.setdefault(json.dumps(variant, sort_keys=True), {})[seed] = summary
    runs, left_out, seeds = [], [], range(first_seed, first_seed + repeats)
    for by_seed in by_variant.values():
        if all(seed in by_seed for seed in seeds):
            runs.append(tuple(by_seed[seed] for seed in seeds))
        else:
            left_out.append(next(iter(by_seed.values())).result.variant.describe())
    if not runs:
        raise CacheError(
            f"No variant is stored on all {repeats} split sets of seeds {seeds[0]}..{seeds[-1]}; run "
            f"`featx fit --seed {first_seed} --repeats {repeats}` first"
        )
    return runs, left_out


def add_repeat_spread(row: dict, run: tuple[CVSummary, ...]) -> None:
    """Give a comparison row the spread of each headline figure over the split sets of ``run`` (due to the
    split and the head's seed together, unless the head's seed was fixed): ``repeats``,
    ``{metric}_repeat_mean`` and ``{metric}_repeat_std``."""
    row["repeats"] = len(run)
    for key in METRICS:
        _values, row[f"{key}_repeat_mean"], row[f"{key}_repeat_std"] = spread_over(run, key)


def spread_over(runs, key: str) -> tuple[np.ndarray, float, float]:
    """The headline figure ``key`` of each of ``runs`` (summaries), their mean and standard deviation
    (population, undefined figures left out)."""
    values = np.array([summary.metrics[key] for summary in runs], dtype=np.float64)
    return values, float(np.nanmean(values)), float(np.nanstd(values))


def paired_against(
    runs: list[tuple[CVSummary, ...]], baseline: int, *, correction: str = "holm"
) -> tuple[PairedDifference, ...]:
    """Every other variant shown against the baseline ``runs[baseline]``, metric by metric, on the same
    images and folds: :func:`featx.evaluation.paired.compare_paired` with p-values adjusted by
    ``correction`` (default Holm) over all of them. Each run is a variant's summaries on one split set,
    or on the same repeated split sets (then the corrected resampled t-test).

    Raises
    ------
    SplitError
        When a variant was not evaluated on the baseline's dataset, protocol and saved folds.
    """
    results = [tuple(summary.result for summary in run) for run in runs]
    return compare_paired(
        results, baseline=results[baseline], positive=runs[baseline][0].task.positive, correction=correction
    )


def add_differences(rows: list[dict], differences: tuple[PairedDifference, ...]) -> None:
    """Give each comparison row its differences from the baseline: ``{metric}_vs_baseline`` with
    ``_low`` and ``_high`` and ``{metric}_p_adjusted``, ``{metric}_distinguishable`` (the baseline's
    own row: difference 0, the rest empty)."""
    by_variant = {}
    for difference in differences:
        by_variant.setdefault(difference.variant, {})[difference.metric] = difference
    baseline = differences[0].baseline
    for row in rows:
        mine = by_variant.get(row["variant"], {})
        for key in METRICS:
            difference = mine.get(key)
            if difference is None:  # the baseline itself
                row[f"{key}_vs_baseline"] = 0.0 if row["variant"] == baseline else None
                row[f"{key}_vs_baseline_low"] = row[f"{key}_vs_baseline_high"] = None
                row[f"{key}_p_adjusted"] = row[f"{key}_distinguishable"] = None
                continue
            row[f"{key}_vs_baseline"] = difference.difference
            row[f"{key}_vs_baseline_low"], row[f"{key}_vs_baseline_high"] = difference.interval
            row[f"{key}_p_adjusted"] = difference.p_adjusted
            row[f"{key}_distinguishable"] = difference.distinguishable


def difference_record(difference: PairedDifference) -> dict:
    """A paired difference as JSON (undefined and infinite numbers become null when emitted)."""
    record = asdict(difference)
    record["interval"] = list(difference.interval)
    return record


def _p_text(p: float) -> str:
    return "n/a" if p != p else "<0.001" if p < 0.001 else f"{p:.3f}"


def difference_cells(
    differences: tuple[PairedDifference, ...], task: Task, label=lambda variant: variant
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a table of differences from the baseline: per variant (named by
    ``label(name)``, default its name) and headline figure, the difference with its paired bootstrap
    interval (``~`` marking one not distinguishable from noise, ``~*`` one whose interval, made for its own
    comparison, excludes 0 although the adjusted p does not) and the adjusted p-value."""
    variants = list(dict.fromkeys(difference.variant for difference in differences))
    keys = list(dict.fromkeys(difference.metric for difference in differences))
    found = {(difference.variant, difference.metric): difference for difference in differences}
    header = ["variant"]
    for key in keys:
        abbreviation = METRICS[key].abbreviation_for(task)
        header += [f"{abbreviation} vs baseline [95%]", f"p adj {abbreviation}"]
    rows = []
    for variant in variants:
        cells = [label(variant)]
        for key in keys:
            difference, unit = found[variant, key], METRICS[key].unit
            low, high = difference.interval
            mark = "" if difference.distinguishable else " ~" + ("*" if low > 0 or high < 0 else "")
            cells += [
                f"{unit.difference(difference.difference, suffix=False)} "
                f"[{unit.difference(low, suffix=False)}, {unit.difference(high, suffix=False)}]{mark}",
                _p_text(difference.p_adjusted),
            ]
        rows.append(cells)
    return header, rows


def difference_legend(differences: tuple[PairedDifference, ...], task: Task, correction: str = "holm") -> list[str]:
    """What a table of :func:`difference_cells` says, in sentences: the baseline, the intervals, the test
    of each figure, the adjustment (default Holm) and the mark."""
    tests = dict.fromkeys(difference.metric for difference in differences)
    for difference in differences:
        tests[difference.metric] = tests[difference.metric] or difference.test
    return [
        f"Differences: variant minus baseline {differences[0].baseline}, on the same images and folds "
        "(percentage points for percentages); 95% paired bootstrap intervals (the same patients, or images under "
        "the image protocol, drawn for both), each for its own comparison: the mark follows the adjusted p.",
        "Tests: "
        + "; ".join(f"{METRICS[key].abbreviation_for(task)}: {PAIRED_TESTS[test]}" for key, test in tests.items())
        + f". p adjusted over the {len(differences)} comparisons shown: {CORRECTIONS[correction]}.",
        f"~ : not distinguishable from noise (adjusted p >= {ALPHA:g}, or undefined). ~* : the same, although its "
        f"interval excludes 0: the interval is for that comparison alone, the p is adjusted over all "
        f"{len(differences)}.",
    ]


def differences_table(differences: tuple[PairedDifference, ...], task: Task, correction: str = "holm") -> str:
    """Markdown table of :func:`difference_cells` followed by its :func:`difference_legend`."""
    header, rows = difference_cells(differences, task)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*lines, *difference_legend(differences, task, correction)])


def best_variant(summaries: list[CVSummary]) -> dict | None:
    """The variant with the highest first headline figure among several, and why its figure flatters it.

    Returns
    -------
    dict or None
        ``variant`` (its name), ``metric``, ``value``, ``out_of`` and ``note``; None for one variant.
    """
    if len(summaries) < 2:
        return None
    key, metric = next(iter(METRICS.items()))
    defined = [summary for summary in summaries if summary.metrics[key] == summary.metrics[key]]
    if not defined:
        return None
    best = max(defined, key=lambda summary: summary.metrics[key])
    task = best.task
    return {
        "variant": best.result.variant.name(),
        "metric": key,
        "value": best.metrics[key],
        "out_of": len(summaries),
        "note": f"Best of {len(summaries)} by {metric.abbreviation_for(task)}: {best.result.variant.describe()} "
        f"({metric.unit.figure(best.metrics[key])}{metric.unit.figure_suffix}). Chosen on the folds that measure "
        "it, its cross-validated figure is optimistic (selection): expect less on new data; the paired differences "
        "say which gaps are real.",
    }


def selection_lines(selection) -> list[str]:
    """What ``featx select`` prints: each outer fold's choice, the nested estimate of the whole procedure
    with its interval, and the best candidate's own cross-validated figure beside it (how much selection
    flatters it)."""
    best = selection.best_of_candidates
    task, metric = best.task, METRICS[selection.metric]
    name = metric.abbreviation_for(task)
    protocol = best.result.variant.protocol
    lines = [
        f"Nested cross-validation: {len(selection.candidates)} candidates, chosen by {name} over "
        f"{selection.inner_folds} "
        f"inner folds of each outer fold's training images; {len(selection.outer)} outer folds ({protocol.group_by} "
        f"protocol, seed {protocol.seed}), the saved folds of every candidate.",
        "",
        f"| outer fold | chosen | its inner {name} | its outer-fold {name} |",
        "|---|---|---|---|",
    ]
    by_name = {summary.result.variant.name(): summary for summary in selection.candidates}
    for outer in selection.outer:
        chosen = by_name[outer.chosen]
        outer_figure = chosen.metrics["per_fold"][selection.metric]["values"][outer.fold]
        lines.append(
            f"| {outer.fold} | {chosen.result.variant.describe()} | {metric.unit.figure(outer.chosen_figure)} | "
            f"{metric.unit.figure(outer_figure)} |"
        )
    low, high = selection.metrics["ci95"][selection.metric]
    lines += [
        "",
        f"Estimate of choosing the best candidate (nested): {name} "
        f"{metric.unit.with_interval(selection.estimate, (low, high))} (95% bootstrap interval).",
        f"The best candidate's own cross-validated figure: {best.result.variant.describe()}, {name} "
        f"{metric.unit.figure(best.metrics[selection.metric])}{metric.unit.figure_suffix}, chosen on the folds "
        f"that measure it: {metric.unit.difference(selection.optimism)} above the nested estimate.",
    ]
    if any(summary.degenerate for summary in selection.candidates):
        lines.append(
            "Degenerate features among the candidates: "
            + "; ".join(
                f"{summary.result.variant.describe()}: {summary.marking}"
                for summary in selection.candidates
                if summary.degenerate
            )
        )
    return lines
