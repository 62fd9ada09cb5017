"""The confound audit in words and tables, for the terminal and for reports."""

from __future__ import annotations

from featx.study.audit import Audit
from featx.study.document import Document
from featx.study.formatting import percent


def audit_summary(audit: Audit) -> list[str]:
    """Plain-language findings of an audit, one sentence group per check."""
    positive = audit.task.positive
    lines = []
    for probe in audit.source_probe:
        if probe.auc is not None:
            lines.append(
                f"Within {probe.label}, the {audit.backbone} features tell {probe.compared[0]} from "
                f"{probe.compared[1]} images apart with ROC AUC {probe.auc:.3f} (0.5 = invisible): "
                f"the image's source is visible to the model."
            )
    masked = audit.lungs_masked
    lines.append(
        f"With the central lung field blacked out, accuracy is {percent(masked.accuracy_masked)}% (vs "
        f"{percent(masked.accuracy)}% with the lungs; majority-class chance {percent(masked.chance)}%): "
        f"the further above chance, the more of the signal lies outside the lungs."
    )
    adult = audit.adult_check
    if adult.fraction_called_positive is not None:
        warning = (
            f" WARNING: the model calls most of them {positive}: it may have learnt their source (in the paper's "
            f"collection: 'adult') more than '{positive}'."
            if adult.fraction_called_positive > 0.5
            else ""
        )
        lines.append(
            f"Of {adult.images} radiographs of other classes from the sources that hold the {positive} images "
            f"(in the paper's collection, the adults), the model (out of fold) calls {adult.called_positive} "
            f"({percent(adult.fraction_called_positive)}%) {positive}.{warning}"
        )
    return lines


def add_audit_section(doc: Document, audit: Audit) -> None:
    """Append the audit's tables and findings to a report."""
    positive = audit.task.positive
    doc.heading("Confound audit")
    doc.paragraph(
        f"{audit.backbone} ({audit.weights}) features, {audit.head} head, "
        f"{audit.folds}-fold {audit.protocol}-grouped CV on {audit.dataset}; positive class {positive}."
    )
    doc.table(
        ["class", "sources (images)", "source-probe AUC"],
        [
            [
                p.label,
                ", ".join(f"{k} ({v})" for k, v in p.sources.items()),
                "n/a" if p.auc is None else f"{p.auc:.3f}",
            ]
            for p in audit.source_probe
        ],
    )
    masked = audit.lungs_masked
    doc.table(
        ["input", "accuracy %", f"AUC {positive}"],
        [
            ["whole radiograph", percent(masked.accuracy), f"{masked.auc_positive:.3f}"],
            [
                "central lung field blacked out",
                percent(masked.accuracy_masked),
                f"{masked.auc_positive_masked:.3f}",
            ],
        ],
    )
    doc.table(
        [f"held-out {positive} site", f"{positive} images", "sensitivity %"],
        [[row.site, row.positive_images, percent(row.sensitivity)] for row in audit.leave_one_site_out],
    )
    doc.table(
        ["class", f"images from the {positive} sources", f"called {positive}", "class total"],
        [[label, v.images, v.called_positive, v.total] for label, v in audit.adult_check.by_class.items()],
    )
    for line in audit_summary(audit):
        doc.paragraph(line)
