"""featx: transfer learning on chest X-rays with cached ImageNet CNN features.

Importing featx does not import TensorFlow or Keras; the heavy modules load on first use.
"""

import importlib

__version__ = "0.2.0"

from featx.exceptions import FeatxError  # noqa: E402

_LAZY = {
    "load_dataset": "featx.data.dataset",
    "FeatureSpec": "featx.features.identity",
    "extract": "featx.features.extract",
    "CNNFeatures": "featx.features.transformer",
    "make_head": "featx.heads.registry",
    "HeadRecipe": "featx.heads.recipe",
    "with_strategy": "featx.heads.sampling",
    "Protocol": "featx.evaluation.splits",
    "fit_variant": "featx.evaluation.crossval",
    "compare_paired": "featx.evaluation.paired",
    "nested_select": "featx.evaluation.selection",
    "train_model": "featx.models.train",
    "predict_files": "featx.models.predict",
}
__all__ = ["FeatxError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
