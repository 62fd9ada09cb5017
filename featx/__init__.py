"""featx: transfer learning on chest X-rays with cached ImageNet CNN features.

Importing featx does not import TensorFlow or Keras; the heavy modules load on first use.
"""

import importlib

__version__ = "0.1.0"

from .exceptions import FeatxError  # noqa: E402

_LAZY = {
    "load_dataset": "data",
    "extract": "extract",
    "fit_variant": "evaluate",
    "make_head": "heads",
    "with_strategy": "sampling",
    "CNNFeatures": "pipeline",
}
__all__ = ["FeatxError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
