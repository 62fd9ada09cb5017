"""Phase 1: feature stores keyed by what the features depend on, extraction, the sklearn transformer."""

from featx.features.identity import FeatureSpec, StoreKey

__all__ = ["FeatureSpec", "StoreKey"]
