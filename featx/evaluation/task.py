"""The task: which classes are told apart (and in which column order), and which one is positive.

The multi-class figures (accuracy, macro AUC, per-class recall, the confusion matrix) need no
positive class; sensitivity, specificity, the paper's "2-class accuracy" (positive vs the rest),
the positive class's ROC AUC and its calibration do.

The positive class, unless named: ``covid`` when that label exists (the paper's task), else the
least frequent class (ties: the first in class order), with a note saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from featx.data.labels import PAPER_CLASSES
from featx.exceptions import ParameterError, UnknownNameError

PAPER_POSITIVE = "covid"
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Task:
    """Class names in the column order of every probability, and the positive class.

    Attributes
    ----------
    classes : tuple of str
        At least two.
    positive : str
        One of ``classes``.
    """

    classes: tuple
    positive: str

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2:
            raise ParameterError("classes", list(self.classes), "must hold at least two classes")
        if self.positive not in self.classes:
            raise UnknownNameError("positive class", self.positive, self.classes)

    @classmethod
    def of(cls, classes, labels=(), positive: str | None = None) -> Task:
        """The task of ``classes``; the positive class named, or by the documented default rule.

        Parameters
        ----------
        classes : sequence of str
        labels : sequence of str
            The labels of the images (for the least-frequent-class rule).
        positive : str, optional
        """
        classes = tuple(classes)
        if positive is None:
            positive = default_positive(classes, labels)
        return cls(classes=classes, positive=positive)

    @property
    def positive_index(self) -> int:
        """Column of the positive class."""
        return self.classes.index(self.positive)

    @property
    def is_paper(self) -> bool:
        """Whether these are the paper's three classes (its 3-class accuracy is then defined)."""
        return self.classes == PAPER_CLASSES

    @property
    def is_covid(self) -> bool:
        """Whether the positive class is covid (the ``*_covid`` figures are then defined)."""
        return self.positive == PAPER_POSITIVE

    def to_json(self) -> dict:
        """Classes and positive class."""
        return {"classes": list(self.classes), "positive": self.positive}


def default_positive(classes, labels=()) -> str:
    """``covid`` when present, else the least frequent class among ``labels`` (noted on the log)."""
    classes = tuple(classes)
    if PAPER_POSITIVE in classes:
        return PAPER_POSITIVE
    labels = list(labels)
    counts = [labels.count(name) for name in classes] if labels else [0] * len(classes)
    chosen = classes[int(np.argmin(counts))]
    log.info(
        "positive class: %s (the least frequent of %s; name another with positive / --positive)",
        chosen,
        ", ".join(classes),
    )
    return chosen
