"""Phase 1: run a frozen backbone once over a dataset and keep the pooled features.

Features depend only on an image's content and the store key, so the rows that other stores of the
same features already hold (made for another dataset: a subset, an overlapping folder, the images
``CNNFeatures`` saw) are copied by content hash, as every reader finds them
(:func:`featx.features.store.gather_features`); only the other images are computed.

Those are cut into fixed batches by position. Pixels come from the pixel cache or are
decoded ahead in worker processes (:mod:`featx.features.pixels`); each batch's features are
written as an immutable chunk (:mod:`featx.features.chunks`), and once every batch has its chunk
one finisher assembles the store. A killed run loses only the batches in flight: the next run
always resumes from the finished chunks, and its store equals an uninterrupted run's bit for bit.

One process at a time extracts a store: a second one asked for the same store (another terminal,
parallel folds of ``cross_val_score``) says on stderr that it waits for the first, and then reuses
its store (reported as cached) or, if the first was killed, resumes from its chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from featx import __version__, limits
from featx.backbones.weights import fingerprint
from featx.exceptions import CacheError, DatasetError, ParameterError
from featx.features import chunks
from featx.features.engine import BatchPlan, EngineRun, LocalEngine
from featx.features.identity import FeatureSpec, StoreKey
from featx.features.pixels import PixelCache, PixelKey, disk_bytes
from featx.features.store import ROW_COLUMNS, GatheredFeatures, gather_features, open_store, write_store
from featx.fileio import make_folder

log = logging.getLogger(__name__)
LOCK_TIMEOUT = 3600.0  # seconds a second process waits for the one extracting the same store
LOCK_POLL = 0.25  # seconds between its attempts


@dataclass(frozen=True, kw_only=True)
class SkippedImage:
    """An image that could not be decoded, left out of a store.

    Attributes
    ----------
    image_id, reason : str
    """

    image_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ExtractSummary:
    """What one extraction produced (or found already done).

    Attributes
    ----------
    store : str
        Path of the complete store.
    images : int
        Rows in the store.
    skipped : int
    skipped_files : tuple of SkippedImage
        Each undecodable file.
    images_per_s : float
        Images computed in this run per second, model build excluded.
    steady_images_per_s : float
        After the first batch (which includes tracing).
    seconds : float
    cached : bool
        True when the store existed and no CNN work was done.
    backbone, weights, dataset_id : str
    decoded_images : int
        Images decoded in this run (not read from the pixel cache).
    resumed_images : int
        Rows taken from the chunks of an earlier, interrupted run.
    reused_images : int
        Rows copied from stores of the same features made for other datasets (matched by image
        content): no CNN work was done for them.
    computed_images : int
        Images this run handed to the engine (decoded or read from the pixel cache, then run
        through the backbone).
    pixel_cache : str or None
        The pixel cache folder, None when it was not used.
    pixel_cache_bytes : int
        Its size on disk.
    engine : str
        What computed the store (``local`` or ``ray``).
    runtime : str
        What ran the backbone (``keras`` or ``openvino``).
    degenerate : list of str
        Why the store's features are degenerate (see :class:`featx.features.store.FeatureHealth`); empty when healthy.
    """

    store: str
    images: int
    skipped: int
    skipped_files: tuple[SkippedImage, ...]
    images_per_s: float
    steady_images_per_s: float
    seconds: float
    cached: bool
    backbone: str
    weights: str
    dataset_id: str
    decoded_images: int = 0
    resumed_images: int = 0
    reused_images: int = 0
    computed_images: int = 0
    pixel_cache: str | None = None
    pixel_cache_bytes: int = 0
    engine: str = "local"
    runtime: str = "keras"
    degenerate: list = field(default_factory=list)

    def to_json(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


def extract(
    dataset,
    feature_spec: FeatureSpec,
    *,
    batch_size: int = 32,
    cache_dir="cache",
    strict: bool = False,
    rebuild: bool = False,
    progress: bool = True,
    workers: int | None = None,
    pixel_cache: bool = True,
    engine=None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> ExtractSummary:
    """Extract (or reuse) the feature store of ``feature_spec`` over ``dataset``.

    Parameters
    ----------
    dataset : featx.data.Dataset
    feature_spec : FeatureSpec
        Backbone, weights, input size, mask, precision and decoder.
    batch_size : int
        Images per forward pass, at least 1. A resumed run keeps the batch size of the run it
        resumes.
    cache_dir : str or Path
    strict : bool
        Stop before writing any features when any image cannot be decoded.
    rebuild : bool
        Discard an existing store (complete, damaged or partial) and its pixel cache, and
        extract again, every image through the backbone (False, the default, copies the rows
        other stores of the same features hold, matched by image content).
    progress : bool
        Show a progress bar (``N/TOTAL``) on stderr.
    workers : int, optional
        Decoding processes of the local engine (default: the number of CPUs); 0 decodes in
        threads of this process.
    pixel_cache : bool
        Read and keep letterboxed pixels in ``cache_dir/pixels`` (False decodes every image).
    engine : LocalEngine or RayEngine, optional
        What computes the batches (default: ``LocalEngine(workers)``); see
        :mod:`featx.features.engine` and :mod:`featx.features.ray_engine`.
    lock_timeout : float
        Seconds to wait while another process extracts the same store (default 3600); 0 fails at
        once. The wait is announced on stderr; afterwards the other process's store is reused.

    Returns
    -------
    ExtractSummary

    Raises
    ------
    ParameterError
        When ``batch_size`` is below 1, ``workers`` below 0, ``workers`` is given with an engine, or
        ``lock_timeout`` is negative or not a number.
    CacheError
        When the store or the pixel cache is damaged or made for another request, writing
        fails, or another process still holds the store's lock after ``lock_timeout`` seconds.
    """
    batch_size = limits.check("batch_size", batch_size)
    lock_timeout = limits.check("lock_timeout", lock_timeout)
    if engine is None:
        engine = LocalEngine(workers)
    elif workers is not None:
        raise ParameterError("workers", workers, "belongs to the engine when an engine is given")
    key = feature_spec.key(dataset.id)
    path = key.path(cache_dir)
    pixel_key = PixelKey(input_size=feature_spec.input_size, mask=feature_spec.mask, decoder=feature_spec.decoder)
    run = _Run(dataset, feature_spec, batch_size, engine)
    run.pixel_cache = pixel_key.folder(cache_dir) if pixel_cache else None
    if not rebuild and path.exists():
        return run.summary(open_store(path, key, load_features=False), cached=True)
    folder = chunks.chunk_folder(path)
    lock = _acquire_store_lock(path, float(lock_timeout))
    try:
        if rebuild:
            path.unlink(missing_ok=True)
            chunks.discard_chunks(folder)
            if pixel_cache:
                PixelCache(cache_dir, pixel_key, rebuild=True)
        elif path.exists():  # finished by the process this one waited for
            return run.summary(open_store(path, key, load_features=False), cached=True)
        try:
            run.compute(
                key,
                Path(cache_dir),
                pixel_key,
                strict=strict,
                pixel_cache=pixel_cache,
                progress=progress,
                reuse=not rebuild,
            )
        except OSError as error:
            raise CacheError(
                f"{path}: writing failed ({error}); finished chunks stay in {folder}, earlier complete stores "
                "are untouched"
            ) from None
        return run.summary(open_store(path, key, load_features=False), cached=False)
    finally:
        # unlinked while still held: a waiter that opened this file finds it gone and tries a new one,
        # so two waiters never both hold "the" lock on two different files
        chunks.lock_path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # kept when not empty: a failed run's chunks, a waiter's lock file
            folder.rmdir()
        lock.release()


def _acquire_store_lock(path: Path, timeout: float) -> FileLock:
    """The lock of the store at ``path``, waiting up to ``timeout`` seconds (said on stderr) for another process.

    The lock file lives in the store's chunk folder, which the process that finishes the store
    deletes; each attempt makes the folder again (the lock itself follows the file's current inode).

    Raises
    ------
    CacheError
        When another process still holds it after ``timeout`` seconds.
    """
    lock_file = chunks.lock_path(path)
    lock = FileLock(str(lock_file))
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        make_folder(lock_file.parent)
        left = max(0.0, deadline - time.monotonic())
        try:
            lock.acquire(timeout=min(LOCK_POLL, left), poll_interval=LOCK_POLL / 5)
            return lock
        except Timeout:
            pass
        except FileNotFoundError:  # the folder went with a store finished meanwhile: made again above
            pass
        if left <= 0:
            break
        if not announced:
            message = "waiting for another featx process extracting %s (lock %s); --lock-timeout %g"
            log.warning(message, path, lock_file, timeout)
            announced = True
    advice = (
        "give --lock-timeout S to wait for it" if timeout == 0 else f"still busy after --lock-timeout {timeout:g} s"
    )
    raise CacheError(f"{path}: another featx process is extracting this store (lock {lock_file}); {advice}")


@dataclass(frozen=True, kw_only=True, eq=False)
class StoreWork:
    """The rows of a store that need the backbone, and those that other stores already hold.

    Attributes
    ----------
    table : pandas.DataFrame
        The dataset's rows that no other store holds, in dataset order (positions renumbered
        from 0): what the engine computes, batch by batch.
    held : GatheredFeatures or None
        Every dataset row's features where another store of the same features holds its content
        (see :func:`featx.features.store.gather_features`); None when none does or reuse is off.
    chunk_digest : str
        Recorded in each chunk: the store key's digest when every row is computed, else a digest
        of it and the contents to compute (chunks of another division of the work are redone).
    """

    table: pd.DataFrame
    held: GatheredFeatures | None
    chunk_digest: str

    @classmethod
    def of(cls, key: StoreKey, table: pd.DataFrame, cache_dir, *, reuse: bool) -> StoreWork:
        """The work of the store of ``key`` over ``table``, reusing other stores' rows when ``reuse``."""
        held = gather_features(cache_dir, key, table["content_hash"]) if reuse else None
        if held is None or held.features is None:
            return cls(table=table, held=None, chunk_digest=key.digest())
        todo = table[held.missing].reset_index(drop=True)
        text = "\n".join([key.digest(), *todo["content_hash"]])
        return cls(table=todo, held=held, chunk_digest=hashlib.sha256(text.encode()).hexdigest()[:12])

    @property
    def reused(self) -> int:
        """Rows copied from other stores."""
        return 0 if self.held is None else int((~self.held.missing).sum())

    def store_parts(self, dataset_table: pd.DataFrame, computed):
        """The store's parts in dataset order: the computed rows merged with the held ones.

        Parameters
        ----------
        dataset_table : pandas.DataFrame
            Every row of the dataset.
        computed : iterable of (features, rows, skipped)
            The finished chunks of the rows to compute, in order.
        """
        if self.held is None:
            yield from computed
            return
        features, present, skipped = self.held.features.copy(), ~self.held.missing, []
        position = {image_id: index for index, image_id in enumerate(dataset_table["image_id"].astype(str))}
        for part_features, rows, part_skipped in computed:
            rows_at = [position[image_id] for image_id in rows["image_id"]]
            features[rows_at] = part_features
            present[rows_at] = True
            skipped += part_skipped
        kept = np.flatnonzero(present)
        rows = {column: list(dataset_table[column].iloc[kept].astype(str)) for column in ROW_COLUMNS}
        yield features[kept], rows, skipped


class _Run:
    """One extraction: the dataset, the features, the batching, the engine, and what happened."""

    def __init__(self, dataset, feature_spec: FeatureSpec, batch_size: int, engine):
        self.dataset = dataset
        self.feature_spec = feature_spec
        self.batch_size = int(batch_size)
        self.engine = engine
        self.decoded = 0
        self.resumed = 0
        self.reused = 0
        self.computed = 0
        self.pixel_cache = None

    def _plan(self, key, cache_dir: Path, pixel_key: PixelKey, work: StoreWork, todo, *, pixel_cache: bool):
        return BatchPlan(
            table=work.table,
            features=self.feature_spec,
            batch_size=self.batch_size,
            todo=todo,
            key_digest=work.chunk_digest,
            folder=chunks.chunk_folder(key.path(cache_dir)),
            pixel_key=pixel_key,
            cache_dir=cache_dir,
            pixel_cache=pixel_cache,
        )

    def check_all_decode(self, plan: BatchPlan) -> None:
        """Decode every image of ``plan`` once (kept in the pixel cache); raise listing every failure.

        Raises
        ------
        DatasetError
        """
        local = self.engine if isinstance(self.engine, LocalEngine) else LocalEngine()
        errors, self.decoded = local.decode_only(plan)
        failures = [f"{plan.table['image_id'].iat[position]}: {reason}" for position, reason in errors]
        if failures:
            raise DatasetError(
                f"strict: {len(failures)} image(s) cannot be decoded; nothing was written:\n  " + "\n  ".join(failures)
            )

    def compute(
        self, key, cache_dir: Path, pixel_key: PixelKey, *, strict: bool, pixel_cache: bool, progress: bool, reuse: bool
    ) -> None:
        """Copy the rows other stores hold (when ``reuse``), compute the batches of the others that have no
        finished chunk, then assemble the store and drop the chunks."""
        from tqdm import tqdm

        path = key.path(cache_dir)
        folder = chunks.chunk_folder(path)
        work = StoreWork.of(key, self.dataset.table, cache_dir, reuse=reuse)
        self.reused = work.reused
        if self.reused:
            log.info("%s: %d of %d images' features copied from other stores", path, self.reused, len(self.dataset))
        total = len(work.table)
        if strict:
            everything = chunks.batch_bounds(total, self.batch_size)
            self.check_all_decode(self._plan(key, cache_dir, pixel_key, work, everything, pixel_cache=pixel_cache))
        self.batch_size, finished = chunks.resume_plan(folder, work.chunk_digest, total, self.batch_size)
        self.resumed = sum(finished.values())
        todo = [bound for bound in chunks.batch_bounds(total, self.batch_size) if bound not in finished]
        if finished:
            message = "%s: resuming from %d finished chunk(s) of an interrupted run (%d images)"
            log.info(message, path, len(finished), self.resumed)
        plan = self._plan(key, cache_dir, pixel_key, work, todo, pixel_cache=pixel_cache)
        self.computed = plan.images
        started = time.perf_counter()
        bar = tqdm(
            total=len(self.dataset),
            initial=len(self.dataset) - plan.images,
            unit="img",
            disable=not progress,
            desc=f"extract {self.feature_spec.backbone}",
            file=sys.stderr,
        )
        with bar:
            done = self.engine.run(plan, bar) if todo else EngineRun(provenance={"engine": self.engine.name})
        self.decoded += done.decoded
        finished_at = time.perf_counter()
        seconds = finished_at - started
        steady = 0.0
        if done.first_batch is not None and plan.images > done.first_batch[1] and finished_at > done.first_batch[0]:
            steady = (plan.images - done.first_batch[1]) / (finished_at - done.first_batch[0])
        attrs = {
            **self._provenance(done.provenance),
            "seconds": seconds,
            "images_per_s": plan.images / seconds if seconds > 0 else 0.0,
            "steady_images_per_s": steady,
            "resumed_images": self.resumed,
            "decoded_images": self.decoded,
            "reused_images": self.reused,
        }
        computed = chunks.chunk_parts(folder, work.chunk_digest, total, self.batch_size)
        write_store(
            path,
            key,
            attrs,
            work.store_parts(self.dataset.table, computed),
            self.feature_spec.backbone_spec.feature_dim,
        )
        chunks.remove_folder(folder)

    def _provenance(self, engine_provenance: dict) -> dict:
        import keras

        weights = fingerprint(self.feature_spec.backbone_spec, self.feature_spec.weights)
        return {
            **weights.as_attrs(),
            **engine_provenance,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "featx_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "batch_size": self.batch_size,
        }

    def summary(self, store, cached: bool) -> ExtractSummary:
        """The summary of ``store`` as this run leaves it."""
        attrs = store.attrs
        return ExtractSummary(
            store=str(store.path),
            images=len(store.rows["image_id"]),
            skipped=len(store.skipped),
            skipped_files=tuple(SkippedImage(image_id=i, reason=r) for i, r in store.skipped),
            images_per_s=round(float(attrs.get("images_per_s", 0.0)), 2),
            steady_images_per_s=round(float(attrs.get("steady_images_per_s", 0.0)), 2),
            seconds=round(float(attrs.get("seconds", 0.0)), 2),
            cached=cached,
            backbone=store.key.backbone,
            weights=store.key.weights,
            dataset_id=store.key.dataset_id,
            decoded_images=0 if cached else self.decoded,
            resumed_images=0 if cached else self.resumed,
            reused_images=0 if cached else self.reused,
            computed_images=0 if cached else self.computed,
            pixel_cache=str(self.pixel_cache) if self.pixel_cache is not None else None,
            pixel_cache_bytes=disk_bytes(self.pixel_cache) if self.pixel_cache is not None else 0,
            engine=str(attrs.get("engine", "local")),
            runtime=store.key.runtime,
            degenerate=list(store.health.reasons),
        )
