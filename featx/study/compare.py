"""Side-by-side comparison of stored variants; every number is recomputed by :mod:`featx.evaluation.metrics`."""

from __future__ import annotations

import csv
from pathlib import Path

from featx.evaluation.calibration import reliability
from featx.evaluation.metrics import COVID, summarize
from featx.evaluation.results import Result, list_results
from featx.study.formatting import percent

PERCENT_METRICS = (
    ("accuracy_3class", "acc 3-class"),
    ("accuracy_2class", "acc 2-class"),
    ("sensitivity", "sens"),
    ("specificity", "spec"),
)
DESCRIPTION = ("phase", "backbone", "weights", "head", "sampler", "protocol")


def variant_row(result: Result, n_resamples: int = 1000) -> dict:
    """One comparison row: provenance, the paper's four numbers with 95% intervals, AUC, fit time."""
    metrics = summarize(result.y_true, result.proba, result.fold, result.groups, n_resamples)
    variant = result.variant.to_dict()
    row = {key: variant[key] for key in DESCRIPTION}
    row["input"] = "x".join(str(v) for v in variant["input_size"])
    row["images"] = len(result.y_true)
    for key in [key for key, _label in PERCENT_METRICS] + ["auc_covid"]:
        low, high = metrics["ci95"][key]
        row[key] = metrics[key]
        row[f"{key}_low"], row[f"{key}_high"] = low, high
        row[f"{key}_fold_std"] = metrics["per_fold"][key]["std"]
    row["auc_macro"] = metrics["auc_macro"]
    row["ece_covid"] = reliability(result.y_true == COVID, result.proba[:, COVID]).ece
    row["fit_seconds"] = result.timings.total_seconds
    row["result_file"] = str(result.path)
    return row


def rows_of(results, n_resamples: int = 1000) -> list[dict]:
    """Comparison rows of ``results``, sorted by phase, backbone, protocol, head, sampler."""
    rows = [variant_row(result, n_resamples) for result in results]
    return sorted(rows, key=lambda r: (r["phase"], r["backbone"], r["protocol"], r["head"], r["sampler"]))


def compare_rows(cache_dir, dataset_id: str, n_resamples: int = 1000) -> list[dict]:
    """A row per stored variant of a dataset (see :func:`rows_of`)."""
    return rows_of(list_results(cache_dir, dataset_id), n_resamples)


def markdown_table(rows: list[dict]) -> str:
    """Markdown table of comparison rows; percentages with 95% bootstrap intervals."""
    header = (
        list(DESCRIPTION) + ["input"] + [label for _key, label in PERCENT_METRICS] + ["AUC covid", "ECE covid", "fit s"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[key]) for key in DESCRIPTION] + [row["input"]]
        cells += [
            f"{percent(row[key])} [{percent(row[key + '_low'])}, {percent(row[key + '_high'])}]"
            for key, _label in PERCENT_METRICS
        ]
        cells += [
            f"{row['auc_covid']:.3f} [{row['auc_covid_low']:.3f}, {row['auc_covid_high']:.3f}]",
            f"{row['ece_covid']:.3f}",
            f"{row['fit_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path) -> Path:
    """Write comparison rows as CSV (fractions, not percentages)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else list(DESCRIPTION))
        writer.writeheader()
        writer.writerows(rows)
    return path
