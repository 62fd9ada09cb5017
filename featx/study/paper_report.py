"""The reproduction report: featx's numbers beside the paper's, the method, plots, the audit, provenance."""

from __future__ import annotations

from pathlib import Path

from featx.data.labels import PAPER_CLASSES
from featx.evaluation.metrics import METRICS, confusion
from featx.evaluation.paired import compare_paired
from featx.fileio import make_folder
from featx.study.audit import Audit
from featx.study.audit_report import add_audit_section, audit_summary
from featx.study.compare import difference_cells, difference_legend, spread_over
from featx.study.document import Document
from featx.study.formatting import percent
from featx.study.plots import confusion_figure, forest_figure, roc_figure
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
    "Metrics from pooled out-of-fold predictions: accuracy over all classes (the paper's 3-class accuracy); "
    "2-class accuracy = the positive class (covid in the paper's task) vs the rest, read off the multi-class "
    "predictions; its sensitivity TP/(TP+FN), specificity TN/(TN+FP) and the ROC AUC of its probability. "
    "Intervals: 95% percentile bootstrap (1,000 resamples; patients resampled under "
    "the patient protocol). Spread: standard deviation over the 10 folds.",
    "random-init marks a backbone whose ImageNet weights were unavailable: it is not transfer learning.",
    "A row whose features are degenerate (vanishing, constant or non-finite: featx's feature health of each "
    "store) says so in place of its figures: they are computed from nothing and are not a result.",
)


def paper_table(subset: str) -> list[list]:
    """The paper's own reported rows for ``subset``: backbone and its four figures (%)."""
    return [[backbone, *figures] for (name, backbone), figures in PAPER.items() if name == subset]


def _plots(runs, subset: str, folder: Path) -> list[tuple[Path, str]]:
    """Confusion-matrix heatmaps and ROC curves (positive class vs rest) of one subset's runs."""
    results = [run.summary.result for run in runs]
    task = runs[0].summary.task
    titles = [
        f"{r.variant.features.backbone} ({r.variant.weights_label})\n{r.variant.protocol.group_by} folds"
        for r in results
    ]
    matrices = [confusion(r.y_true, r.proba.argmax(axis=1), len(r.classes)) for r in results]
    positive = task.positive_index
    curves = [
        (
            f"{r.variant.features.backbone} ({r.variant.weights_label}), {r.variant.protocol.group_by}",
            r.y_true == positive,
            r.proba[:, positive],
        )
        for r in results
    ]
    return [
        (
            confusion_figure(matrices, titles, task.classes, folder / f"confusion-{subset}.png"),
            f"Pooled out-of-fold confusion matrices, {subset}",
        ),
        (
            roc_figure(curves, folder / f"roc-{subset}.png", task.positive),
            f"ROC curves, {task.positive} vs rest, {subset}",
        ),
    ]


def reproduction_title() -> str:
    """The report's title, also its first line on the terminal."""
    return "featx: Apostolopoulos & Mpesiana (2020) reproduced and audited"


def summary_lines(reproduction: Reproduction, audit: Audit | None) -> list[str]:
    if all(run.summary.task.is_paper for run in reproduction.runs):
        lines = [
            "These numbers describe one public collection of 2,173 radiographs in which every covid image is an "
            "adult and nearly every other image a child from one hospital; they are not clinical performance."
        ]
    else:
        lines = [f"These numbers describe the images in {reproduction.data}; they are not clinical performance."]
    for run in reproduction.runs:
        variant, metrics, task = run.summary.result.variant, run.summary.metrics, run.summary.task
        label = " (RANDOM-INIT backbone, not transfer learning)" if variant.weights_label == "random-init" else ""
        figures = run.summary.marking or ", ".join(
            f"{metric.label_for(task)} {metric.unit.with_interval(metrics[name], metrics['ci95'][name])}"
            for name, metric in METRICS.items()
        )
        lines.append(
            f"{run.subset}, {variant.features.backbone}{label} + {variant.head}, "
            f"{variant.protocol.group_by}-level folds: {figures}."
        )
    for backbone, reason in reproduction.skipped.items():
        lines.append(f"{backbone} was skipped: {reason}.")
    lines += reproduction.notes
    if audit is not None:
        lines += audit_summary(audit)
    return lines


PAPER_FIGURES = ("accuracy_2class", "accuracy", "sensitivity", "specificity")
"""The figures of the paper's tables, in its column order (:data:`PAPER` holds them in this order); the
other headline figures follow them in featx's tables."""


def _subset_section(doc: Document, subset: str, runs, out_dir: Path) -> None:
    """The subset's table: every run's figures, beside the paper's where the data has the paper's classes."""
    task = runs[0].summary.task
    ours = [*PAPER_FIGURES, *(name for name in METRICS if name not in PAPER_FIGURES)]
    doc.heading(f"{subset}: our numbers" + (" beside the paper's (%)" if task.is_paper else " (%)"))
    header = ["backbone", "weights", "head", "protocol"]
    for name in ours:
        beside = task.is_paper and name in PAPER_FIGURES
        header += [METRICS[name].label_for(task), "paper"] if beside else [METRICS[name].label_for(task)]
    header += ["accuracy fold sd"]
    rows = []
    for run in runs:
        variant, m = run.summary.result.variant, run.summary.metrics
        paper = dict(
            zip(PAPER_FIGURES, PAPER.get((subset, variant.features.backbone), ("-",) * len(PAPER_FIGURES)), strict=True)
        )
        row = [variant.features.backbone, variant.weights_label, variant.head, variant.protocol.group_by]
        for index, name in enumerate(ours):
            if run.summary.degenerate:  # figures computed from nothing: the first cell says so, the rest are empty
                figure = run.summary.marking if index == 0 else "-"
            else:
                figure = METRICS[name].unit.with_interval(m[name], m["ci95"][name], suffix=False)
            row += [figure, paper[name]] if task.is_paper and name in PAPER_FIGURES else [figure]
        spread = "-" if run.summary.degenerate else percent(m["per_fold"]["accuracy"]["std"])
        rows.append([*row, spread])
    doc.table(header, rows)
    if not task.is_paper:
        doc.paragraph(
            f"The paper's figures are left out: they are for its classes {', '.join(PAPER_CLASSES)}, and this data "
            f"has {', '.join(task.classes)} (positive class {task.positive})."
        )
    elif paper_table(subset):
        doc.paragraph(
            f"The paper's own figures for {subset} (its Tables 2 and 5; image-level 10-fold CV, ImageNet "
            "weights), set beside featx's rows whatever backbones ran here:"
        )
        doc.table(["paper backbone", "2-class acc", "3-class acc", "covid sens", "covid spec"], paper_table(subset))
    if task.is_paper:
        doc.paragraph("The paper's protocol is image-level; compare its numbers with the image rows.")
    for path, caption in _plots(runs, subset, out_dir / "figures"):
        doc.image(path, caption)


def paper_report(
    reproduction: Reproduction, audit: Audit | None, out_dir, featx_version: str, external=()
) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` (plus PNGs) into ``out_dir``.

    Every number is recomputed from the stored predictions of ``reproduction``'s runs; ``external``
    holds (run, validation) pairs from :func:`featx.study.reproduce.validate_externally`.
    """
    out_dir = make_folder(out_dir)
    doc = Document(reproduction_title())
    doc.heading("Summary")
    for line in summary_lines(reproduction, audit):
        doc.paragraph(line)
    doc.heading("Method")
    doc.bullets(METHOD)
    for subset in dict.fromkeys(run.subset for run in reproduction.runs):
        _subset_section(doc, subset, [run for run in reproduction.runs if run.subset == subset], out_dir)
    if reproduction.strategies:
        _strategies_section(doc, reproduction, out_dir / "figures")
    if reproduction.spread is not None:
        _spread_section(doc, reproduction.spread)
    if audit is not None:
        add_audit_section(doc, audit)
    for run, validation in external:
        _external_section(doc, run, validation, out_dir / "figures")
    doc.heading("Provenance")
    doc.bullets(_provenance_line(run) for run in reproduction.runs)
    doc.paragraph(f"featx {featx_version}.")
    return doc.write(out_dir)


def _strategies_section(doc: Document, reproduction: Reproduction, figures: Path) -> None:
    """Which differences are real: the paper's head under each imbalance strategy against ``none`` on the
    same folds, paired (differences, intervals, Holm-adjusted p per subset and backbone), a forest plot,
    and which strategies differ from ``none`` and by how much."""
    doc.heading("Which differences are real: imbalance strategies")
    doc.paragraph(
        "Each strategy is set against the paper's head trained on the folds as they are (none), on the same "
        "images and folds: the difference of each headline figure with a paired bootstrap interval and a paired "
        "test, p-values adjusted over the comparisons of one subset and backbone. Marginal intervals side by side "
        "cannot say this: two heads evaluated on the same images are correlated."
    )
    for run in reproduction.runs:
        variant = run.summary.result.variant
        others = [
            other.summary.result
            for other in reproduction.strategies
            if other.subset == run.subset
            and other.features == run.features
            and other.summary.result.variant.protocol == variant.protocol
        ]
        if not others:
            continue
        task = run.summary.task
        differences = compare_paired([run.summary.result, *others], positive=task.positive)
        sampler = {result.variant.name(): result.variant.sampler for result in others}
        where = f"{run.subset}, {variant.features.backbone} + {variant.head}, {variant.protocol.group_by} folds"
        doc.heading(where, level=3)
        doc.table(*difference_cells(differences, task, label=sampler.get))
        panels = [
            (
                f"{metric.abbreviation_for(task)} vs none ({metric.unit.difference_suffix.strip() or 'difference'})",
                [
                    tuple(value * metric.unit.scale for value in (d.difference, *d.interval)) + (d.distinguishable,)
                    for d in differences
                    if d.metric == key
                ],
            )
            for key, metric in METRICS.items()
        ]
        labels = [sampler[name] for name in dict.fromkeys(d.variant for d in differences)]
        path = forest_figure(panels, labels, figures / f"differences-{run.subset}-{variant.name()}.png", where)
        doc.image(path, f"Paired differences from none with 95% intervals, {where} (filled: distinguishable)")
        for line in difference_legend(differences, task):
            doc.paragraph(line)
        doc.paragraph(differences_note(differences, task, sampler, where))


def spread_rows(spread) -> list[list[str]]:
    """Per headline figure: each run's value over the split sets and over the head seeds, and the standard
    deviation of each (the figures' own unit)."""
    task = spread.by_split[0].task
    rows = []
    for key, metric in METRICS.items():
        cells = [metric.abbreviation_for(task)]
        for runs in (spread.by_split, spread.by_head_seed):
            values, _mean, std = spread_over(runs, key)
            cells += [", ".join(metric.unit.figure(value) for value in values), metric.unit.figure(std)]
        rows.append(cells)
    return rows


def _spread_section(doc: Document, spread) -> None:
    """The spread due to the split beside the spread due to the head's own seed, and whether two head seeds'
    runs are distinguishable (paired, on the same folds)."""
    base = spread.by_split[0]
    variant, task = base.result.variant, base.task
    seeds = [run.result.variant.protocol.seed for run in spread.by_split]
    head_seeds = [run.result.variant.seed_of_head for run in spread.by_head_seed]
    where = f"{spread.subset}, {variant.features.backbone} + {variant.head}, {variant.protocol.group_by} folds"
    doc.heading(f"How much the figures move: the split or the head's seed ({where})")
    doc.paragraph(
        f"The same variant over {len(seeds)} split sets (fold seeds {', '.join(map(str, seeds))}; the head seeded "
        f"with {variant.seed_of_head} in each) and on the split of seed {variant.protocol.seed} under "
        f"{len(head_seeds)} head seeds ({', '.join(map(str, head_seeds))}). The first spread is what a new split "
        "of the same images moves; the second is the head's own randomness (initialisation, dropout, sampler) "
        "alone. Variants compared on one split set differ by less than these spreads more often than not; whether such "
        "a difference is real is for a paired test on the same folds to say, not for the spread."
    )
    doc.table(["figure", "over split sets", "sd (splits)", "over head seeds", "sd (head seeds)"], spread_rows(spread))
    differences = compare_paired([run.result for run in spread.by_head_seed], positive=task.positive)
    seed_of = {run.result.variant.name(): f"head seed {run.result.variant.seed_of_head}" for run in spread.by_head_seed}
    reference = f"head seed {variant.seed_of_head}"
    doc.paragraph(differences_note(differences, task, seed_of, f"Head seeds against {reference}, paired", reference))


def differences_note(differences, task, label: dict, where: str, reference: str = "none") -> str:
    """Which variants differ from the ``reference`` (default ``none``, the strategy) in one sentence about
    ``where``: each distinguishable figure with its difference, interval and adjusted p, then the variants
    that do not differ (each named by ``label[name]``)."""
    differ, alike = [], []
    for name in dict.fromkeys(d.variant for d in differences):
        real = [d for d in differences if d.variant == name and d.distinguishable]
        if not real:
            alike.append(label[name])
            continue
        figures = [
            f"{METRICS[d.metric].abbreviation_for(task)} {METRICS[d.metric].unit.difference(d.difference)} "
            f"[{METRICS[d.metric].unit.difference(d.interval[0], suffix=False)}, "
            f"{METRICS[d.metric].unit.difference(d.interval[1], suffix=False)}], p adj {d.p_adjusted:.2g}"
            for d in real
        ]
        differ.append(f"{label[name]} ({'; '.join(figures)})")
    said = f"{where}: " + (
        f"differ from {reference}: {', '.join(differ)}." if differ else f"no variant differs from {reference}."
    )
    return said + (
        f" Not distinguishable from {reference} in any headline figure: {', '.join(alike)}." if alike else ""
    )


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
