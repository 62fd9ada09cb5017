"""What every featx head shares: prediction as the argmax of probabilities, sample-weight checks."""

from __future__ import annotations

import numpy as np


class ArgmaxPredictMixin:
    """``predict`` as the most probable class of ``predict_proba``."""

    def predict(self, X):
        """Most probable class."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def check_sample_weight(sample_weight, n_samples: int):
    """Sample weights as float64, or None; refuse a wrong shape or all zeros.

    Raises
    ------
    ValueError
    """
    if sample_weight is None:
        return None
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.shape != (n_samples,):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n_samples},)")
    if not np.any(sample_weight > 0):
        raise ValueError("All sample weights are zero; at least one must be positive")
    return sample_weight
