"""HDF5 feature store: one file per (dataset, backbone, weights, input size, preprocessing).

A store is written as ``NAME.partial.h5`` batch by batch (flushed after each, so a killed
run resumes from its last finished batch) and renamed to ``NAME.h5`` only once complete,
with a checksum of its contents.  A store whose provenance does not match the request, or
whose checksum fails, is refused with its path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featx.exceptions import CacheError

FORMAT_VERSION = 1
TEXT = h5py.string_dtype()
ROW_COLUMNS = ("image_id", "content_hash", "label", "patient_id")
IDENTITY_KEYS = ("dataset_id", "backbone", "weights", "weights_sha256", "preprocessing", "input_size")


def request_key(identity: dict) -> str:
    """Short hash of the fields that make two stores interchangeable."""
    text = json.dumps({key: identity[key] for key in IDENTITY_KEYS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_path(cache_dir, identity: dict) -> Path:
    """Where the complete store for ``identity`` lives.

    Parameters
    ----------
    cache_dir : str or Path
    identity : dict
        Holds every key of :data:`IDENTITY_KEYS`; ``input_size`` is ``[width, height]``.
    """
    width, height = identity["input_size"]
    weights = identity["weights"].replace(":", "-").replace("/", "_")
    name = f"{identity['backbone']}-{weights}-{width}x{height}-{request_key(identity)}.h5"
    return Path(cache_dir) / identity["dataset_id"] / name


def partial_path(path: Path) -> Path:
    """The in-progress file beside a store."""
    return path.with_name(path.stem + ".partial.h5")


@dataclass
class FeatureStore:
    """A complete, verified feature store loaded into memory.

    Attributes
    ----------
    path : Path
    features : numpy.ndarray, (N, D) float32, or None when opened without loading them
    rows : dict of str to numpy.ndarray
        ``image_id``, ``content_hash``, ``label``, ``patient_id`` (N strings each).
    skipped : list of (image_id, reason)
    attrs : dict
        Provenance.
    """

    path: Path
    features: np.ndarray
    rows: dict
    skipped: list
    attrs: dict

    def row_of_content(self) -> dict:
        """Map from image content hash to feature row."""
        return {digest: index for index, digest in enumerate(self.rows["content_hash"])}


def matching_stores(cache_dir, identity: dict) -> list[FeatureStore]:
    """Complete stores made with ``identity``'s backbone, weights, preprocessing and input size,
    for any dataset; the one made for ``identity['dataset_id']`` comes first."""
    width, height = identity["input_size"]
    weights = identity["weights"].replace(":", "-").replace("/", "_")
    pattern = f"*/{identity['backbone']}-{weights}-{width}x{height}-*.h5"
    candidates = [p for p in Path(cache_dir).glob(pattern) if not p.name.endswith(".partial.h5")]
    candidates.sort(key=lambda p: (p.parent.name != identity["dataset_id"], p.name))
    stores = []
    for path in candidates:
        store = open_store(path)
        try:
            check_identity(path, store.attrs, {**identity, "dataset_id": store.attrs["dataset_id"]})
        except CacheError:
            continue
        stores.append(store)
    return stores


def collect_features(cache_dir, identity: dict, content_hashes):
    """Features of the given image contents, gathered from every matching store.

    Features depend only on the image bytes and the backbone identity, so a subset (the
    paper's Dataset_2, say) reads the store made for the whole folder, and an image seen in
    any earlier extraction is never run through the CNN again.

    Parameters
    ----------
    cache_dir : str or Path
    identity : dict
        See :data:`IDENTITY_KEYS`; ``dataset_id`` only orders the search.
    content_hashes : sequence of str

    Returns
    -------
    features : numpy.ndarray or None
        (N, D) float32, None when no store matches at all.
    missing : numpy.ndarray of bool
        Rows no store holds (their features are NaN).
    sources : list of str
        Paths of the stores that supplied rows.
    """
    content_hashes = list(content_hashes)
    missing = np.ones(len(content_hashes), dtype=bool)
    features, sources = None, []
    for store in matching_stores(cache_dir, identity):
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
    return features, missing, sources


DIGEST_ROWS = 4096


def contents_digest(features, rows: dict) -> str:
    """sha256 over the features' bytes and the row columns, stored to detect damage.

    ``features`` may be an array or an open HDF5 dataset; it is read ``DIGEST_ROWS`` rows at
    a time, so verifying a store needs no more memory at 30,000 images than at 3,000.
    """
    digest = hashlib.sha256()
    for start in range(0, features.shape[0], DIGEST_ROWS):
        digest.update(np.ascontiguousarray(features[start:start + DIGEST_ROWS], dtype="<f4").tobytes())
    for column in ROW_COLUMNS:
        digest.update("\n".join(rows[column]).encode())
    return digest.hexdigest()


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def open_store(path, identity: dict | None = None, load_features: bool = True) -> FeatureStore:
    """Open a complete store and verify it.

    Parameters
    ----------
    path : str or Path
    identity : dict, optional
        When given, every key of :data:`IDENTITY_KEYS` must match the store's attributes.
    load_features : bool
        False verifies the store chunk by chunk and leaves ``features`` None (for summaries).

    Raises
    ------
    CacheError
        When the file is missing, unreadable, incomplete, damaged (checksum) or made for
        another request.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: feature store not found")
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _attr(value) for key, value in handle.attrs.items()}
            rows = {column: np.array(_text(handle[column][...]), dtype=object) for column in ROW_COLUMNS}
            skipped = list(zip(_text(handle["skipped_id"][...]), _text(handle["skipped_reason"][...])))
            features = handle["features"][...] if load_features else None
            intact = contents_digest(handle["features"] if features is None else features, rows) == attrs.get(
                "contents_sha256")
    except (OSError, KeyError, ValueError) as error:
        raise CacheError(f"{path}: damaged feature store ({error}); delete it or rerun extract with --rebuild") from None
    if not attrs.get("complete"):
        raise CacheError(f"{path}: store is not marked complete; rerun extract to finish it")
    if not intact:
        raise CacheError(f"{path}: checksum mismatch, the file was truncated or edited; rerun extract with --rebuild")
    if identity is not None:
        check_identity(path, attrs, identity)
    return FeatureStore(path, features, rows, skipped, attrs)


def check_identity(path, attrs: dict, identity: dict) -> None:
    """Refuse a store whose provenance differs from the request.

    Raises
    ------
    CacheError
        Listing each differing field with the stored and requested values.
    """
    differences = [
        f"{key}: store has {attrs.get(key)!r}, request has {identity[key]!r}"
        for key in IDENTITY_KEYS
        if _normalise(attrs.get(key)) != _normalise(identity[key])
    ]
    if differences:
        raise CacheError(f"{path}: provenance does not match the request; refused ({'; '.join(differences)})")


def _normalise(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    return value


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class StoreWriter:
    """Append-only writer of a partial store, resumable after a crash.

    Parameters
    ----------
    path : Path
        The final store path; the writer works on :func:`partial_path` of it.
    identity : dict
        Request identity (see :data:`IDENTITY_KEYS`).
    provenance : dict
        Further attributes to record (versions, weights source, ...).
    feature_dim : int
    """

    def __init__(self, path: Path, identity: dict, provenance: dict, feature_dim: int):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self._open_or_create(identity, provenance, feature_dim)

    @property
    def next_position(self) -> int:
        """Dataset position of the first image not yet processed."""
        return int(self.handle.attrs["next_position"])

    def _open_or_create(self, identity, provenance, feature_dim):
        if self.partial.exists():
            try:
                handle = h5py.File(self.partial, "a")
                attrs = {key: _attr(value) for key, value in handle.attrs.items()}
                check_identity(self.partial, attrs, identity)
                if handle["features"].shape[0] != handle["image_id"].shape[0]:
                    raise CacheError("row count mismatch")
                return handle
            except (OSError, KeyError, CacheError):
                try:
                    handle.close()
                except (NameError, UnboundLocalError, OSError):
                    pass
                self.partial.unlink()
        handle = h5py.File(self.partial, "w")
        handle.create_dataset("features", shape=(0, feature_dim), maxshape=(None, feature_dim),
                              dtype="float32", chunks=(256, feature_dim))
        for column in ROW_COLUMNS + ("skipped_id", "skipped_reason"):
            handle.create_dataset(column, shape=(0,), maxshape=(None,), dtype=TEXT, chunks=(1024,))
        for key, value in {**provenance, **identity}.items():
            handle.attrs[key] = value
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["complete"] = False
        handle.attrs["next_position"] = 0
        handle.flush()
        return handle

    def append(self, features: np.ndarray, rows: dict, skipped: list, next_position: int) -> None:
        """Add one finished batch and flush; ``next_position`` marks where to resume."""
        _extend(self.handle["features"], np.asarray(features, dtype=np.float32))
        for column in ROW_COLUMNS:
            _extend(self.handle[column], np.array(rows[column], dtype=object))
        if skipped:
            _extend(self.handle["skipped_id"], np.array([s[0] for s in skipped], dtype=object))
            _extend(self.handle["skipped_reason"], np.array([s[1] for s in skipped], dtype=object))
        self.handle.attrs["next_position"] = next_position
        self.handle.flush()

    def finish(self, extra_attrs: dict) -> Path:
        """Mark complete with its checksum, close, and rename into place atomically."""
        rows = {column: _text(self.handle[column][...]) for column in ROW_COLUMNS}
        for key, value in extra_attrs.items():
            self.handle.attrs[key] = value
        self.handle.attrs["contents_sha256"] = contents_digest(self.handle["features"], rows)
        self.handle.attrs["complete"] = True
        self.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close the partial file (it stays on disk for a later resume).

        On a failing disk closing can fail too; the partial file is then left as it is, and
        the next run either resumes it or, if HDF5 cannot read it, starts it again.
        """
        if self.handle.id.valid:
            try:
                self.handle.close()
            except (OSError, RuntimeError):
                pass


def _extend(dataset, values) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    if len(values):
        dataset[start:] = values
