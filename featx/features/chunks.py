"""Kill-safe work in progress: each finished batch of features is one immutable chunk file.

Batches are fixed by dataset position (``[0:B]``, ``[B:2B]``, ...), so a resumed run computes
exactly the batches that are missing and the assembled store equals an uninterrupted run's bit
for bit. A chunk is written under a temporary name, flushed and renamed (see
:func:`featx.fileio.write_arrays_atomic`), and names its rows by image content hash, so any
engine (this process, or actors elsewhere) can write chunks that one finisher assembles.

A chunk folder sits beside its store (``NAME.chunks/`` for ``NAME.h5``) and holds
``FIRST-LAST.npz`` files. A chunk that is truncated, damaged, or made for another store key is
reported, deleted and done again.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.exceptions import CacheError
from featx.features.store import ROW_COLUMNS
from featx.fileio import read_arrays_verified, write_arrays_atomic

CHUNK_FORMAT = 1
LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, kw_only=True)
class Chunk:
    """The features of one batch, ``dataset[first:last]``.

    Attributes
    ----------
    first, last : int
        Dataset positions the batch covers.
    batch_size : int
        The batch size of the run that made it (the last batch may be shorter).
    key_digest : str
        :meth:`StoreKey.digest` of the store it belongs to.
    rows : dict of str to list of str
        ``content_hash``, ``image_id``, ``label``, ``patient_id`` of each decoded image.
    features : numpy.ndarray
        (rows, D) float32.
    skipped : list of (image_id, reason)
        Images of the batch that could not be decoded.
    """

    first: int
    last: int
    batch_size: int
    key_digest: str
    rows: dict
    features: np.ndarray
    skipped: list

    def __len__(self) -> int:
        return len(self.rows["content_hash"])


def chunk_folder(store_path) -> Path:
    """The chunk folder of a store: ``NAME.chunks`` beside ``NAME.h5``."""
    return Path(store_path).with_suffix(".chunks")


def lock_path(store_path) -> Path:
    """The lock file of a store's extraction, inside its chunk folder (gone with the folder)."""
    return chunk_folder(store_path) / LOCK_NAME


def discard_chunks(folder) -> None:
    """Delete every chunk (finished or half-written) in ``folder``, leaving its lock file."""
    for path in [*Path(folder).glob("*.npz"), *Path(folder).glob("*.tmp")]:
        path.unlink(missing_ok=True)


def batch_bounds(total: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(0, B), (B, 2B), ...]`` covering ``total`` positions."""
    return [(first, min(first + batch_size, total)) for first in range(0, total, batch_size)]


def chunk_path(folder, first: int, last: int) -> Path:
    """Where the chunk of ``dataset[first:last]`` lives."""
    return Path(folder) / f"{first:09d}-{last:09d}.npz"


def write_chunk(folder, chunk: Chunk) -> Path:
    """Write ``chunk`` atomically (temporary name, fsync, rename) into ``folder``."""
    return write_arrays_atomic(
        chunk_path(folder, chunk.first, chunk.last),
        {
            "format": np.asarray(CHUNK_FORMAT),
            "bounds": np.asarray([chunk.first, chunk.last, chunk.batch_size], dtype=np.int64),
            "key_digest": np.asarray(chunk.key_digest),
            **{column: _text_array(chunk.rows[column]) for column in ROW_COLUMNS},
            "features": np.asarray(chunk.features, dtype="<f4"),
            "skipped_id": _text_array([image_id for image_id, _ in chunk.skipped]),
            "skipped_reason": _text_array([reason for _, reason in chunk.skipped]),
        },
    )


def read_chunk(path, key_digest: str) -> Chunk:
    """Read and verify one chunk.

    Raises
    ------
    CacheError
        When the file is truncated or damaged (checksum), of another chunk format, or made for
        another store key.
    """
    try:
        arrays = read_arrays_verified(path)
        if int(arrays["format"]) != CHUNK_FORMAT:
            raise ValueError(f"chunk format {int(arrays['format'])}, this featx writes {CHUNK_FORMAT}")
        first, last, batch_size = (int(value) for value in arrays["bounds"])
        rows = {column: arrays[column].tolist() for column in ROW_COLUMNS}
        skipped = list(zip(arrays["skipped_id"].tolist(), arrays["skipped_reason"].tolist(), strict=True))
        chunk = Chunk(
            first=first,
            last=last,
            batch_size=batch_size,
            key_digest=str(arrays["key_digest"]),
            rows=rows,
            features=arrays["features"],
            skipped=skipped,
        )
    except (KeyError, ValueError, TypeError) as error:
        raise CacheError(f"{path}: damaged chunk ({error})") from None
    if chunk.key_digest != key_digest:
        raise CacheError(f"{path}: chunk of another store (key {chunk.key_digest}, expected {key_digest})")
    if Path(path).name != chunk_path(".", first, last).name:
        raise CacheError(f"{path}: chunk holds positions {first}-{last}, not what its name says")
    return chunk


def resume_plan(folder, key_digest: str, total: int, batch_size: int) -> tuple[int, dict]:
    """The batch size to go on with and the batches already finished in ``folder``.

    Every chunk is read and verified; one that is damaged, of another key, or of another
    batching is reported and deleted (its batch is done again), and so are the temporary files
    of a killed writer. An interrupted run is resumed with its own batch size, whatever
    ``batch_size`` asks, so its chunks stay valid. Call this under the store's lock.

    Returns
    -------
    batch_size : int
    finished : dict of (int, int) to int
        Rows (decoded images) of each finished batch, by its bounds.
    """
    folder = Path(folder)
    for leftover in folder.glob("*.tmp"):
        leftover.unlink(missing_ok=True)
    chunks = {}
    for path in sorted(folder.glob("*.npz")):
        try:
            chunk = read_chunk(path, key_digest)
        except CacheError as error:
            log.warning("%s; deleted, its batch is done again", error)
            path.unlink(missing_ok=True)
            continue
        chunks[path] = chunk
    sizes = {chunk.batch_size for chunk in chunks.values()}
    if len(sizes) == 1 and batch_size not in sizes:
        log.warning("resuming with the interrupted run's batch size %d (asked for %d)", min(sizes), batch_size)
        batch_size = min(sizes)
    plan = set(batch_bounds(total, batch_size))
    finished = {}
    for path, chunk in chunks.items():
        if (chunk.first, chunk.last) in plan and chunk.batch_size == batch_size:
            finished[(chunk.first, chunk.last)] = len(chunk)
        else:
            log.warning("%s: chunk of another batching; deleted, its images are done again", path)
            path.unlink(missing_ok=True)
    return batch_size, finished


def chunk_parts(folder, key_digest: str, total: int, batch_size: int):
    """The finished chunks of every batch of ``total`` positions, in order, as store parts.

    Parameters
    ----------
    folder : str or Path
        The chunk folder.
    key_digest : str
        The digest every chunk must record.
    total : int
        Positions the batches cover.
    batch_size : int
        The batching of the run that made the chunks.

    Yields
    ------
    (features, rows, skipped)
        The parts :func:`featx.features.store.write_store` takes, one per chunk.

    Raises
    ------
    CacheError
        When a batch has no intact chunk.
    """
    for first, last in batch_bounds(total, batch_size):
        chunk_file = chunk_path(folder, first, last)
        if not chunk_file.exists():
            raise CacheError(f"{chunk_file}: chunk missing; extract again to redo it")
        chunk = read_chunk(chunk_file, key_digest)
        yield chunk.features, chunk.rows, chunk.skipped


def remove_folder(folder) -> None:
    """Delete a chunk folder once its store is complete (its lock file included)."""
    shutil.rmtree(folder, ignore_errors=True)


def _text_array(values) -> np.ndarray:
    values = [str(value) for value in values]
    return np.asarray(values, dtype=f"<U{max([1, *map(len, values)])}")
