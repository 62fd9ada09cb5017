"""Engines compute the batches of an extraction that have no finished chunk yet, one chunk per batch.

An engine gets a :class:`BatchPlan` (the batches to do, the images, the features, where chunks go)
and writes one chunk per batch in the format of :mod:`featx.features.chunks`; the extraction
around it (locking, resuming, assembling the store) is the same whatever engine ran. The local
engine is this process with decoding worker processes; the Ray engine
(:mod:`featx.features.ray_engine`) spreads the same work over a Ray cluster.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from featx import limits
from featx.data.pool import default_workers
from featx.exceptions import ParameterError, UnknownNameError
from featx.features import chunks
from featx.features.identity import FeatureSpec
from featx.features.pixels import PixelBatch, PixelCache, PixelFeed, PixelKey
from featx.features.store import ROW_COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, kw_only=True)
class BatchPlan:
    """The batches an engine must compute, and everything it needs to compute them.

    Attributes
    ----------
    table : pandas.DataFrame
        The dataset's rows: ``path``, ``content_hash`` and :data:`featx.features.store.ROW_COLUMNS`.
    features : FeatureSpec
    batch_size : int
    todo : list of (int, int)
        Dataset positions ``(first, last)`` of each batch to compute.
    key_digest : str
        The store key's digest, recorded in every chunk.
    folder : Path
        The chunk folder.
    pixel_key : PixelKey
    cache_dir : Path
    pixel_cache : bool
        Read and keep letterboxed pixels in the pixel cache.
    """

    table: pd.DataFrame
    features: FeatureSpec
    batch_size: int
    todo: list
    key_digest: str
    folder: Path
    pixel_key: PixelKey
    cache_dir: Path
    pixel_cache: bool = True

    @property
    def images(self) -> int:
        """Images in the batches to do."""
        return sum(last - first for first, last in self.todo)

    def open_pixel_cache(self) -> PixelCache | None:
        """The pixel cache of this plan's size, mask and decoder, or None when it is not used."""
        return PixelCache(self.cache_dir, self.pixel_key) if self.pixel_cache else None

    def feed(self, cache: PixelCache | None, workers: int) -> PixelFeed:
        """Pixels of this plan's images, from ``cache`` or decoded by ``workers`` processes (0: threads)."""
        return PixelFeed(self.table["path"], self.table["content_hash"], self.pixel_key, cache=cache, workers=workers)

    def rows(self, first: int, last: int) -> dict:
        """The row columns of dataset positions ``first:last`` (see :func:`make_chunk`)."""
        return {column: list(self.table[column].iloc[first:last].astype(str)) for column in ROW_COLUMNS}

    def chunk(self, batch: PixelBatch, features: np.ndarray) -> chunks.Chunk:
        """The chunk of one computed batch."""
        return make_chunk(
            self.rows(batch.first, batch.last), batch, features, batch_size=self.batch_size, key_digest=self.key_digest
        )


def make_chunk(
    rows: dict, batch: PixelBatch, features: np.ndarray, *, batch_size: int, key_digest: str
) -> chunks.Chunk:
    """The chunk of one computed batch: its rows named by content hash, its features, its skipped files.

    Parameters
    ----------
    rows : dict of str to list of str
        :data:`featx.features.store.ROW_COLUMNS` of every dataset position ``batch.first:batch.last``.
    batch : PixelBatch
    features : numpy.ndarray
        One row per decoded image of the batch.
    batch_size, key_digest
        As recorded in the chunk.
    """
    decoded = [position - batch.first for position in batch.positions]
    chunk_rows = {column: [values[i] for i in decoded] for column, values in rows.items()}
    skipped = [(rows["image_id"][position - batch.first], reason) for position, reason in batch.errors]
    for image_id, reason in skipped:
        log.warning("skipped %s: %s", image_id, reason)
    return chunks.Chunk(
        first=batch.first,
        last=batch.last,
        batch_size=batch_size,
        key_digest=key_digest,
        rows=chunk_rows,
        features=features,
        skipped=skipped,
    )


@dataclass
class EngineRun:
    """What an engine did.

    Attributes
    ----------
    decoded : int
        Images decoded (not read from the pixel cache).
    provenance : dict
        The weights' provenance and the engine's own (``engine``, and for a cluster its size).
    first_batch : tuple or None
        (time, images done) when the first batch finished, for the steady rate.
    """

    decoded: int = 0
    provenance: dict = field(default_factory=dict)
    first_batch: tuple | None = None


class LocalEngine:
    """This process runs the backbone; worker processes decode ahead of it.

    Parameters
    ----------
    workers : int, optional
        Decoding processes (default: the number of CPUs); 0 decodes in threads of this process.

    Raises
    ------
    ParameterError
        When ``workers`` lies outside its domain in :mod:`featx.limits`.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else limits.check("workers", workers)

    def decode_only(self, plan: BatchPlan) -> tuple[list, int]:
        """Decode every batch of ``plan`` (into the pixel cache); return the failures and the decode count."""
        feed = plan.feed(plan.open_pixel_cache(), self.workers)
        with contextlib.closing(feed.batches(plan.todo)) as batches:  # the decode pool released on any exit
            errors = [error for batch in batches for error in batch.errors]
        return errors, feed.decoded

    def run(self, plan: BatchPlan, bar) -> EngineRun:
        """Compute every batch of ``plan`` and write its chunk; ``bar`` counts the images."""
        from featx.features.forward import Forward

        forward = Forward(plan.features, plan.batch_size)
        feed = plan.feed(plan.open_pixel_cache(), self.workers)
        run = EngineRun(provenance={**forward.provenance, "engine": self.name})
        done = 0
        with contextlib.closing(feed.batches(plan.todo)) as batches:  # the decode pool released on any exit
            for batch, features in forward.run(batches):
                chunks.write_chunk(plan.folder, plan.chunk(batch, features))
                run.decoded = feed.decoded
                done += batch.last - batch.first
                bar.update(batch.last - batch.first)
                if run.first_batch is None:
                    run.first_batch = (time.perf_counter(), done)
        return run


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """One phase-1 engine: what it is, and how it is made.

    Attributes
    ----------
    name : str
    summary : str
        One line for help texts.
    make : callable
        ``make(workers=, address=, gpus_per_worker=)`` returns the engine (see :func:`make_engine`).
    """

    name: str
    summary: str
    make: Callable


def _local(*, workers, address, gpus_per_worker) -> LocalEngine:
    for parameter, value in (("address", address), ("gpus_per_worker", gpus_per_worker)):
        if value:
            raise ParameterError(parameter, value, "applies to the ray engine only")
    return LocalEngine(workers)


def _ray(*, workers, address, gpus_per_worker):
    from featx.features.ray_engine import RayEngine

    return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


ENGINES = {
    spec.name: spec
    for spec in (
        EngineSpec(name="local", summary="this machine: the backbone here, decoding in worker processes", make=_local),
        EngineSpec(
            name="ray",
            summary="a Ray cluster (pip install 'featx[distributed]'): decoding tasks, backbone actors",
            make=_ray,
        ),
    )
}
"""The phase-1 engines by name; ``extract --engine`` and its help read it."""


def make_engine(name: str = "local", *, workers=None, address=None, gpus_per_worker=None):
    """The phase-1 engine ``name`` (see :data:`ENGINES`).

    Parameters
    ----------
    name : str
        Default ``local``.
    workers : int, optional
        Local: decoding processes (default one per core); ray: backbone actors.
    address : str, optional
        Ray only: the cluster to join (default: a local one).
    gpus_per_worker : float, optional
        Ray only.

    Raises
    ------
    UnknownNameError
    ParameterError
        For a setting the engine does not take.
    """
    try:
        spec = ENGINES[name]
    except KeyError:
        raise UnknownNameError("engine", name, ENGINES) from None
    return spec.make(workers=workers, address=address, gpus_per_worker=gpus_per_worker)
