"""Phases 2 and 3 evaluated alike: saved folds, variants, out-of-fold results, metrics."""

from featx.evaluation.splits import PROTOCOLS, Protocol

__all__ = ["PROTOCOLS", "Protocol"]
