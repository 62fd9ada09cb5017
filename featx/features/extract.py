"""Phase 1: run a frozen backbone once over a dataset and keep the pooled features.

Images are decoded and letterboxed by a thread pool a few batches ahead of the model, so
memory stays flat in the number of images and the CNN, not the decoder, sets the pace.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
from filelock import FileLock, Timeout

from featx import __version__
from featx.data import images
from featx.backbones.registry import build_base, get_spec, preprocess
from featx.features.store import StoreWriter, open_store, store_path
from featx.exceptions import CacheError, DatasetError, ImageDecodeError
from featx.backbones.weights import fingerprint

PREFETCH_BATCHES = 2


def store_identity(dataset, backbone: str, weights: str, input_size, mask: str | None = None) -> dict:
    """The fields that name a feature store (see :data:`featx.cache.IDENTITY_KEYS`).

    A ``mask`` (see :data:`featx.images.MASKS`) is part of the preprocessing, so masked and
    plain features never share a store.
    """
    spec = get_spec(backbone)
    weights_info = fingerprint(spec, weights)
    return {
        "dataset_id": dataset.id,
        "backbone": spec.name,
        "weights": weights_info["weights"],
        "weights_sha256": weights_info["weights_sha256"],
        "preprocessing": spec.preprocessing + (f"+mask-{mask}" if mask else ""),
        "input_size": [int(input_size[0]), int(input_size[1])],
    }


def _load_or_error(path, size, mask=None):
    try:
        return images.load(path, size, mask), None
    except ImageDecodeError as error:
        return None, error.reason


def decoded_batches(paths, size, batch_size: int, start: int = 0, workers: int | None = None, mask=None):
    """Yield ``(first, last, pixels, errors)`` batch by batch, decoding ahead in threads.

    Parameters
    ----------
    paths : sequence of str
    size : tuple of int
        (width, height) for :func:`featx.images.load`.
    batch_size : int
    start : int
        Position of the first image to decode.
    workers : int, optional
        Decoding threads (default: the number of CPUs).
    mask : str, optional
        Name from :data:`featx.images.MASKS` applied before letterboxing.

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
            pending.append((first, last, [pool.submit(_load_or_error, paths[i], size, mask) for i in range(first, last)]))

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
    """Decode every image once; raise listing every failure (the ``--strict`` pre-pass).

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
            f"--strict: {len(failures)} image(s) cannot be decoded; nothing was written:\n  " + "\n  ".join(failures)
        )


def extract(dataset, backbone: str, weights: str = "imagenet", input_size=images.DEFAULT_SIZE,
            batch_size: int = 32, cache_dir="cache", strict: bool = False, rebuild: bool = False,
            progress: bool = True, mask: str | None = None) -> dict:
    """Extract (or reuse) the feature store of ``backbone`` over ``dataset``.

    Parameters
    ----------
    dataset : featx.data.Dataset
    backbone : str
        Registry name.
    weights : str
        ``imagenet``, ``none`` or a weights file.
    input_size : tuple of int
        (width, height) of the letterboxed input.
    batch_size : int
    cache_dir : str or Path
    strict : bool
        Stop before writing anything when any image cannot be decoded.
    rebuild : bool
        Discard an existing store (complete, damaged or partial) and extract again.
    progress : bool
        Show a progress bar on stderr.
    mask : str, optional
        Black out a region first (see :data:`featx.images.MASKS`); recorded in the store.

    Returns
    -------
    dict
        ``store``, ``images``, ``skipped``, ``skipped_files``, ``images_per_s`` (whole run),
        ``steady_images_per_s`` (after the first batch, which includes tracing), ``seconds``,
        ``cached`` (True when no CNN work was needed), ``backbone``, ``weights``, ``dataset_id``.

    Raises
    ------
    CacheError
        When the store is damaged or another process holds its lock.
    """
    identity = store_identity(dataset, backbone, weights, input_size, mask)
    path = store_path(cache_dir, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path) + ".lock", timeout=0):
            return _extract_locked(dataset, identity, path, weights, input_size, batch_size, strict, rebuild, progress,
                                   mask)
    except Timeout:
        raise CacheError(f"{path}: another extract is writing this store (lock {path}.lock); wait for it to finish") from None


def _extract_locked(dataset, identity, path, weights, input_size, batch_size, strict, rebuild, progress, mask):
    if rebuild:
        path.unlink(missing_ok=True)
        path.with_name(path.stem + ".partial.h5").unlink(missing_ok=True)
    if path.exists():
        return _summary(open_store(path, identity, load_features=False), cached=True)
    if strict:
        check_all_decode(dataset, input_size)
    spec = get_spec(identity["backbone"])
    model, weights_provenance = build_base(spec, input_size, weights)
    provenance = _provenance(weights_provenance, batch_size)
    writer = StoreWriter(path, identity, provenance, spec.feature_dim)
    resumed = writer.next_position > 0
    try:
        _fill_store(writer, model, spec, dataset, input_size, batch_size, progress, mask)
    except OSError as error:
        writer.close()
        if not resumed or not writer.partial.exists():
            raise CacheError(f"{writer.partial}: writing failed ({error}); earlier complete stores are untouched") from None
        # A kill during a write can leave HDF5's string heap damaged in a way only the next
        # write reveals; the interrupted store is then started again rather than patched.
        print(f"{writer.partial}: the interrupted store cannot be extended ({error}); starting it again",
              file=sys.stderr)
        writer.partial.unlink()
        writer = StoreWriter(path, identity, provenance, spec.feature_dim)
        try:
            _fill_store(writer, model, spec, dataset, input_size, batch_size, progress, mask)
        except OSError as error:
            writer.close()
            raise CacheError(f"{writer.partial}: writing failed ({error}); earlier complete stores are untouched") from None
    except BaseException:
        writer.close()
        raise
    return _summary(open_store(path, identity, load_features=False), cached=False)


def _fill_store(writer, model, spec, dataset, input_size, batch_size, progress, mask) -> None:
    """Extract from the writer's resume point to the end and finish the store (timings recorded)."""
    started = time.perf_counter()
    done_before = writer.next_position
    first_batch = _run_batches(model, spec, dataset, writer, input_size, batch_size, progress, mask)
    finished = time.perf_counter()
    seconds = finished - started
    steady = 0.0
    if first_batch is not None and first_batch[1] < len(dataset) and finished > first_batch[0]:
        steady = (len(dataset) - first_batch[1]) / (finished - first_batch[0])
    writer.finish({
        "seconds": seconds,
        "images_per_s": (len(dataset) - done_before) / seconds if seconds > 0 else 0.0,
        "steady_images_per_s": steady,
        "resumed_from": done_before,
    })


def _run_batches(model, spec, dataset, writer, input_size, batch_size, progress, mask):
    from tqdm import tqdm

    table = dataset.table
    bar = tqdm(total=len(table), initial=writer.next_position, unit="img", disable=not progress,
               desc=f"extract {spec.name}", file=sys.stderr)
    first_batch_done = None
    with bar:
        for first, last, pixels, errors in decoded_batches(list(table["path"]), input_size, batch_size,
                                                             start=writer.next_position, mask=mask):
            positions = [p for p, _ in pixels]
            features = _features(model, spec, [image for _, image in pixels], batch_size)
            rows = {column: list(table[column].iloc[positions].astype(str)) for column in
                    ("image_id", "content_hash", "label", "patient_id")}
            skipped = [(table["image_id"].iat[p], reason) for p, reason in errors]
            for image_id, reason in skipped:
                bar.write(f"skipped {image_id}: {reason}")
            writer.append(features, rows, skipped, last)
            bar.update(last - first)
            if first_batch_done is None:
                first_batch_done = (time.perf_counter(), last)
    return first_batch_done


def _features(model, spec, pixels, batch_size: int) -> np.ndarray:
    """Pooled features of one batch; a short batch is padded to ``batch_size`` so that the
    compiled step is reused (a new shape costs a retrace, and an XLA compile on a GPU)."""
    if not pixels:
        return np.zeros((0, spec.feature_dim), dtype=np.float32)
    batch = np.stack(pixels + [pixels[-1]] * (batch_size - len(pixels)))
    return np.asarray(model.predict_on_batch(preprocess(spec, batch)), dtype=np.float32)[:len(pixels)]


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


def _summary(store, cached: bool) -> dict:
    attrs = store.attrs
    return {
        "store": str(store.path),
        "images": len(store.rows["image_id"]),
        "skipped": len(store.skipped),
        "skipped_files": [{"image_id": i, "reason": r} for i, r in store.skipped],
        "images_per_s": round(float(attrs.get("images_per_s", 0.0)), 2),
        "steady_images_per_s": round(float(attrs.get("steady_images_per_s", 0.0)), 2),
        "seconds": round(float(attrs.get("seconds", 0.0)), 2),
        "cached": cached,
        "backbone": attrs["backbone"],
        "weights": attrs["weights"],
        "dataset_id": attrs["dataset_id"],
    }
