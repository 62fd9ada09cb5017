"""The reproduction report: featx's numbers beside the paper's, the method, plots, the audit, provenance."""

from __future__ import annotations

from pathlib import Path

from featx.data.labels import PAPER_CLASSES
from featx.evaluation.metrics import confusion
from featx.study.audit import Audit
from featx.study.audit_report import add_audit_section, audit_summary
from featx.study.document import Document
from featx.study.formatting import percent, percent_with_interval
from featx.study.plots import confusion_figure, roc_figure
from featx.study.reproduce import Reproduction
from featx.study.validation_report import add_validation_section
from featx.study.validation_report import summary_lines as validation_summary

PAPER = {  # Apostolopoulos & Mpesiana (2020), Tables 2 and 5: 2-class acc, 3-class acc, sensitivity, specificity (%)
    ("dataset1", "vgg19"): (98.75, 93.48, 92.85, 98.75),
    ("dataset1", "mobilenet_v2"): (97.40, 92.85, 99.10, 97.09),
    ("dataset1", "inception_v3"): (86.13, 92.85, 12.94, 99.70),
    ("dataset1", "xception"): (85.57, 92.85, 0.08, 99.99),
    ("dataset1", "inception_resnet_v2"): (84.38, 92.85, 0.01, 99.83),
    ("dataset2", "mobilenet_v2"): (96.78, 94.72, 98.66, 96.46),
}
METHOD = (
    "Images: letterboxed with black padding to 200x266 (the paper's size) unless stated; frozen backbone, "
    "global average pooling, features cached once per backbone (phase 1).",
    "Heads: the paper's dense head per backbone (ReLU, Dropout between hidden layers, Adam, 10 epochs, batch 64).",
    "Image-level protocol (the paper's): 10-fold stratified split of images; images of one patient can fall on "
    "both sides of a split, which lets a model recognise the patient rather than the disease.",
    "Patient-grouped protocol (featx's default): no patient in both the training and the test folds.",
    "Metrics from pooled out-of-fold predictions: 3-class accuracy; 2-class accuracy = covid vs not covid "
    "read off the 3-class predictions; covid sensitivity TP/(TP+FN), specificity TN/(TN+FP); ROC AUC of "
    "the covid probability. Intervals: 95% percentile bootstrap (1,000 resamples; patients resampled under "
    "the patient protocol). Spread: standard deviation over the 10 folds.",
    "random-init marks a backbone whose ImageNet weights were unavailable: it is not transfer learning.",
)


def paper_table(subset: str) -> list[list]:
    """The paper's own reported rows for ``subset``: backbone and its four figures (%)."""
    return [[backbone, *figures] for (name, backbone), figures in PAPER.items() if name == subset]


def _plots(results, subset: str, folder: Path) -> list[tuple[Path, str]]:
    """Confusion-matrix heatmaps and ROC curves (covid vs rest) of one subset's results."""
    titles = [
        f"{r.variant.features.backbone} ({r.variant.weights_label})\n{r.variant.protocol.group_by} folds"
        for r in results
    ]
    matrices = [confusion(r.y_true, r.proba.argmax(axis=1), len(r.classes)) for r in results]
    covid = PAPER_CLASSES.index("covid")
    curves = [
        (
            f"{r.variant.features.backbone} ({r.variant.weights_label}), {r.variant.protocol.group_by}",
            r.y_true == covid,
            r.proba[:, covid],
        )
        for r in results
    ]
    return [
        (
            confusion_figure(matrices, titles, PAPER_CLASSES, folder / f"confusion-{subset}.png"),
            f"Pooled out-of-fold confusion matrices, {subset}",
        ),
        (roc_figure(curves, folder / f"roc-{subset}.png"), f"ROC curves, covid vs rest, {subset}"),
    ]


def _summary_lines(reproduction: Reproduction, audit: Audit | None) -> list[str]:
    lines = [
        "These numbers describe one public collection of 2,173 radiographs in which every covid image is an "
        "adult and nearly every other image a child from one hospital; they are not clinical performance."
    ]
    for run in reproduction.runs:
        variant, metrics = run.summary.result.variant, run.summary.metrics
        label = " (RANDOM-INIT backbone, not transfer learning)" if variant.weights_label == "random-init" else ""
        lines.append(
            f"{run.subset}, {variant.features.backbone}{label} + {variant.head}, "
            f"{variant.protocol.group_by}-level folds: 3-class accuracy "
            f"{percent_with_interval(metrics, 'accuracy_3class')}%, covid sensitivity "
            f"{percent_with_interval(metrics, 'sensitivity')}%, specificity "
            f"{percent_with_interval(metrics, 'specificity')}%."
        )
    for backbone, reason in reproduction.skipped.items():
        lines.append(f"{backbone} was skipped: {reason}.")
    if audit is not None:
        lines += audit_summary(audit)
    return lines


def _subset_section(doc: Document, subset: str, runs, out_dir: Path) -> None:
    doc.heading(f"{subset}: our numbers beside the paper's (%)")
    header = [
        "backbone",
        "weights",
        "head",
        "protocol",
        "2-class acc",
        "paper",
        "3-class acc",
        "paper",
        "covid sens",
        "paper",
        "covid spec",
        "paper",
        "AUC covid",
        "3-class fold sd",
    ]
    rows = []
    for run in runs:
        variant, m = run.summary.result.variant, run.summary.metrics
        paper = PAPER.get((subset, variant.features.backbone), ("-",) * 4)
        rows.append(
            [
                variant.features.backbone,
                variant.weights_label,
                variant.head,
                variant.protocol.group_by,
                percent_with_interval(m, "accuracy_2class"),
                paper[0],
                percent_with_interval(m, "accuracy_3class"),
                paper[1],
                percent_with_interval(m, "sensitivity"),
                paper[2],
                percent_with_interval(m, "specificity"),
                paper[3],
                f"{m['auc_covid']:.3f}",
                percent(m["per_fold"]["accuracy_3class"]["std"]),
            ]
        )
    doc.table(header, rows)
    reported = paper_table(subset)
    if reported:
        doc.paragraph(
            f"The paper's own figures for {subset} (its Tables 2 and 5; image-level 10-fold CV, ImageNet "
            "weights), set beside featx's rows whatever backbones ran here:"
        )
        doc.table(["paper backbone", "2-class acc", "3-class acc", "covid sens", "covid spec"], reported)
    doc.paragraph("The paper's protocol is image-level; compare its numbers with the image rows.")
    for path, caption in _plots([run.summary.result for run in runs], subset, out_dir / "figures"):
        doc.image(path, caption)


def paper_report(
    reproduction: Reproduction, audit: Audit | None, out_dir, featx_version: str, external=()
) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` (plus PNGs) into ``out_dir``.

    Every number is recomputed from the stored predictions of ``reproduction``'s runs; ``external``
    holds (run, validation) pairs from :func:`featx.study.reproduce.validate_externally`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Document("featx: Apostolopoulos & Mpesiana (2020) reproduced and audited")
    doc.heading("Summary")
    for line in _summary_lines(reproduction, audit):
        doc.paragraph(line)
    doc.heading("Method")
    doc.bullets(METHOD)
    for subset in dict.fromkeys(run.subset for run in reproduction.runs):
        _subset_section(doc, subset, [run for run in reproduction.runs if run.subset == subset], out_dir)
    if audit is not None:
        add_audit_section(doc, audit)
    for run, validation in external:
        _external_section(doc, run, validation, out_dir / "figures")
    doc.heading("Provenance")
    doc.bullets(_provenance_line(run) for run in reproduction.runs)
    doc.paragraph(f"featx {featx_version}.")
    return doc.write(out_dir)


def _external_section(doc: Document, run, validation, figures: Path) -> None:
    variant = run.summary.result.variant
    doc.heading(
        f"External validation: {run.subset}, {variant.features.backbone} ({variant.weights_label}) + "
        f"{variant.head}, {variant.protocol.group_by} folds"
    )
    for line in validation_summary(validation):
        doc.paragraph(line)
    add_validation_section(doc, validation, figures, f"{run.subset}-{variant.name()}")


def _provenance_line(run) -> str:
    result = run.summary.result
    key = result.variant.features
    return (
        f"{run.subset} / {key.backbone} / {result.variant.protocol.group_by}: data id {key.dataset_id}, "
        f"weights {key.weights} (sha256 {key.weights_sha256[:12] or 'n/a'}), "
        f"input {key.input_size[0]}x{key.input_size[1]}, split {result.provenance.split_file}, "
        f"predictions {result.path}"
    )
