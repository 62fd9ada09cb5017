"""Side-by-side comparison of stored variants; every number is recomputed by :mod:`featx.evaluation.metrics`."""

from __future__ import annotations

from pathlib import Path

from featx.evaluation.results import Result, list_results
from featx.evaluation.summary import CVSummary
from featx.fileio import write_csv as write_table
from featx.study.formatting import percent

PERCENT_METRICS = (
    ("accuracy", "acc"),
    ("accuracy_2class", "acc 2-class"),
    ("sensitivity", "sens"),
    ("specificity", "spec"),
)
DESCRIPTION = ("phase", "backbone", "weights", "head", "sampler", "protocol")


def variant_row(result: Result, positive: str | None = None) -> dict:
    """One comparison row: provenance, the paper's four numbers with 95% intervals, AUC, calibration, fit time.

    ``acc`` is the accuracy over all classes (the paper's 3-class accuracy on its classes); the
    binary figures are about ``positive`` (default: see :mod:`featx.evaluation.task`).
    """
    summary = CVSummary.of(result, reused=True, positive=positive)
    metrics = summary.metrics
    variant = result.variant.to_dict()
    row = {key: variant[key] for key in DESCRIPTION}
    row["positive"] = summary.task.positive
    row["input"] = "x".join(str(v) for v in variant["input_size"])
    row["images"] = len(result.y_true)
    for key in [key for key, _label in PERCENT_METRICS] + ["auc_positive"]:
        low, high = metrics["ci95"][key]
        row[key] = metrics[key]
        row[f"{key}_low"], row[f"{key}_high"] = low, high
        row[f"{key}_fold_std"] = metrics["per_fold"][key]["std"]
    row["accuracy_3class"] = metrics["accuracy_3class"]
    row["auc_macro"] = metrics["auc_macro"]
    row["ece_positive"] = metrics["ece_positive"]
    row["fit_seconds"] = result.timings.total_seconds
    row["fit_gflops"] = result.timings.gflops
    row["result_file"] = str(result.path)
    return row


def rows_of(results, positive: str | None = None) -> list[dict]:
    """Comparison rows of ``results``, sorted by phase, backbone, protocol, head, sampler."""
    rows = [variant_row(result, positive) for result in results]
    return sorted(rows, key=lambda r: (r["phase"], r["backbone"], r["protocol"], r["head"], r["sampler"]))


def compare_rows(cache_dir, dataset_id: str, positive: str | None = None) -> list[dict]:
    """A row per stored variant of a dataset (see :func:`rows_of`)."""
    return rows_of(list_results(cache_dir, dataset_id), positive)


def markdown_table(rows: list[dict]) -> str:
    """Markdown table of comparison rows (one positive class); percentages with 95% bootstrap intervals."""
    positive = rows[0]["positive"] if rows else "positive"
    header = (
        list(DESCRIPTION)
        + ["input"]
        + [label for _key, label in PERCENT_METRICS]
        + [f"AUC {positive}", f"ECE {positive}", "fit s"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[key]) for key in DESCRIPTION] + [row["input"]]
        cells += [
            f"{percent(row[key])} [{percent(row[key + '_low'])}, {percent(row[key + '_high'])}]"
            for key, _label in PERCENT_METRICS
        ]
        cells += [
            f"{row['auc_positive']:.3f} [{row['auc_positive_low']:.3f}, {row['auc_positive_high']:.3f}]",
            f"{row['ece_positive']:.3f}",
            f"{row['fit_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path) -> Path:
    """Write comparison rows as CSV (fractions, not percentages), escaped and atomically (see :mod:`featx.fileio`)."""
    return write_table(rows, path, columns=list(rows[0]) if rows else list(DESCRIPTION))
