"""Frozen ImageNet backbones: the registry, their weights, and featx's EfficientNet-Lite port."""

from featx.backbones.registry import BACKBONES, BackboneSpec, cutoff_for, get_spec

__all__ = ["BACKBONES", "BackboneSpec", "cutoff_for", "get_spec"]
