"""Calibration of a probability: does "0.9" mean 90%? Reliability bins and expected calibration error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 10
FIGURES = ("ece_positive", "ece_covid")
"""The keys of :func:`calibration_figures`."""


@dataclass(frozen=True, kw_only=True)
class Reliability:
    """How often the event happened among predictions of each probability band.

    Attributes
    ----------
    edges : numpy.ndarray, (bins + 1,)
        Band edges on [0, 1]; the last band includes 1.
    mean_predicted : numpy.ndarray, (bins,)
        Mean predicted probability in each band (NaN for an empty band).
    observed : numpy.ndarray, (bins,)
        Fraction of positives in each band (NaN for an empty band).
    counts : numpy.ndarray of int, (bins,)
    ece : float
        Expected calibration error: sum over bands of (count / N) * |observed - mean predicted|;
        NaN without predictions.
    """

    edges: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    ece: float

    def to_json(self) -> dict:
        """Bands as lists (null for empty bands) and the ECE."""

        def listed(values):
            return [None if value != value else float(value) for value in values]

        return {
            "edges": listed(self.edges),
            "mean_predicted": listed(self.mean_predicted),
            "observed": listed(self.observed),
            "counts": [int(c) for c in self.counts],
            "ece": None if self.ece != self.ece else float(self.ece),
        }


def reliability(is_positive, probability, bins: int = BINS) -> Reliability:
    """Reliability of ``probability`` as a forecast of ``is_positive``, in ``bins`` equal-width bands.

    Parameters
    ----------
    is_positive : array of bool, (N,)
    probability : array of float, (N,)
        In [0, 1].
    bins : int
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    probability = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 12)
    band = np.minimum(np.digitize(probability, edges[1:-1], right=False), bins - 1)
    counts = np.bincount(band, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(band, weights=probability, minlength=bins) / counts
        observed = np.bincount(band, weights=is_positive.astype(float), minlength=bins) / counts
    filled = counts > 0
    ece = (
        float(np.sum(counts[filled] / counts.sum() * np.abs(observed[filled] - mean_predicted[filled])))
        if counts.sum()
        else float("nan")
    )
    return Reliability(edges=edges, mean_predicted=mean_predicted, observed=observed, counts=counts, ece=ece)


def calibration_figures(y_true, proba, task) -> dict:
    """ECE of the positive class's probability, as ``ece_positive`` and (when covid is positive) ``ece_covid``."""
    column = task.positive_index
    ece = reliability(np.asarray(y_true) == column, np.asarray(proba)[:, column]).ece
    return dict(zip(FIGURES, (ece, ece if task.is_covid else None), strict=True))
