"""``CNNFeatures``: a scikit-learn transformer from image paths to cached CNN features."""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx.data.images import DEFAULT_SIZE
from featx.data.pool import default_workers
from featx.exceptions import FeatxError, ParameterError
from featx.features.identity import FeatureSpec


class CNNFeatures(TransformerMixin, BaseEstimator):
    """Pooled features of a frozen backbone for a list of image files.

    ``transform`` reads the feature stores in ``cache_dir`` (matched by image content and
    backbone identity, whatever dataset they were made for: :func:`featx.features.store.gather_features`,
    the lookup :func:`featx.features.extract.extract` reuses rows through too) and extracts only
    the images no store holds yet, so repeated calls inside cross-validation cost no CNN work, and
    a later ``featx extract`` of a folder holding these images runs only the others.

    Parameters
    ----------
    backbone : str
        Registry name (see ``featx.backbones.BACKBONES``).
    weights : str
        ``imagenet``, ``none`` (random-init) or a weights file.
    input_size : tuple of int
        (width, height) of the letterboxed input.
    batch_size : int
    cache_dir : str
    progress : bool
        Show a progress bar while extracting.
    n_jobs : int, optional
        Parallel image decoders while extracting, in scikit-learn's convention: None (default)
        means 1, -1 every core this process may use, -2 all but one, and so on. They are worker
        processes, or threads inside a joblib worker (``cross_val_score(..., n_jobs=2)``), where
        -1 means that worker's share of the cores. The forward pass is Keras's own.

    Notes
    -----
    ``X`` holds image file paths: str, bytes (decoded with :func:`os.fsdecode`) or
    :class:`os.PathLike`. Parallel folds that need the same images extracted wait for one
    another (see :func:`featx.features.extract.extract`) instead of doing the work twice.
    """

    def __init__(
        self,
        backbone="efficientnet_lite0",
        weights="imagenet",
        input_size=DEFAULT_SIZE,
        batch_size=32,
        cache_dir="cache",
        progress=False,
        n_jobs=None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.progress = progress
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Check the parameters; no learning happens (the backbone is frozen).

        Parameters
        ----------
        X : sequence of str or Path
            Image files.
        y : ignored
        """
        _as_paths(X)
        _decoders(self.n_jobs)
        self.feature_dim_ = FeatureSpec(
            backbone=self.backbone, weights=self.weights, input_size=self.input_size
        ).backbone_spec.feature_dim
        return self

    def transform(self, X):
        """Features of each image, (len(X), feature_dim) float32.

        Raises
        ------
        FeatxError
            Naming each file that cannot be decoded.
        """
        from featx.data.dataset import dataset_from_paths
        from featx.features.extract import extract
        from featx.features.store import gather_features

        check_is_fitted(self)
        dataset = dataset_from_paths(_as_paths(X))
        features = FeatureSpec(backbone=self.backbone, weights=self.weights, input_size=self.input_size)
        key = features.key(dataset.id)
        gathered = gather_features(self.cache_dir, key, dataset.table["content_hash"])
        if gathered.missing.any():
            todo = dataset_from_paths(dataset.table["path"][gathered.missing])
            summary = extract(
                todo,
                features,
                batch_size=self.batch_size,
                cache_dir=self.cache_dir,
                progress=self.progress,
                workers=_decoders(self.n_jobs),
            )
            if summary.skipped:
                reasons = "\n  ".join(f"{s.image_id}: {s.reason}" for s in summary.skipped_files)
                raise FeatxError(f"{summary.skipped} image(s) cannot be decoded:\n  {reasons}")
            gathered = gather_features(self.cache_dir, key, dataset.table["content_hash"])
        return gathered.features

    def get_feature_names_out(self, input_features=None):
        """Names ``<backbone>_0`` ... of the feature columns."""
        check_is_fitted(self)
        return np.array([f"{self.backbone}_{i}" for i in range(self.feature_dim_)], dtype=object)


def _as_paths(X) -> list[str]:
    values = list(np.asarray(X, dtype=object).ravel()) if not isinstance(X, (list, tuple)) else list(X)
    if not values:
        raise FeatxError("CNNFeatures needs at least one image path")
    bad = [repr(v) for v in values if not isinstance(v, (str, bytes)) and not hasattr(v, "__fspath__")]
    if bad:
        raise FeatxError(f"CNNFeatures takes image file paths; got {', '.join(bad[:3])}")
    return [os.fsdecode(v) for v in values]


def _decoders(n_jobs) -> int:
    """Decoders for scikit-learn's ``n_jobs``: None is 1, -1 every core, -2 all but one, ...

    Raises
    ------
    ParameterError
        When ``n_jobs`` is 0 or not a whole number.
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ParameterError("n_jobs", n_jobs, "must be a whole number other than 0 (None: 1, -1: every core)")
    return int(n_jobs) if n_jobs > 0 else max(1, default_workers() + 1 + int(n_jobs))
