"""Phase 1: run a frozen backbone once over a dataset and keep the pooled features.

Images are decoded and letterboxed by a thread pool a few batches ahead of the model, so
memory stays flat in the number of images and the CNN, not the decoder, sets the pace.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from featx import __version__
from featx.backbones.registry import preprocess
from featx.backbones.weights import build_base
from featx.data import images
from featx.exceptions import CacheError, DatasetError, ImageDecodeError, ParameterError
from featx.features.identity import FeatureSpec
from featx.features.store import StoreWriter, open_store, partial_path

PREFETCH_BATCHES = 2
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
        Whole run, model build excluded.
    steady_images_per_s : float
        After the first batch (which includes tracing).
    seconds : float
    cached : bool
        True when the store existed and no CNN work was done.
    backbone, weights, dataset_id : str
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

    def to_json(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


def _load_or_error(path, size, mask=None):
    try:
        return images.load(path, size, mask), None
    except ImageDecodeError as error:
        return None, error.reason


def decoded_batches(paths, size, batch_size: int, *, start: int = 0, workers: int | None = None, mask=None):
    """Yield ``(first, last, pixels, errors)`` batch by batch, decoding ahead in threads.

    Parameters
    ----------
    paths : sequence of str
    size : tuple of int
        (width, height) for :func:`featx.data.images.load`.
    batch_size : int
    start : int
        Position of the first image to decode.
    workers : int, optional
        Decoding threads (default: the number of CPUs).
    mask : str, optional
        Name from :data:`featx.data.images.MASKS` applied before letterboxing.

    Yields
    ------
    first, last : int
        Positions covered by the batch, ``paths[first:last]``.
    pixels : list of (position, numpy.ndarray)
        Decoded images, (height, width, 3) uint8.
    errors : list of (position, str)
        Images that could not be decoded, with the reason.
    """
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        bounds = deque((first, min(first + batch_size, len(paths))) for first in range(start, len(paths), batch_size))

        def submit_next():
            first, last = bounds.popleft()
            pending.append(
                (first, last, [pool.submit(_load_or_error, paths[i], size, mask) for i in range(first, last)])
            )

        while bounds and len(pending) < PREFETCH_BATCHES + 1:
            submit_next()
        while pending:
            first, last, futures = pending.popleft()
            if bounds:
                submit_next()
            results = [future.result() for future in futures]
            pixels = [(first + i, p) for i, (p, reason) in enumerate(results) if reason is None]
            errors = [(first + i, reason) for i, (p, reason) in enumerate(results) if reason is not None]
            yield first, last, pixels, errors


def check_all_decode(dataset, size) -> None:
    """Decode every image once; raise listing every failure (the ``strict`` pre-pass).

    Raises
    ------
    DatasetError
    """
    table = dataset.table
    failures = []
    for _first, _last, _pixels, errors in decoded_batches(list(table["path"]), size, 64):
        failures += [f"{table['image_id'].iat[p]}: {reason}" for p, reason in errors]
    if failures:
        raise DatasetError(
            f"strict: {len(failures)} image(s) cannot be decoded; nothing was written:\n  " + "\n  ".join(failures)
        )


def extract(
    dataset,
    features: FeatureSpec,
    *,
    batch_size: int = 32,
    cache_dir="cache",
    strict: bool = False,
    rebuild: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    """Extract (or reuse) the feature store of ``features`` over ``dataset``.

    Parameters
    ----------
    dataset : featx.data.Dataset
    features : FeatureSpec
        Backbone, weights, input size and mask.
    batch_size : int
        Images per forward pass, at least 1.
    cache_dir : str or Path
    strict : bool
        Stop before writing anything when any image cannot be decoded.
    rebuild : bool
        Discard an existing store (complete, damaged or partial) and extract again.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    ExtractSummary

    Raises
    ------
    ParameterError
        When ``batch_size`` is below 1.
    CacheError
        When the store is damaged or another process holds its lock.
    """
    if int(batch_size) < 1:
        raise ParameterError("batch_size", batch_size, "must be >= 1")
    key = features.key(dataset.id)
    path = key.path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{path}.lock")
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CacheError(
            f"{path}: another extract is writing this store (lock {lock_path}); wait for it to finish"
        ) from None
    try:
        return _extract_locked(
            dataset, features, key, cache_dir, batch_size, strict=strict, rebuild=rebuild, progress=progress
        )
    finally:
        lock.release()
        lock_path.unlink(missing_ok=True)


def _extract_locked(dataset, features, key, cache_dir, batch_size, *, strict, rebuild, progress):
    path = key.path(cache_dir)
    if rebuild:
        path.unlink(missing_ok=True)
        partial_path(path).unlink(missing_ok=True)
    if path.exists():
        return _summary(open_store(path, key, load_features=False), cached=True)
    if strict:
        check_all_decode(dataset, features.input_size)
    model, weights_provenance = build_base(features.spec, features.input_size, features.weights)
    provenance = _provenance(weights_provenance, batch_size)
    writer = StoreWriter(key, cache_dir, provenance, features.spec.feature_dim)
    run = _Run(model, features, dataset, batch_size, progress)
    resumed = writer.next_position > 0
    try:
        run.fill(writer)
    except OSError as error:
        writer.close()
        if not resumed or not writer.partial.exists():
            raise CacheError(
                f"{writer.partial}: writing failed ({error}); earlier complete stores are untouched"
            ) from None
        # A kill during a write can leave HDF5's string heap damaged in a way only the next
        # write reveals; the interrupted store is then started again rather than patched.
        log.warning("%s: the interrupted store cannot be extended (%s); starting it again", writer.partial, error)
        writer.partial.unlink()
        writer = StoreWriter(key, cache_dir, provenance, features.spec.feature_dim)
        try:
            run.fill(writer)
        except OSError as error:
            writer.close()
            raise CacheError(
                f"{writer.partial}: writing failed ({error}); earlier complete stores are untouched"
            ) from None
    except BaseException:
        writer.close()
        raise
    return _summary(open_store(path, key, load_features=False), cached=False)


class _Run:
    """One extraction pass: a built model, the dataset, the batch size."""

    def __init__(self, model, features: FeatureSpec, dataset, batch_size: int, progress: bool):
        self.model = model
        self.features = features
        self.dataset = dataset
        self.batch_size = batch_size
        self.progress = progress

    def fill(self, writer: StoreWriter) -> None:
        """Extract from the writer's resume point to the end and finish the store (timings recorded)."""
        total = len(self.dataset)
        started = time.perf_counter()
        done_before = writer.next_position
        first_batch = self._batches(writer)
        finished = time.perf_counter()
        seconds = finished - started
        steady = 0.0
        if first_batch is not None and first_batch[1] < total and finished > first_batch[0]:
            steady = (total - first_batch[1]) / (finished - first_batch[0])
        writer.finish(
            {
                "seconds": seconds,
                "images_per_s": (total - done_before) / seconds if seconds > 0 else 0.0,
                "steady_images_per_s": steady,
                "resumed_from": done_before,
            }
        )

    def _batches(self, writer: StoreWriter):
        from tqdm import tqdm

        table = self.dataset.table
        spec = self.features.spec
        bar = tqdm(
            total=len(table),
            initial=writer.next_position,
            unit="img",
            disable=not self.progress,
            desc=f"extract {spec.name}",
            file=sys.stderr,
        )
        first_batch_done = None
        with bar:
            for first, last, pixels, errors in decoded_batches(
                list(table["path"]),
                self.features.input_size,
                self.batch_size,
                start=writer.next_position,
                mask=self.features.mask,
            ):
                positions = [p for p, _ in pixels]
                rows = {
                    column: list(table[column].iloc[positions].astype(str))
                    for column in ("image_id", "content_hash", "label", "patient_id")
                }
                skipped = [(table["image_id"].iat[p], reason) for p, reason in errors]
                for image_id, reason in skipped:
                    log.warning("skipped %s: %s", image_id, reason)
                writer.append(self._features([image for _, image in pixels]), rows, skipped, last)
                bar.update(last - first)
                if first_batch_done is None:
                    first_batch_done = (time.perf_counter(), last)
        return first_batch_done

    def _features(self, pixels) -> np.ndarray:
        """Pooled features of one batch; a short batch is padded to the batch size so that the
        compiled step is reused (a new shape costs a retrace, and an XLA compile on a GPU)."""
        spec = self.features.spec
        if not pixels:
            return np.zeros((0, spec.feature_dim), dtype=np.float32)
        batch = np.stack(pixels + [pixels[-1]] * (self.batch_size - len(pixels)))
        return np.asarray(self.model.predict_on_batch(preprocess(spec, batch)), dtype=np.float32)[: len(pixels)]


def _provenance(weights_provenance: dict, batch_size: int) -> dict:
    import keras

    return {
        **weights_provenance,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "featx_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "batch_size": batch_size,
    }


def _summary(store, cached: bool) -> ExtractSummary:
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
    )
