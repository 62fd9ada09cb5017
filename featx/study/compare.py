"""Side-by-side comparison of stored variants; every number is recomputed by :mod:`featx.evaluation.metrics`."""

from __future__ import annotations

from pathlib import Path

from featx.evaluation.metrics import DESCRIPTIVE, METRICS, task_aliases
from featx.evaluation.results import list_results
from featx.evaluation.summary import CVSummary
from featx.evaluation.task import Task
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
