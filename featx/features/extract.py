"""Phase 1: run a frozen backbone once over a dataset and keep the pooled features.

The dataset is cut into fixed batches by position. Pixels come from the pixel cache or are
decoded ahead in worker processes (:mod:`featx.features.pixels`); each batch's features are
written as an immutable chunk (:mod:`featx.features.chunks`), and once every batch has its chunk
one finisher assembles the store. A killed run loses only the batches in flight: the next run
always resumes from the finished chunks, and its store equals an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from filelock import FileLock, Timeout

from featx import __version__
from featx.backbones.weights import fingerprint
from featx.data.pool import default_workers
from featx.exceptions import CacheError, DatasetError, ParameterError
from featx.features import chunks
from featx.features.identity import FeatureSpec
from featx.features.pixels import PixelCache, PixelFeed, PixelKey, disk_bytes
from featx.features.store import ROW_COLUMNS, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractSummary:
    """What one extraction produced (or found already done).

    Attributes
    ----------
    store : str
        Path of the complete store.
    images : int
        Rows in the store.
    skipped : int
    skipped_files : list of dict
        ``image_id`` and ``reason`` of each undecodable file.
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
    pixel_cache : str or None
        The pixel cache folder, None when it was not used.
    pixel_cache_bytes : int
        Its size on disk.
    """

    store: str
    images: int
    skipped: int
    skipped_files: list
    images_per_s: float
    steady_images_per_s: float
    seconds: float
    cached: bool
    backbone: str
    weights: str
    dataset_id: str
    decoded_images: int = 0
    resumed_images: int = 0
    pixel_cache: str | None = None
    pixel_cache_bytes: int = 0

    def to_json(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


def extract(
    dataset,
    features: FeatureSpec,
    *,
    batch_size: int = 32,
    cache_dir="cache",
    strict: bool = False,
    rebuild: bool = False,
    progress: bool = True,
    workers: int | None = None,
    pixel_cache: bool = True,
) -> ExtractSummary:
    """Extract (or reuse) the feature store of ``features`` over ``dataset``.

    Parameters
    ----------
    dataset : featx.data.Dataset
    features : FeatureSpec
        Backbone, weights, input size, mask, precision and decoder.
    batch_size : int
        Images per forward pass, at least 1. A resumed run keeps the batch size of the run it
        resumes.
    cache_dir : str or Path
    strict : bool
        Stop before writing any features when any image cannot be decoded.
    rebuild : bool
        Discard an existing store (complete, damaged or partial) and its pixel cache, and
        extract again.
    progress : bool
        Show a progress bar (``N/TOTAL``) on stderr.
    workers : int, optional
        Decoding processes (default: the number of CPUs); 0 decodes in threads of this process.
    pixel_cache : bool
        Read and keep letterboxed pixels in ``cache_dir/pixels`` (False decodes every image).

    Returns
    -------
    ExtractSummary

    Raises
    ------
    ParameterError
        When ``batch_size`` is below 1 or ``workers`` below 0.
    CacheError
        When the store or the pixel cache is damaged or made for another request, writing
        fails, or another process holds the store's lock.
    """
    if int(batch_size) < 1:
        raise ParameterError("batch_size", batch_size, "must be >= 1")
    if workers is not None and int(workers) < 0:
        raise ParameterError("workers", workers, "must be >= 0")
    key = features.key(dataset.id)
    path = key.path(cache_dir)
    pixel_key = PixelKey(features.input_size, features.mask, features.decoder)
    run = _Run(dataset, features, batch_size, workers=default_workers() if workers is None else int(workers))
    run.pixel_cache = pixel_key.folder(cache_dir) if pixel_cache else None
    if not rebuild and path.exists():
        return run.summary(open_store(path, key, load_features=False), cached=True)
    folder = chunks.chunk_folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(chunks.lock_path(path)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CacheError(
            f"{path}: another extract is writing this store (lock {chunks.lock_path(path)}); wait for it to finish"
        ) from None
    try:
        if rebuild:
            path.unlink(missing_ok=True)
            chunks.discard_chunks(folder)
        elif path.exists():  # finished by another process while this one waited for nothing
            return run.summary(open_store(path, key, load_features=False), cached=True)
        cache = PixelCache(cache_dir, pixel_key, rebuild=rebuild) if pixel_cache else None
        table = dataset.table
        feed = PixelFeed(table["path"], table["content_hash"], pixel_key, cache=cache, workers=run.workers)
        try:
            if strict:
                run.check_all_decode(feed)
            run.compute(key, cache_dir, feed, progress=progress)
        except OSError as error:
            raise CacheError(
                f"{path}: writing failed ({error}); finished chunks stay in {folder}, earlier complete stores "
                "are untouched"
            ) from None
        return run.summary(open_store(path, key, load_features=False), cached=False)
    finally:
        lock.release()
        chunks.lock_path(path).unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class _Run:
    """One extraction: the dataset, the features, the batching, and what happened."""

    def __init__(self, dataset, features: FeatureSpec, batch_size: int, *, workers: int):
        self.dataset = dataset
        self.features = features
        self.batch_size = int(batch_size)
        self.workers = workers
        self.decoded = 0
        self.resumed = 0
        self.pixel_cache = None

    def check_all_decode(self, feed: PixelFeed) -> None:
        """Decode every image once (kept in the pixel cache); raise listing every failure.

        Raises
        ------
        DatasetError
        """
        table = self.dataset.table
        bounds = chunks.batch_bounds(len(table), self.batch_size)
        errors = [error for batch in feed.batches(bounds) for error in batch.errors]
        failures = [f"{table['image_id'].iat[position]}: {reason}" for position, reason in errors]
        self.decoded = feed.decoded
        if failures:
            raise DatasetError(
                f"strict: {len(failures)} image(s) cannot be decoded; nothing was written:\n  " + "\n  ".join(failures)
            )

    def compute(self, key, cache_dir, feed: PixelFeed, *, progress: bool) -> None:
        """Compute the batches that have no finished chunk, then assemble the store and drop the chunks."""
        from featx.features.forward import Forward

        path = key.path(cache_dir)
        folder = chunks.chunk_folder(path)
        total = len(self.dataset)
        self.batch_size, finished = chunks.resume_plan(folder, key.digest(), total, self.batch_size)
        self.resumed = sum(finished.values())
        todo = [bound for bound in chunks.batch_bounds(total, self.batch_size) if bound not in finished]
        if finished:
            message = "%s: resuming from %d finished chunk(s) of an interrupted run (%d images)"
            log.info(message, path, len(finished), self.resumed)
        forward = Forward(self.features, self.batch_size) if todo else None
        started = time.perf_counter()
        first_batch = self._fill(forward, feed, todo, key, folder, progress=progress) if todo else None
        attrs = self._provenance(forward)
        finished_at = time.perf_counter()
        seconds = finished_at - started
        done = sum(last - first for first, last in todo)
        steady = 0.0
        if first_batch is not None and done > first_batch[1] and finished_at > first_batch[0]:
            steady = (done - first_batch[1]) / (finished_at - first_batch[0])
        attrs |= {
            "seconds": seconds,
            "images_per_s": done / seconds if seconds > 0 else 0.0,
            "steady_images_per_s": steady,
            "resumed_images": self.resumed,
            "decoded_images": self.decoded,
        }
        chunks.assemble(key, cache_dir, total, attrs=attrs, feature_dim=self.features.spec.feature_dim)
        chunks.remove_folder(folder)

    def _fill(self, forward, feed: PixelFeed, todo, key, folder, *, progress: bool):
        """Run the backbone over the ``todo`` batches, one chunk each; return (time, images) after the first."""
        from tqdm import tqdm

        table = self.dataset.table
        total = len(table)
        done_before = total - sum(last - first for first, last in todo)
        bar = tqdm(
            total=total,
            initial=done_before,
            unit="img",
            disable=not progress,
            desc=f"extract {self.features.backbone}",
            file=sys.stderr,
        )
        first_batch, done = None, 0
        with bar:
            for batch, features in forward.run(feed.batches(todo)):
                rows = {column: list(table[column].iloc[batch.positions].astype(str)) for column in ROW_COLUMNS}
                skipped = [(table["image_id"].iat[p], reason) for p, reason in batch.errors]
                for image_id, reason in skipped:
                    log.warning("skipped %s: %s", image_id, reason)
                chunk = chunks.Chunk(batch.first, batch.last, self.batch_size, key.digest(), rows, features, skipped)
                chunks.write_chunk(folder, chunk)
                self.decoded = feed.decoded
                done += batch.last - batch.first
                bar.update(batch.last - batch.first)
                if first_batch is None:
                    first_batch = (time.perf_counter(), done)
        return first_batch

    def _provenance(self, forward) -> dict:
        import keras

        weights = forward.provenance if forward is not None else fingerprint(self.features.spec, self.features.weights)
        return {
            **weights,
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
            skipped_files=[{"image_id": i, "reason": r} for i, r in store.skipped],
            images_per_s=round(float(attrs.get("images_per_s", 0.0)), 2),
            steady_images_per_s=round(float(attrs.get("steady_images_per_s", 0.0)), 2),
            seconds=round(float(attrs.get("seconds", 0.0)), 2),
            cached=cached,
            backbone=store.key.backbone,
            weights=store.key.weights,
            dataset_id=store.key.dataset_id,
            decoded_images=0 if cached else self.decoded,
            resumed_images=0 if cached else self.resumed,
            pixel_cache=str(self.pixel_cache) if self.pixel_cache is not None else None,
            pixel_cache_bytes=disk_bytes(self.pixel_cache) if self.pixel_cache is not None else 0,
        )
