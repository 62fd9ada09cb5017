"""External validation in words, tables and figures: where the external figure falls short of the CV estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featx.evaluation.calibration import Reliability
from featx.evaluation.metrics import METRICS
from featx.study.document import Document
from featx.study.formatting import percent
from featx.study.plots import confusion_figure, reliability_figure, roc_figure
from featx.study.validate import Validation


def _interval(metrics: dict, name: str) -> str:
    return METRICS[name].unit.with_interval(metrics[name], metrics["ci95"][name])


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def summary_lines(validation: Validation) -> list[str]:
    """Plain-language findings, the shortfalls against cross-validation first."""
    external, cv = validation.external, validation.cv
    lines = [
        f"External validation of {validation.model_dir} on {validation.data}: {validation.images} images used, "
        f"{len(validation.skipped)} could not be decoded, {len(validation.excluded_overlap)} left out because the "
        f"model was trained on the same image."
    ]
    if validation.degenerate:  # figures computed from nothing are not printed as results
        return [*lines, f"External figures: {validation.health.marking}."]
    shortfalls, others = [], []
    for name, metric in METRICS.items():
        label = _sentence(metric.label_for(validation.task))
        if external.get(name) is None:
            others.append(f"{label} cannot be computed here: {metric.needs.missing(validation.task)}.")
            continue
        if name not in validation.comparison:
            others.append(
                f"{label}: {_interval(external, name)} externally (no cross-validated "
                "figure recorded in the model folder)."
            )
            continue
        row = validation.comparison[name]
        gap = metric.unit.difference(abs(row["difference"]), signed=False)
        direction = "lower" if row["difference"] < 0 else "higher"
        verdict = (
            "the intervals overlap, so the gap may be chance"
            if row["intervals_overlap"]
            else "the intervals do not overlap: the external figure differs from the CV estimate beyond chance"
        )
        sentence = (
            f"{label}: {_interval(external, name)} externally vs {_interval(cv, name)} in "
            f"cross-validation, {gap} {direction}; {verdict}."
        )
        (shortfalls if row["difference"] < 0 and not row["intervals_overlap"] else others).append(sentence)
    if not shortfalls and validation.comparison:
        shortfalls.append("No external figure falls short of the cross-validated estimate beyond chance.")
    ece, cv_ece = external.get("ece_positive"), cv.get("ece_positive")
    calibration = f"Expected calibration error of the {validation.task.positive} probability: {ece:.3f} externally"
    lines += (
        shortfalls + others + [calibration + (f" vs {cv_ece:.3f} in cross-validation." if cv_ece is not None else ".")]
    )
    return lines


def add_validation_section(doc: Document, validation: Validation, figures: Path, name: str) -> None:
    """Append the comparison table, per-class recall, confusion, ROC and reliability figures."""
    external, cv, task = validation.external, validation.cv, validation.task
    if validation.degenerate:
        doc.paragraph(f"External figures: {validation.health.marking}.")
        return
    rows = []
    for key, metric in METRICS.items():
        cv_cell = _interval(cv, key) if cv.get(key) is not None else "-"
        ext_cell = _interval(external, key) if external.get(key) is not None else "n/a"
        row = validation.comparison.get(key)
        rows.append(
            [
                metric.label_for(task),
                ext_cell,
                cv_cell,
                "-" if row is None else metric.unit.difference(row["difference"]),
                "-" if row is None else ("yes" if row["intervals_overlap"] else "NO"),
            ]
        )
    doc.table(["figure", "external", "cross-validated", "difference (external - CV)", "intervals overlap"], rows)
    doc.table(["class", "recall %"], [[c, percent(v)] for c, v in external["per_class_recall"].items()])
    if validation.skipped:
        doc.bullets(f"skipped {image.image_id}: {image.reason}" for image in validation.skipped)
    predictions = validation.predictions
    is_positive = (predictions["label"] == task.positive).to_numpy()
    positive_probability = predictions[f"p_{task.positive}"].to_numpy()
    doc.image(
        confusion_figure(
            [external["confusion"]], [f"{name}: external"], task.classes, figures / f"confusion-{name}.png"
        ),
        "External confusion matrix",
    )
    if external.get("auc_positive") is not None:
        doc.image(
            roc_figure([(name, is_positive, positive_probability)], figures / f"roc-{name}.png", task.positive),
            f"External ROC curve, {task.positive} vs rest",
        )
    diagram = _reliability(external["reliability_positive"])
    doc.image(
        reliability_figure([(f"{name}: external", diagram)], figures / f"reliability-{name}.png", task.positive),
        f"Reliability of the {task.positive} probability on the external images",
    )


def _reliability(stored: dict) -> Reliability:
    def array(values):
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    return Reliability(
        edges=array(stored["edges"]),
        mean_predicted=array(stored["mean_predicted"]),
        observed=array(stored["observed"]),
        counts=np.asarray(stored["counts"]),
        ece=np.nan if stored["ece"] is None else stored["ece"],
    )


def validation_report(validation: Validation, out_dir) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` for one validation into ``out_dir``."""
    out_dir = Path(out_dir)
    doc = Document("featx: external validation")
    doc.heading("Summary")
    for line in summary_lines(validation):
        doc.paragraph(line)
    doc.heading("External figures beside cross-validation (%)")
    doc.paragraph(
        "Intervals: 95% bootstrap (patients resampled where the folder gives patient ids). The "
        "cross-validated figures are those recorded in the model folder when it was trained."
    )
    add_validation_section(doc, validation, out_dir / "figures", "model")
    doc.paragraph("Every external figure is computed from predictions.csv beside this report.")
    return doc.write(out_dir)
