"""The confound audit in words and tables, for the terminal and for reports."""

from __future__ import annotations

from featx.study.audit import Audit
from featx.study.document import Document
from featx.study.formatting import percent


def audit_summary(audit: Audit) -> list[str]:
    """Plain-language findings of an audit, one sentence group per check."""
    lines = []
    for probe in audit.source_probe:
        if probe["auc"] is not None:
            lines.append(
                f"Within {probe['class']}, the {audit.backbone} features tell {probe['compared'][0]} from "
                f"{probe['compared'][1]} images apart with ROC AUC {probe['auc']:.3f} (0.5 = invisible): "
                f"the image's source is visible to the model."
            )
    masked = audit.lungs_masked
    lines.append(
        f"With the central lung field blacked out, 3-class accuracy is "
        f"{percent(masked['accuracy_3class_masked'])}% (vs {percent(masked['accuracy_3class'])}% with the "
        f"lungs; majority-class chance {percent(masked['chance_3class'])}%): much of the signal lies outside "
        f"the lungs."
    )
    adult = audit.adult_check
    if adult["fraction_called_covid"] is not None:
        warning = (
            " WARNING: the model calls most adult non-covid radiographs covid: it has learnt 'adult' more than 'covid'."
            if adult["fraction_called_covid"] > 0.5
            else ""
        )
        lines.append(
            f"Of {adult['adult_non_covid']} adult non-covid radiographs, the model (out of fold) calls "
            f"{adult['called_covid']} ({percent(adult['fraction_called_covid'])}%) covid. The normal class "
            f"holds {adult['normal_adults']} adults among {adult['normal_total']} images.{warning}"
        )
    return lines


def add_audit_section(doc: Document, audit: Audit) -> None:
    """Append the audit's tables and findings to a report."""
    doc.heading("Confound audit")
    doc.paragraph(
        f"{audit.backbone} ({audit.weights}) features, {audit.head} head, "
        f"{audit.folds}-fold {audit.protocol}-grouped CV on {audit.dataset}."
    )
    doc.table(
        ["class", "sources (images)", "source-probe AUC"],
        [
            [
                p["class"],
                ", ".join(f"{k} ({v})" for k, v in p["sources"].items()),
                "n/a" if p["auc"] is None else f"{p['auc']:.3f}",
            ]
            for p in audit.source_probe
        ],
    )
    masked = audit.lungs_masked
    doc.table(
        ["input", "3-class acc %", "AUC covid"],
        [
            ["whole radiograph", percent(masked["accuracy_3class"]), f"{masked['auc_covid']:.3f}"],
            [
                "central lung field blacked out",
                percent(masked["accuracy_3class_masked"]),
                f"{masked['auc_covid_masked']:.3f}",
            ],
        ],
    )
    doc.table(
        ["held-out covid site", "covid images", "covid sensitivity %"],
        [[row["site"], row["covid_images"], percent(row["sensitivity"])] for row in audit.leave_one_site_out],
    )
    doc.table(
        ["adult non-covid class", "images", "called covid"],
        [[label, v["images"], v["called_covid"]] for label, v in audit.adult_check["by_class"].items()],
    )
    for line in audit_summary(audit):
        doc.paragraph(line)
