"""featx: transfer learning on chest X-rays with cached ImageNet CNN features.

Importing featx does not import TensorFlow or Keras; the heavy modules load on first use.
"""

__version__ = "0.1.0"

__all__ = ["FeatxError", "load_dataset", "extract", "__version__"]

from .exceptions import FeatxError  # noqa: E402


def __getattr__(name):
    if name == "load_dataset":
        from .data import load_dataset

        return load_dataset
    if name == "extract":
        from .extract import extract

        return extract
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
