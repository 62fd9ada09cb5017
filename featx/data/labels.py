"""Labels: the paper's classes, and the documented order of any label set."""

from __future__ import annotations

PAPER_CLASSES = ("covid", "pneumonia", "normal")


def class_order(labels) -> tuple[str, ...]:
    """The documented order of a label set: the paper's when its labels are the paper's, else alphabetical."""
    present = set(labels)
    if present <= set(PAPER_CLASSES):
        return tuple(name for name in PAPER_CLASSES if name in present)
    return tuple(sorted(present))
