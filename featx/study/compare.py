"""Tables from stored results; every number is recomputed by :mod:`featx.metrics`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from featx.evaluation.metrics import summarize
from featx.evaluation.results import list_results

PERCENT_METRICS = (
    ("accuracy_3class", "acc 3-class"),
    ("accuracy_2class", "acc 2-class"),
    ("sensitivity", "sens"),
    ("specificity", "spec"),
)
DESCRIPTION = ("phase", "backbone", "weights", "head", "sampler", "protocol")


def variant_row(result: dict, n_resamples: int = 1000) -> dict:
    """One comparison row: provenance, the paper's four numbers with 95% intervals, AUC, time."""
    metrics = summarize(result["y_true"], result["proba"], result["fold"], result["groups"], n_resamples)
    variant = result["variant"]
    row = {key: variant[key] for key in DESCRIPTION}
    row["input"] = "x".join(str(v) for v in variant["input_size"])
    row["images"] = len(result["y_true"])
    for key, _label in PERCENT_METRICS + (("auc_covid", "AUC covid"),):
        low, high = metrics["ci95"][key]
        row[key] = metrics[key]
        row[f"{key}_low"], row[f"{key}_high"] = low, high
        row[f"{key}_fold_std"] = metrics["per_fold"][key]["std"]
    row["auc_macro"] = metrics["auc_macro"]
    row["fit_seconds"] = result["timings"]["total_seconds"]
    row["result_file"] = result["path"]
    return row


def compare_rows(cache_dir, dataset_id: str, n_resamples: int = 1000) -> list[dict]:
    """A row per stored variant of a dataset, sorted by phase, backbone, protocol, head, sampler."""
    rows = [variant_row(result, n_resamples) for result in list_results(cache_dir, dataset_id)]
    return sorted(rows, key=lambda r: (r["phase"], r["backbone"], r["protocol"], r["head"], r["sampler"]))


def _interval(row: dict, key: str, scale: float) -> str:
    return f"{row[key] * scale:.1f} [{row[key + '_low'] * scale:.1f}, {row[key + '_high'] * scale:.1f}]"


def markdown_table(rows: list[dict]) -> str:
    """Markdown table of comparison rows; percentages with 95% bootstrap intervals."""
    header = list(DESCRIPTION) + [label for _key, label in PERCENT_METRICS] + ["AUC covid", "fit s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[key]) for key in DESCRIPTION]
        cells += [_interval(row, key, 100) for key, _label in PERCENT_METRICS]
        low, high = row["auc_covid_low"], row["auc_covid_high"]
        cells += [f"{row['auc_covid']:.3f} [{low:.3f}, {high:.3f}]", f"{row['fit_seconds']:.1f}"]
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


PAPER = {  # Apostolopoulos & Mpesiana (2020): 2-class acc, 3-class acc, sensitivity, specificity (%)
    ("dataset1", "vgg19"): (98.75, 93.48, 92.85, 98.75),
    ("dataset1", "mobilenet_v2"): (97.40, 92.85, 99.10, 97.09),
    ("dataset1", "inception_v3"): (86.13, 92.85, 12.94, 99.70),
    ("dataset1", "xception"): (85.57, 92.85, 0.08, 99.99),
    ("dataset1", "inception_resnet_v2"): (84.38, 92.85, 0.01, 99.83),
    ("dataset2", "mobilenet_v2"): (96.78, 94.72, 98.66, 96.46),
}


class Document:
    """A report as a list of blocks, rendered to Markdown and to self-contained HTML."""

    def __init__(self, title: str):
        self.title = title
        self.blocks = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str):
        self.blocks.append(("paragraph", text))

    def bullets(self, items):
        self.blocks.append(("bullets", list(items)))

    def table(self, header, rows):
        self.blocks.append(("table", list(header), [list(map(str, row)) for row in rows]))

    def image(self, path, caption: str):
        self.blocks.append(("image", Path(path), caption))

    def markdown(self, relative_to: Path) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif kind == "paragraph":
                lines += [block[1], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                lines += ["| " + " | ".join(block[1]) + " |", "|" + "---|" * len(block[1])]
                lines += ["| " + " | ".join(row) + " |" for row in block[2]] + [""]
            elif kind == "image":
                lines += [f"![{block[2]}]({block[1].relative_to(relative_to).as_posix()})", ""]
        return "\n".join(lines)

    def html(self) -> str:
        import base64
        from html import escape

        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(self.title)}</title>",
                 "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto;line-height:1.4}"
                 "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #bbb;padding:2px 6px}"
                 "img{max-width:100%}</style></head><body>", f"<h1>{escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                parts.append(f"<h{block[1]}>{escape(block[2])}</h{block[1]}>")
            elif kind == "paragraph":
                parts.append(f"<p>{escape(block[1])}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{escape(cell)}</th>" for cell in block[1])
                body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in block[2])
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "image":
                data = base64.b64encode(block[1].read_bytes()).decode()
                parts.append(f"<figure><img alt='{escape(block[2])}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{escape(block[2])}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _pct(value) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:.1f}"


def _with_ci(metrics: dict, key: str) -> str:
    low, high = metrics["ci95"][key]
    return f"{_pct(metrics[key])} [{_pct(low)}, {_pct(high)}]"


def _plots(results: list[dict], subset: str, folder: Path) -> list[tuple[Path, str]]:
    """Confusion-matrix heatmaps and ROC curves (covid vs rest) of one subset's results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from featx.data.dataset import CLASSES
    from featx.evaluation.metrics import COVID, confusion

    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), squeeze=False)
    for axis, result in zip(axes[0], results):
        matrix = confusion(result["y_true"], result["proba"].argmax(axis=1))
        axis.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            axis.text(j, i, str(count), ha="center", va="center", color="black" if count < matrix.max() / 2 else "white")
        axis.set_xticks(range(3), CLASSES, rotation=30)
        axis.set_yticks(range(3), CLASSES)
        variant = result["variant"]
        axis.set_title(f"{variant['backbone']} ({variant['weights']})\n{variant['protocol']} folds", fontsize=8)
        axis.set_xlabel("predicted")
    axes[0][0].set_ylabel("true")
    fig.tight_layout()
    path = folder / f"confusion-{subset}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    figures.append((path, f"Pooled out-of-fold confusion matrices, {subset}"))
    fig, axis = plt.subplots(figsize=(5, 4.5))
    for result in results:
        variant = result["variant"]
        fpr, tpr, _ = roc_curve(result["y_true"] == COVID, result["proba"][:, COVID])
        axis.plot(fpr, tpr, label=f"{variant['backbone']} ({variant['weights']}), {variant['protocol']}")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("covid sensitivity")
    axis.legend(fontsize=7)
    fig.tight_layout()
    path = folder / f"roc-{subset}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    figures.append((path, f"ROC curves, covid vs rest, {subset}"))
    return figures


def paper_report(reproduced: dict, audit: dict | None, out_dir, featx_version: str) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` (plus PNGs) into ``out_dir``.

    Every number is recomputed from the stored predictions named in ``reproduced['runs']``.
    """
    from featx.evaluation.metrics import summarize
    from featx.evaluation.results import load_result

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [load_result(run["result_file"]) for run in reproduced["runs"]]
    metrics = [summarize(r["y_true"], r["proba"], r["fold"], r["groups"]) for r in results]
    subsets = [run["subset"] for run in reproduced["runs"]]
    doc = Document("featx: Apostolopoulos & Mpesiana (2020) reproduced and audited")
    doc.heading("Summary")
    for line in _summary_lines(results, metrics, subsets, audit, reproduced["skipped"]):
        doc.paragraph(line)
    doc.heading("Method")
    doc.bullets([
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
    ])
    for subset in dict.fromkeys(subsets):
        chosen = [i for i, s in enumerate(subsets) if s == subset]
        doc.heading(f"{subset}: our numbers beside the paper's (%)")
        header = ["backbone", "weights", "head", "protocol", "2-class acc", "paper", "3-class acc", "paper",
                  "covid sens", "paper", "covid spec", "paper", "AUC covid", "3-class fold sd"]
        rows = []
        for i in chosen:
            variant, m = results[i]["variant"], metrics[i]
            paper = PAPER.get((subset, variant["backbone"]), ("-",) * 4)
            rows.append([variant["backbone"], variant["weights"], variant["head"], variant["protocol"],
                         _with_ci(m, "accuracy_2class"), paper[0], _with_ci(m, "accuracy_3class"), paper[1],
                         _with_ci(m, "sensitivity"), paper[2], _with_ci(m, "specificity"), paper[3],
                         f"{m['auc_covid']:.3f}", _pct(m["per_fold"]["accuracy_3class"]["std"])])
        doc.table(header, rows)
        doc.paragraph("The paper's protocol is image-level; compare its numbers with the image rows.")
        for path, caption in _plots([results[i] for i in chosen], subset, out_dir / "figures"):
            doc.image(path, caption)
    if audit is not None:
        _audit_section(doc, audit)
    doc.heading("Provenance")
    doc.bullets(
        f"{subsets[i]} / {r['variant']['backbone']} / {r['variant']['protocol']}: data id {r['variant']['dataset_id']}, "
        f"weights {r['variant']['weights']} (sha256 {r['variant']['weights_sha256'][:12] or 'n/a'}), "
        f"input {'x'.join(map(str, r['variant']['input_size']))}, split {r['variant']['split_file']}, "
        f"predictions {r['path']}"
        for i, r in enumerate(results))
    doc.paragraph(f"featx {featx_version}.")
    markdown = out_dir / "report.md"
    markdown.write_text(doc.markdown(out_dir))
    html = out_dir / "report.html"
    html.write_text(doc.html())
    return markdown, html


def _summary_lines(results, metrics, subsets, audit, skipped) -> list[str]:
    lines = ["These numbers describe one public collection of 2,173 radiographs in which every covid image is an "
             "adult and nearly every other image a child from one hospital; they are not clinical performance."]
    for i, result in enumerate(results):
        variant, m = result["variant"], metrics[i]
        label = " (RANDOM-INIT backbone, not transfer learning)" if variant["weights"] == "random-init" else ""
        lines.append(f"{subsets[i]}, {variant['backbone']}{label} + {variant['head']}, {variant['protocol']}-level "
                     f"folds: 3-class accuracy {_with_ci(m, 'accuracy_3class')}%, covid sensitivity "
                     f"{_with_ci(m, 'sensitivity')}%, specificity {_with_ci(m, 'specificity')}%.")
    for backbone, reason in skipped.items():
        lines.append(f"{backbone} was skipped: {reason}.")
    if audit is not None:
        lines += audit_summary(audit)
    return lines


def audit_summary(audit: dict) -> list[str]:
    lines = []
    for probe in audit["source_probe"]:
        if probe["auc"] is not None:
            lines.append(f"Within {probe['class']}, the {audit['backbone']} features tell {probe['compared'][0]} from "
                         f"{probe['compared'][1]} images apart with ROC AUC {probe['auc']:.3f} (0.5 = invisible): "
                         f"the image's source is visible to the model.")
    masked = audit["lungs_masked"]
    lines.append(f"With the central lung field blacked out, 3-class accuracy is {_pct(masked['accuracy_3class_masked'])}% "
                 f"(vs {_pct(masked['accuracy_3class'])}% with the lungs; majority-class chance "
                 f"{_pct(masked['chance_3class'])}%): much of the signal lies outside the lungs.")
    adult = audit["adult_check"]
    if adult["fraction_called_covid"] is not None:
        warning = (" WARNING: the model calls most adult non-covid radiographs covid: it has learnt 'adult' more "
                   "than 'covid'." if adult["fraction_called_covid"] > 0.5 else "")
        lines.append(f"Of {adult['adult_non_covid']} adult non-covid radiographs, the model (out of fold) calls "
                     f"{adult['called_covid']} ({_pct(adult['fraction_called_covid'])}%) covid. The normal class holds "
                     f"{adult['normal_adults']} adults among {adult['normal_total']} images.{warning}")
    return lines


def _audit_section(doc: Document, audit: dict) -> None:
    doc.heading("Confound audit")
    doc.paragraph(f"{audit['backbone']} ({audit['weights']}) features, {audit['head']} head, "
                  f"{audit['folds']}-fold patient-grouped CV on {audit['dataset']}.")
    doc.table(["class", "sources (images)", "source-probe AUC"],
              [[p["class"], ", ".join(f"{k} ({v})" for k, v in p["sources"].items()),
                "n/a" if p["auc"] is None else f"{p['auc']:.3f}"] for p in audit["source_probe"]])
    masked = audit["lungs_masked"]
    doc.table(["input", "3-class acc %", "AUC covid"],
              [["whole radiograph", _pct(masked["accuracy_3class"]), f"{masked['auc_covid']:.3f}"],
               ["central lung field blacked out", _pct(masked["accuracy_3class_masked"]),
                f"{masked['auc_covid_masked']:.3f}"]])
    doc.table(["held-out covid site", "covid images", "covid sensitivity %"],
              [[row["site"], row["covid_images"], _pct(row["sensitivity"])] for row in audit["leave_one_site_out"]])
    adult = audit["adult_check"]
    doc.table(["adult non-covid class", "images", "called covid"],
              [[label, v["images"], v["called_covid"]] for label, v in adult["by_class"].items()])
    for line in audit_summary(audit):
        doc.paragraph(line)
