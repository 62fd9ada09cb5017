"""HDF5 feature store: one file per :class:`~featx.features.identity.StoreKey`.

A store is written as ``NAME.partial.h5`` batch by batch (flushed after each, so a killed
run resumes from its last finished batch) and renamed to ``NAME.h5`` only once complete,
with a checksum of its contents. A store whose key or format version does not match the
request, or whose checksum fails, is refused with its path.

Features depend only on the image bytes and the key's backbone, weights, preprocessing and
input size, so rows are looked up by image content hash across every store with the same
features, whatever dataset it was made for (:func:`gather_features`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featx.exceptions import CacheError, MissingFeaturesError
from featx.features.identity import StoreKey

FORMAT_VERSION = 1
TEXT = h5py.string_dtype()
ROW_COLUMNS = ("image_id", "content_hash", "label", "patient_id")
DIGEST_ROWS = 4096


def partial_path(path: Path) -> Path:
    """The in-progress file beside a store."""
    return path.with_name(path.stem + ".partial.h5")


@dataclass(frozen=True, eq=False)
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
        Every recorded attribute (the key, provenance, timings).
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


@dataclass(frozen=True, eq=False)
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
    """Every complete store file under ``cache_dir`` (any dataset, any features)."""
    return sorted(p for p in Path(cache_dir).glob("*/*.h5") if not p.name.endswith(".partial.h5"))


def matching_stores(cache_dir, key: StoreKey) -> list[FeatureStore]:
    """Complete, verified stores holding ``key``'s features for any dataset; ``key``'s own dataset first."""
    candidates = [p for p in Path(cache_dir).glob(f"*/{key.prefix}-*.h5") if not p.name.endswith(".partial.h5")]
    candidates.sort(key=lambda p: (p.parent.name != key.dataset_id, p.name))
    stores = []
    for path in candidates:
        store = open_store(path)
        if not key.for_dataset(store.key.dataset_id).differences(store.attrs):
            stores.append(store)
    return stores


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
    return GatheredFeatures(features, missing, sources)


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
            f"{', ' + key.preprocessing if '+mask' in key.preprocessing else ''}) in {cache_dir} holds "
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
    from featx.features.identity import FeatureSpec

    wanted = set(content_hashes)
    held, specs = {}, {}
    for path in complete_store_paths(cache_dir):
        try:
            store = open_store(path, load_features=False)
        except CacheError:
            continue
        if "+mask" in store.key.preprocessing:
            continue
        identity = store.key.for_dataset("")
        held.setdefault(identity, set()).update(store.rows["content_hash"])
        specs.setdefault(
            identity,
            FeatureSpec(
                store.key.backbone,
                store.key.weights_argument(store.attrs.get("weights_source", "")),
                store.key.input_size,
            ),
        )
    covering = [identity for identity, hashes in held.items() if wanted <= hashes]
    covering.sort(key=lambda k: (k.backbone, k.weights, k.input_size))
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


def read_attrs(handle) -> dict:
    """An HDF5 object's attributes as plain Python values."""
    return {key: _attr(value) for key, value in handle.attrs.items()}


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
        When the file is missing, unreadable, incomplete, damaged (checksum), of another format
        version, or made for another request.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: feature store not found")
    try:
        with h5py.File(path, "r") as handle:
            attrs = read_attrs(handle)
            rows = {column: np.array(_text(handle[column][...]), dtype=object) for column in ROW_COLUMNS}
            skipped = list(zip(_text(handle["skipped_id"][...]), _text(handle["skipped_reason"][...]), strict=True))
            features = handle["features"][...] if load_features else None
            intact = contents_digest(handle["features"] if features is None else features, rows) == attrs.get(
                "contents_sha256"
            )
        stored_key = StoreKey.from_attrs(attrs)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CacheError(f"{path}: damaged feature store ({error}); delete it or extract again with rebuild") from None
    if attrs.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{path}: store format {attrs.get('format_version')!r}, this featx reads format "
            f"{FORMAT_VERSION}; extract again with rebuild"
        )
    if not attrs.get("complete"):
        raise CacheError(f"{path}: store is not marked complete; extract again to finish it")
    if not intact:
        raise CacheError(f"{path}: checksum mismatch, the file was truncated or edited; extract again with rebuild")
    if key is not None:
        check_key(path, attrs, key)
    return FeatureStore(path, stored_key, features, rows, skipped, attrs)


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


class StoreWriter:
    """Append-only writer of a partial store, resumable after a crash.

    Parameters
    ----------
    key : StoreKey
    cache_dir : str or Path
    provenance : dict
        Further attributes to record (versions, weights source, ...).
    feature_dim : int
    """

    def __init__(self, key: StoreKey, cache_dir, provenance: dict, feature_dim: int):
        self.key = key
        self.path = key.path(cache_dir)
        self.partial = partial_path(self.path)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self._open_or_create(provenance, feature_dim)

    @property
    def next_position(self) -> int:
        """Dataset position of the first image not yet processed."""
        return int(self.handle.attrs["next_position"])

    def _open_or_create(self, provenance, feature_dim):
        if self.partial.exists():
            handle = self._reopen()
            if handle is not None:
                return handle
            self.partial.unlink()
        handle = h5py.File(self.partial, "w")
        handle.create_dataset(
            "features", shape=(0, feature_dim), maxshape=(None, feature_dim), dtype="float32", chunks=(256, feature_dim)
        )
        for column in ROW_COLUMNS + ("skipped_id", "skipped_reason"):
            handle.create_dataset(column, shape=(0,), maxshape=(None,), dtype=TEXT, chunks=(1024,))
        for name, value in {**provenance, **self.key.as_attrs()}.items():
            handle.attrs[name] = value
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["complete"] = False
        handle.attrs["next_position"] = 0
        handle.flush()
        return handle

    def _reopen(self):
        """The partial file opened for appending, or None when it is unreadable or another request's."""
        try:
            handle = h5py.File(self.partial, "a")
        except OSError:
            return None
        try:
            usable = (
                not self.key.differences(read_attrs(handle))
                and handle.attrs.get("format_version") == FORMAT_VERSION
                and handle["features"].shape[0] == handle["image_id"].shape[0]
            )
        except (OSError, KeyError):
            usable = False
        if not usable:
            handle.close()
            return None
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
        for name, value in extra_attrs.items():
            self.handle.attrs[name] = value
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
