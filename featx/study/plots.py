"""The figures of featx's reports: confusion heatmaps, ROC curves, reliability diagrams (PNG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featx.fileio import make_folder, replaced_atomically


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    make_folder(path.parent)
    fig.tight_layout()
    try:
        with replaced_atomically(path) as temporary:
            fig.savefig(temporary, dpi=90, format="png")
    finally:
        _pyplot().close(fig)
    return path


def confusion_figure(matrices, titles, classes, path: Path) -> Path:
    """Confusion heatmaps side by side (rows: true class, columns: predicted)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.2 * len(matrices), 3.2), squeeze=False)
    for axis, matrix, title in zip(axes[0], matrices, titles, strict=True):
        matrix = np.asarray(matrix)
        axis.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            colour = "black" if count < matrix.max() / 2 else "white"
            axis.text(j, i, str(count), ha="center", va="center", color=colour)
        axis.set_xticks(range(len(classes)), classes, rotation=30)
        axis.set_yticks(range(len(classes)), classes)
        axis.set_title(title, fontsize=8)
        axis.set_xlabel("predicted")
    axes[0][0].set_ylabel("true")
    return _save(fig, path)


def roc_figure(curves, path: Path, positive: str = "covid") -> Path:
    """ROC curves of ``positive`` vs the rest; ``curves`` is a list of (label, is_positive, score)."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(5, 4.5))
    for label, is_positive, score in curves:
        fpr, tpr, _ = roc_curve(is_positive, score)
        axis.plot(fpr, tpr, label=label)
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel(f"{positive} sensitivity")
    axis.legend(fontsize=7)
    return _save(fig, path)


def reliability_figure(diagrams, path: Path, positive: str = "covid") -> Path:
    """Reliability diagrams: observed frequency against mean predicted probability per band.

    ``diagrams`` is a list of (label, :class:`featx.evaluation.calibration.Reliability`).
    """
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(5, 4.5))
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for label, diagram in diagrams:
        filled = diagram.counts > 0
        axis.plot(
            diagram.mean_predicted[filled], diagram.observed[filled], "o-", label=f"{label} (ECE {diagram.ece:.3f})"
        )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel(f"predicted probability of {positive}")
    axis.set_ylabel(f"observed fraction {positive}")
    axis.legend(fontsize=7)
    return _save(fig, path)


def forest_figure(panels, labels, path: Path, title: str = "") -> Path:
    """A forest plot of paired differences: one panel per figure, one row per variant, each difference
    with its interval, filled where distinguishable from noise, a line at no difference.

    ``panels`` is a list of (axis label, [(difference, low, high, distinguishable) per label]), in the
    unit of the axis label; ``labels`` names the rows.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.6 * len(panels) + 1.5, 0.45 * len(labels) + 1.4), squeeze=False, sharey=True
    )
    rows = np.arange(len(labels))[::-1]
    for axis, (name, points) in zip(axes[0], panels, strict=True):
        axis.axvline(0, color="grey", linestyle=":")
        for row, (difference, low, high, distinguishable) in zip(rows, points, strict=True):
            axis.plot([low, high], [row, row], color="black")
            axis.plot(difference, row, "o", color="black", markerfacecolor="black" if distinguishable else "white")
        axis.set_xlabel(name, fontsize=8)
    axes[0][0].set_yticks(rows, labels)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
