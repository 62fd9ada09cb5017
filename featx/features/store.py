"""HDF5 feature store: one file per :class:`~featx.features.identity.StoreKey`.

A store is written once, complete, from the finished chunks of an extraction (see
:mod:`featx.features.chunks`): under a temporary name, with a checksum of its contents, then
renamed to ``NAME.h5``. A store whose key or format version does not match the request, or
whose checksum fails, is refused with its path.

Features depend only on the image bytes and the key's backbone, weights, preprocessing and
input size, so rows are looked up by image content hash across every store with the same
features, whatever dataset it was made for (:func:`gather_features`).

Every store records the health of its features when it is written: per-dimension statistics
(``health_mean``, ``health_std``, ``health_min``, ``health_max``, ``health_nonfinite`` datasets)
and their summary as attributes (:class:`FeatureHealth`). A degenerate store (non-finite values,
features that vanish, mostly constant dimensions: :attr:`FeatureHealth.reasons`) is said in a
warning when it is made, and :func:`features_health` tells a report whether the features of a
key (a variant's) are degenerate, so that its figures are not printed as results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated

import h5py
import numpy as np
from pydantic import Field

from featx.exceptions import CacheError, MissingFeaturesError, RecordError
from featx.features.identity import StoreKey
from featx.fileio import replaced_atomically
from featx.records import Count, Seconds, Sha256, Text, check_regular_file, parse_record

FORMAT_VERSION = 2  # 2: the key records the decoder and the precision
TEXT = h5py.string_dtype()
ROW_COLUMNS = ("image_id", "content_hash", "label", "patient_id")
DIGEST_ROWS = 4096
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StoreAttributes(StoreKey):
    """A store's attributes, the record they are read through: its key, flat, and its provenance.

    Attributes
    ----------
    format_version : int
    complete : bool
    contents_sha256 : str
        sha256 of the features and rows (see :func:`contents_digest`).
    weights_source : str
        The weights file, or ``seed N`` for random-init.
    engine : str
        ``local`` or ``ray``.
    keras_version, backend, featx_version, created : str
    batch_size : int
    seconds, images_per_s, steady_images_per_s : float
    resumed_images, decoded_images : int
    reused_images : int
        Rows copied from stores made for other datasets (default 0: stores of earlier featx).
    cluster_nodes, cluster_cpus, cluster_gpus, ray_version
        The cluster's size and Ray's version (default None: the local engine).
    runtime_version : str or None
        The version of the runtime that ran the backbone (None: a store made before it was recorded).
    runtime_cache : str or None
        The cached conversion the runtime ran (OpenVINO), None for Keras.
    health_rows, health_dims, health_max_abs, health_median_std, health_constant_dims, health_nonfinite_values
        The features' health (see :class:`FeatureHealth`); None in a store made before it was recorded.
    """

    format_version: Annotated[int, Field(ge=1)]
    complete: bool
    contents_sha256: Sha256
    weights_source: Text
    engine: Text
    keras_version: Text
    backend: Text
    featx_version: Text
    created: Text
    batch_size: Annotated[int, Field(ge=1)]
    seconds: Seconds
    images_per_s: Seconds
    steady_images_per_s: Seconds
    resumed_images: Count
    decoded_images: Count
    reused_images: Count = 0
    cluster_nodes: Count | None = None
    cluster_cpus: Seconds | None = None
    cluster_gpus: Seconds | None = None
    ray_version: Text | None = None
    runtime_version: Text | None = None
    runtime_cache: Text | None = None
    health_rows: Count | None = None
    health_dims: Count | None = None
    health_max_abs: Seconds | None = None
    health_median_std: Seconds | None = None
    health_constant_dims: Count | None = None
    health_nonfinite_values: Count | None = None

    @property
    def key(self) -> StoreKey:
        """The store's key."""
        return StoreKey(**{field.name: getattr(self, field.name) for field in fields(StoreKey)})


VANISHING_MAX_ABS = 1e-6
"""A store whose largest finite |feature| is below this is degenerate: its features vanish (Keras'
random-init MobileNetV2 and EfficientNet-Lite give about 4e-11; real features are of order 0.1-10)."""
CONSTANT_RELATIVE_SPREAD = 1e-6
"""A dimension is constant when its range (max - min over the rows) is at most this times the
store's largest |feature|."""
CONSTANT_FRACTION_LIMIT = 0.5
"""A store with more than this fraction of constant dimensions is degenerate (a few dead ReLU
channels are normal; most of them carry nothing to learn from)."""
HEALTH_DATASETS = ("health_mean", "health_std", "health_min", "health_max", "health_nonfinite")
"""Per-dimension statistics a store holds beside its features (float64; ``health_nonfinite`` counts)."""


@dataclass(frozen=True, kw_only=True)
class FeatureHealth:
    """The health of a store's features: the summary of their per-dimension statistics, and the verdict.

    Attributes
    ----------
    rows : int
    dims : int
    max_abs : float
        Largest finite |feature| (0 when there is none).
    median_std : float
        Median over the dimensions of each dimension's standard deviation (finite values).
    constant_dims : int
        Dimensions whose range is at most :data:`CONSTANT_RELATIVE_SPREAD` times ``max_abs`` (0
        with fewer than two rows, where a spread means nothing).
    nonfinite_values : int
        NaN or infinite features.
    """

    rows: int
    dims: int
    max_abs: float
    median_std: float
    constant_dims: int
    nonfinite_values: int

    @property
    def reasons(self) -> tuple:
        """Why the features are degenerate, one text each; empty when they are healthy."""
        reasons = []
        if self.rows == 0:
            reasons.append("no rows")
        if self.nonfinite_values:
            reasons.append(f"{self.nonfinite_values} non-finite values")
        if self.rows and self.max_abs < VANISHING_MAX_ABS:
            reasons.append(f"features vanish (max |feature| {self.max_abs:.2g} < {VANISHING_MAX_ABS:g})")
        if self.dims and self.constant_dims > CONSTANT_FRACTION_LIMIT * self.dims:
            reasons.append(f"{self.constant_dims} of {self.dims} dimensions constant")
        return tuple(reasons)

    @property
    def degenerate(self) -> bool:
        """Whether the features carry nothing a head could learn from (any of :attr:`reasons`)."""
        return bool(self.reasons)

    @property
    def marking(self) -> str:
        """What a table or report prints in place of figures computed from these features: empty when
        they are healthy, else :func:`not_a_result` of the reasons."""
        return not_a_result(self.reasons) if self.degenerate else ""

    def as_attrs(self) -> dict:
        """The summary as store attributes: each field prefixed ``health_`` (as in :class:`StoreAttributes`)."""
        return {f"health_{field.name}": getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_attrs(cls, attrs: dict) -> FeatureHealth:
        """The summary a store's attributes record (see :meth:`as_attrs`)."""
        return cls(**{field.name: attrs[f"health_{field.name}"] for field in fields(cls)})

    @classmethod
    def of_statistics(cls, statistics: dict, rows: int) -> FeatureHealth:
        """The summary of per-dimension ``statistics`` (:data:`HEALTH_DATASETS`) over ``rows`` rows."""
        low, high = statistics["health_min"], statistics["health_max"]
        seen = np.isfinite(low)  # a dimension with at least one finite value
        max_abs = float(np.max(np.maximum(np.abs(low[seen]), np.abs(high[seen])), initial=0.0))
        spread = np.where(seen, high - low, 0.0)
        constant = int(np.sum(spread <= CONSTANT_RELATIVE_SPREAD * max_abs)) if rows >= 2 else 0
        std = statistics["health_std"][seen]
        return cls(
            rows=int(rows),
            dims=len(low),
            max_abs=max_abs,
            median_std=float(np.median(std)) if len(std) else 0.0,
            constant_dims=constant,
            nonfinite_values=int(np.sum(statistics["health_nonfinite"])),
        )

    @classmethod
    def of_features(cls, features) -> FeatureHealth:
        """The health of an (N, D) array of features."""
        statistics = DimensionStatistics(np.shape(features)[1])
        statistics.add(features)
        return statistics.health()


class DimensionStatistics:
    """Per-dimension statistics of features added part by part (float64 sums; non-finite values counted apart).

    Parameters
    ----------
    dims : int
    """

    def __init__(self, dims: int):
        self.rows = 0
        self.count = np.zeros(dims, np.int64)
        self.total = np.zeros(dims)
        self.squares = np.zeros(dims)
        self.low = np.full(dims, np.inf)
        self.high = np.full(dims, -np.inf)
        self.nonfinite = np.zeros(dims, np.int64)

    def add(self, features) -> None:
        """Take in (n, D) features."""
        values = np.asarray(features, dtype=np.float64)
        finite = np.isfinite(values)
        self.rows += len(values)
        self.count += finite.sum(axis=0)
        self.nonfinite += (~finite).sum(axis=0)
        clean = np.where(finite, values, 0.0)
        self.total += clean.sum(axis=0)
        self.squares += (clean * clean).sum(axis=0)
        self.low = np.minimum(self.low, np.where(finite, values, np.inf).min(axis=0, initial=np.inf))
        self.high = np.maximum(self.high, np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf))

    def arrays(self) -> dict:
        """The :data:`HEALTH_DATASETS` (mean, std, min and max NaN where a dimension has no finite value)."""
        count = np.maximum(self.count, 1)
        mean = self.total / count
        std = np.sqrt(np.maximum(self.squares / count - mean * mean, 0.0))
        none = self.count == 0
        return {
            "health_mean": np.where(none, np.nan, mean),
            "health_std": np.where(none, np.nan, std),
            "health_min": np.where(none, np.nan, self.low),
            "health_max": np.where(none, np.nan, self.high),
            "health_nonfinite": self.nonfinite,
        }

    def health(self) -> FeatureHealth:
        """The summary and verdict (see :class:`FeatureHealth`)."""
        return FeatureHealth.of_statistics(self.arrays(), self.rows)


@dataclass(frozen=True, eq=False, kw_only=True)
class FeatureStore:
    """A complete, verified feature store.

    Attributes
    ----------
    path : Path
    key : StoreKey
    features : numpy.ndarray or None
        (N, D) float32; None when opened without loading them.
    rows : dict of str to numpy.ndarray
        ``image_id``, ``content_hash``, ``label``, ``patient_id`` (N strings each).
    skipped : list of (image_id, reason)
    attrs : dict
        Every recorded attribute (the key, provenance, timings), as checked by :class:`StoreAttributes`.
    """

    path: Path
    key: StoreKey
    features: np.ndarray | None
    rows: dict
    skipped: list
    attrs: dict

    def row_of_content(self) -> dict:
        """Map from image content hash to feature row."""
        return {digest: index for index, digest in enumerate(self.rows["content_hash"])}

    @property
    def health(self) -> FeatureHealth:
        """The health recorded when the store was made; for an older store, computed from its features."""
        if self.attrs.get("health_rows") is not None:
            return FeatureHealth.from_attrs(self.attrs)
        if self.features is None:
            return open_store(self.path).health
        return FeatureHealth.of_features(self.features)


@dataclass(frozen=True, eq=False, kw_only=True)
class GatheredFeatures:
    """Features of a list of image contents, gathered from every store that holds them.

    Attributes
    ----------
    features : numpy.ndarray or None
        (N, D) float32 (NaN rows where missing); None when no store matched at all.
    missing : numpy.ndarray of bool
        Rows no store holds.
    sources : list of str
        Paths of the stores that supplied rows.
    """

    features: np.ndarray | None
    missing: np.ndarray
    sources: list


def complete_store_paths(cache_dir) -> list[Path]:
    """Every store file under ``cache_dir`` (any dataset, any features)."""
    return sorted(Path(cache_dir).glob("*/*.h5"))


def candidate_paths(cache_dir, key: StoreKey) -> list[Path]:
    """Store files under ``cache_dir`` whose name fits ``key``'s features, for any dataset; ``key``'s own first."""
    return sorted(Path(cache_dir).glob(f"*/{key.prefix}-*.h5"), key=lambda p: (p.parent.name != key.dataset_id, p.name))


def matching_stores(cache_dir, key: StoreKey) -> list[FeatureStore]:
    """Complete, verified stores holding ``key``'s features for any dataset; ``key``'s own dataset first.

    Stores of another format version (an older featx's) are passed over with a warning.
    """
    stores = []
    for path in candidate_paths(cache_dir, key):
        found = store_format(path)
        if found not in (None, FORMAT_VERSION):
            log.warning("%s: a store of format %s, passed over (this featx reads %d)", path, found, FORMAT_VERSION)
            continue
        store = open_store(path)
        if not key.for_dataset(store.key.dataset_id).differences(store.attrs):
            stores.append(store)
    return stores


def not_a_result(reasons) -> str:
    """The words that replace figures computed from degenerate features, naming why (``reasons``, texts)."""
    return f"degenerate features ({'; '.join(reasons)}): not a result"


def stores_health(paths) -> FeatureHealth | None:
    """The health of the features a result was computed from (its provenance's ``stores``).

    The first degenerate store's, else the first readable store's; None when no store can be read
    (a result of fine-tuning, or a cache whose stores were removed). Read from the attributes a
    store records when it is made, without verifying its features (an older store's health is
    computed from its verified features).
    """
    found = []
    for path in paths:
        if store_format(path) != FORMAT_VERSION:
            continue
        try:
            with h5py.File(path, "r") as handle:
                attrs = read_attrs(handle)
            recorded = attrs.get("health_rows") is not None
            found.append(FeatureHealth.from_attrs(attrs) if recorded else open_store(path).health)
        except (OSError, KeyError, CacheError) as error:
            log.warning("%s: its feature health cannot be read (%s)", path, error)
    return next((health for health in found if health.degenerate), found[0] if found else None)


def features_health(cache_dir, key: StoreKey) -> FeatureHealth | None:
    """The health of ``key``'s features (a variant's ``features``): of the store made for its dataset, else
    of another dataset's store of the same features; None when there is none.

    A report marks a row whose ``features_health(...).degenerate`` instead of printing its figures.
    """
    for path in candidate_paths(cache_dir, key):
        if store_format(path) != FORMAT_VERSION:
            continue
        store = open_store(path, load_features=False)
        if not key.for_dataset(store.key.dataset_id).differences(store.attrs):
            return store.health
    return None


def gather_features(cache_dir, key: StoreKey, content_hashes) -> GatheredFeatures:
    """Features of the given image contents from every store of ``key``'s features.

    A subset (the paper's Dataset_2, say) thus reads the store made for the whole folder, and
    an image seen in any earlier extraction is never run through the CNN again.

    Parameters
    ----------
    cache_dir : str or Path
    key : StoreKey
        ``dataset_id`` only orders the search.
    content_hashes : sequence of str
    """
    content_hashes = list(content_hashes)
    missing = np.ones(len(content_hashes), dtype=bool)
    features, sources = None, []
    for store in matching_stores(cache_dir, key):
        rows = store.row_of_content()
        found = [i for i in np.flatnonzero(missing) if content_hashes[i] in rows]
        if not found:
            continue
        if features is None:
            features = np.full((len(content_hashes), store.features.shape[1]), np.nan, dtype=np.float32)
        features[found] = store.features[[rows[content_hashes[i]] for i in found]]
        missing[found] = False
        sources.append(str(store.path))
        if not missing.any():
            break
    return GatheredFeatures(features=features, missing=missing, sources=sources)


def load_features(cache_dir, key: StoreKey, dataset) -> GatheredFeatures:
    """Features of every image of ``dataset``, all of which must be stored.

    Raises
    ------
    MissingFeaturesError
        Naming the features, the dataset, how many images are missing and the first of them.
    """
    gathered = gather_features(cache_dir, key, dataset.table["content_hash"])
    if gathered.missing.any():
        first = dataset.table["image_id"].iat[int(np.argmax(gathered.missing))]
        raise MissingFeaturesError(
            f"No feature store of {key.backbone} ({key.weights}, {key.input_size[0]}x{key.input_size[1]}"
            f"{', ' + key.preprocessing if key.mask else ''}) in {cache_dir} holds "
            f"{int(gathered.missing.sum())} of the {len(dataset)} images of {dataset.root} [{dataset.subset}] "
            f"(first: {first})"
        )
    return gathered


def extracted_features(cache_dir, content_hashes) -> list:
    """Every set of unmasked features in ``cache_dir`` whose stores together hold all ``content_hashes``.

    Returns
    -------
    list of FeatureSpec
        One per backbone / weights / input size, sorted by backbone, weights, input size.
    """
    wanted = set(content_hashes)
    held, specs = {}, {}
    for path in complete_store_paths(cache_dir):
        try:
            store = open_store(path, load_features=False)
        except (CacheError, RecordError):
            continue
        if store.key.mask is not None:
            continue
        identity = store.key.for_dataset("")
        held.setdefault(identity, set()).update(store.rows["content_hash"])
        specs.setdefault(identity, store.key.feature_spec(store.attrs.get("weights_source", "")))
    covering = [identity for identity, hashes in held.items() if wanted <= hashes]
    covering.sort(key=lambda k: (k.backbone, k.weights, k.input_size, k.precision, k.decoder, k.runtime))
    return [specs[identity] for identity in covering]


def contents_digest(features, rows: dict) -> str:
    """sha256 over the features' bytes and the row columns, stored to detect damage.

    ``features`` may be an array or an open HDF5 dataset; it is read ``DIGEST_ROWS`` rows at
    a time, so verifying a store needs no more memory at 30,000 images than at 3,000.
    """
    digest = hashlib.sha256()
    for start in range(0, features.shape[0], DIGEST_ROWS):
        digest.update(np.ascontiguousarray(features[start : start + DIGEST_ROWS], dtype="<f4").tobytes())
    for column in ROW_COLUMNS:
        digest.update("\n".join(rows[column]).encode())
    return digest.hexdigest()


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def store_format(path) -> int | None:
    """The format version a store file records, or None when it cannot be read."""
    try:
        check_regular_file(path, "feature store")
        with h5py.File(path, "r") as handle:
            return _attr(handle.attrs.get("format_version"))
    except (OSError, RecordError):
        return None


def read_attrs(handle) -> dict:
    """An HDF5 object's attributes as plain Python values."""
    return {key: _attr(value) for key, value in handle.attrs.items()}


def parse_attributes(path, attrs: dict) -> StoreAttributes:
    """A store's attributes, checked as one record (a value JSON cannot hold is named by its type).

    Raises
    ------
    RecordError
        Naming the store and each failing attribute, or a format version of another featx.
    """
    text = json.dumps(attrs, default=lambda value: f"<{type(value).__name__}>")
    return parse_record(
        text,
        StoreAttributes,
        path=path,
        what="feature store's attributes",
        version_field="format_version",
        version=FORMAT_VERSION,
    )


def open_store(path, key: StoreKey | None = None, load_features: bool = True) -> FeatureStore:
    """Open a complete store and verify it.

    Parameters
    ----------
    path : str or Path
    key : StoreKey, optional
        When given, every field must match the store's attributes.
    load_features : bool
        False verifies the store chunk by chunk and leaves ``features`` None (for summaries).

    Raises
    ------
    CacheError
        When the file is missing, unreadable, incomplete, damaged (checksum) or made for another request.
    RecordError
        When it is not a regular file, or its attributes do not fit :class:`StoreAttributes` (of
        another format version, a missing or malformed attribute), naming the attribute.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: feature store not found")
    check_regular_file(path, "feature store")
    try:
        with h5py.File(path, "r") as handle:
            attrs = read_attrs(handle)
            recorded = parse_attributes(path, attrs)
            rows = {column: np.array(_text(handle[column][...]), dtype=object) for column in ROW_COLUMNS}
            skipped = list(zip(_text(handle["skipped_id"][...]), _text(handle["skipped_reason"][...]), strict=True))
            features = handle["features"][...] if load_features else None
            intact = contents_digest(handle["features"] if features is None else features, rows) == (
                recorded.contents_sha256
            )
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CacheError(f"{path}: damaged feature store ({error}); delete it or extract again with rebuild") from None
    if not recorded.complete:
        raise CacheError(f"{path}: store is not marked complete; extract again to finish it")
    if not intact:
        raise CacheError(f"{path}: checksum mismatch, the file was truncated or edited; extract again with rebuild")
    if key is not None:
        check_key(path, attrs, key)
    return FeatureStore(path=path, key=recorded.key, features=features, rows=rows, skipped=skipped, attrs=attrs)


def check_key(path, attrs: dict, key: StoreKey) -> None:
    """Refuse a store whose recorded key differs from the request.

    Raises
    ------
    CacheError
        Listing each differing field with the stored and requested values.
    """
    differences = key.differences(attrs)
    if differences:
        raise CacheError(f"{path}: provenance does not match the request; refused ({'; '.join(differences)})")


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_store(path, key: StoreKey, attrs: dict, parts, feature_dim: int) -> Path:
    """Write a complete store from its parts, in order, and rename it into place.

    Parameters
    ----------
    path : str or Path
    key : StoreKey
    attrs : dict
        Provenance and timings to record beside the key.
    parts : iterable of (features, rows, skipped)
        ``features`` (n, D) float32, ``rows`` a dict of the :data:`ROW_COLUMNS` (n strings each),
        ``skipped`` a list of (image_id, reason).
    feature_dim : int

    Returns
    -------
    Path
        The store, written under a temporary name (removed if anything fails), checksummed,
        flushed to disk and renamed; its features' health recorded (a degenerate store said in a warning).
    """
    path = Path(path)
    with replaced_atomically(path) as temporary:
        handle = h5py.File(temporary, "w")
        try:
            health = _fill_store(handle, key, attrs, parts, feature_dim)
        except BaseException:
            with contextlib.suppress(OSError, RuntimeError):  # on a failing disk closing fails too
                handle.close()
            raise
        handle.close()
    if health.degenerate:
        log.warning(
            "%s: degenerate features (%s); figures computed from them are no results", path, "; ".join(health.reasons)
        )
    return path


def _fill_store(handle, key: StoreKey, attrs: dict, parts, feature_dim: int) -> FeatureHealth:
    shape = {"shape": (0, feature_dim), "maxshape": (None, feature_dim), "chunks": (256, feature_dim)}
    handle.create_dataset("features", dtype="float32", **shape)
    for column in ROW_COLUMNS + ("skipped_id", "skipped_reason"):
        handle.create_dataset(column, shape=(0,), maxshape=(None,), dtype=TEXT, chunks=(1024,))
    rows = {column: [] for column in ROW_COLUMNS}
    statistics = DimensionStatistics(feature_dim)
    for features, part_rows, skipped in parts:
        features = np.asarray(features, dtype=np.float32).reshape(-1, feature_dim)
        _extend(handle["features"], features)
        statistics.add(features)
        for column in ROW_COLUMNS:
            _extend(handle[column], np.array(part_rows[column], dtype=object))
            rows[column] += list(part_rows[column])
        _extend(handle["skipped_id"], np.array([s[0] for s in skipped], dtype=object))
        _extend(handle["skipped_reason"], np.array([s[1] for s in skipped], dtype=object))
    for name, values in statistics.arrays().items():
        handle.create_dataset(name, data=values)
    health = statistics.health()
    for name, value in {**attrs, **health.as_attrs(), **key.as_attrs()}.items():
        handle.attrs[name] = value
    handle.attrs["format_version"] = FORMAT_VERSION
    handle.attrs["complete"] = True
    handle.attrs["contents_sha256"] = contents_digest(handle["features"], rows)
    return health


def _extend(dataset, values) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    if len(values):
        dataset[start:] = values
