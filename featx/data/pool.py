"""Decode and letterbox many images in parallel: worker processes, pixels back through shared memory.

JPEG decoding and resampling hold Python's interpreter lock for part of their time, so threads
of one process do not scale with the cores; worker processes do. Each worker writes the pixels
it made straight into a block of shared memory that the caller owns (a ring of regions, one per
batch in flight) and sends back only how many channels each image has, or why it failed. The
workers start with ``forkserver`` (safe after TensorFlow was imported: nothing of the parent's
threads or state is inherited) and import no Keras.

``workers=0`` decodes in threads of this process instead, through the same code; so does a pool
made inside a worker process of another pool (a joblib / loky worker running
``cross_val_score(..., n_jobs=2)``, say), which may not start processes of its own and gets only
its share of the cores. Where shared memory cannot be had (``/dev/shm`` too small), pixels come
back pickled.

Signals: the workers ignore SIGINT and SIGTERM (a terminal's Ctrl-C and ``kill -- -PGID`` reach
the whole process group); the process that owns the pool unwinds on them and :meth:`DecodePool.close`
stops the workers and releases the shared memory, uninterrupted by a second signal. A worker whose
owner is killed outright exits on its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import signal
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory

import numpy as np

from featx.data import images
from featx.exceptions import ImageDecodeError, ResourceError

log = logging.getLogger(__name__)
_ATTACHED = {}  # shared memory blocks a worker process has attached, by name
SHARE_VARIABLE = "OMP_NUM_THREADS"  # joblib's loky backend sets it to each worker's share of the cores
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def in_worker_process() -> bool:
    """Whether this process is a worker of some pool (multiprocessing, loky / joblib), not a main process."""
    process = multiprocessing.current_process()
    return multiprocessing.parent_process() is not None or process.daemon or process.name != "MainProcess"


def default_workers() -> int:
    """The cores this process may use: its CPU affinity, and inside a worker process no more than its share.

    A joblib worker's share is what joblib sets ``OMP_NUM_THREADS`` to in it (the cores divided by
    ``n_jobs``, unless the variable was set already), so that parallel folds do not each decode on
    every core.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = os.environ.get(SHARE_VARIABLE, "")
    if in_worker_process() and share.isdigit() and int(share) > 0:
        cores = min(cores, int(share))
    return max(cores, 1)


class DecodeTicket:
    """Images submitted together; :meth:`result` waits for them."""

    def __init__(self, pool: DecodePool, region: int, futures: list):
        self._pool = pool
        self._region = region
        self._futures = futures

    def result(self) -> list:
        """Each image's pixels (a copy, (H, W) or (H, W, 3) uint8) or None, and the reason it failed.

        Returns
        -------
        list of (numpy.ndarray or None, str or None)
        """
        try:
            done = [outcome for future in self._futures for outcome in future.result()]
            return [self._pool._pixels(self._region, slot, made) for slot, made in enumerate(done)]
        except BrokenProcessPool:
            raise ResourceError(
                "a decoding worker process stopped unexpectedly (killed, or out of memory); "
                "try fewer workers (--workers) or a smaller --input-size"
            ) from None
        finally:
            self._pool._free.append(self._region)


class DecodePool:
    """Worker processes (or threads) that decode and letterbox images into shared memory.

    Parameters
    ----------
    size : tuple of int
        (width, height) of the letterbox.
    mask : str, optional
        A name from :data:`featx.data.images.MASKS`.
    decoder : str
        One of :data:`featx.data.images.DECODERS`.
    workers : int, optional
        Worker processes; 0 decodes in threads of this process (one per core it may use). Inside a
        worker process of another pool, ``workers`` threads decode instead of processes. Default:
        :func:`default_workers`.
    capacity : int
        Most images one :meth:`submit` may carry.
    depth : int
        Most submissions in flight at once.
    """

    def __init__(self, size, *, mask=None, decoder=images.DEFAULT_DECODER, workers=None, capacity=64, depth=3):
        self.size = tuple(size)
        self.mask = mask
        self.decoder = decoder
        self.workers = default_workers() if workers is None else int(workers)
        self.capacity = capacity
        width, height = self.size
        self._slot_bytes = width * height * 3
        self._free = deque(range(depth))
        self._shared = None
        self._threads = self.workers == 0 or in_worker_process()
        if self._threads:
            self._parallel = self.workers or default_workers()
            self._ring = np.empty((depth * capacity, self._slot_bytes), dtype=np.uint8)
            self._executor = ThreadPoolExecutor(max_workers=self._parallel, thread_name_prefix="featx-decode")
            return
        self._shared = _shared_block(depth * capacity * self._slot_bytes)
        self._ring = (
            np.ndarray((depth * capacity, self._slot_bytes), dtype=np.uint8, buffer=self._shared.buf)
            if self._shared is not None
            else None
        )
        self._executor = None  # the processes start with the first submission
        self._parallel = self.workers

    def _start_processes(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["featx.data.images", "featx.data.pool"])
        self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_worker_start)

    def submit(self, paths) -> DecodeTicket:
        """Start decoding ``paths`` (at most ``capacity``); the ticket's result keeps their order.

        Raises
        ------
        RuntimeError
            When ``depth`` submissions are already in flight.
        """
        paths = [str(path) for path in paths]
        if len(paths) > self.capacity:
            raise ValueError(f"{len(paths)} images submitted at once, capacity {self.capacity}")
        if not self._free:
            raise RuntimeError("every region of the decode pool is in flight; collect a ticket first")
        if self._executor is None:
            self._start_processes()
        region = self._free.popleft()
        # small groups keep every worker busy while uneven images finish
        group = max(1, math.ceil(len(paths) / (2 * self._parallel)))
        target = self._ring if self._threads else (self._shared.name if self._shared is not None else None)
        with contextlib.nullcontext() if self._threads else _caller_script_hidden():  # workers start on demand
            futures = [
                self._executor.submit(
                    _decode_group,
                    target,
                    region * self.capacity + start,
                    paths[start : start + group],
                    self.size,
                    self.mask,
                    self.decoder,
                )
                for start in range(0, len(paths), group)
            ]
        return DecodeTicket(self, region, futures)

    def _pixels(self, region: int, slot: int, made):
        pixels, reason = made
        if reason is not None or isinstance(pixels, np.ndarray):
            return pixels, reason
        width, height = self.size
        shape = (height, width) if pixels == 1 else (height, width, 3)
        start = region * self.capacity + slot
        return self._ring[start, : height * width * pixels].reshape(shape).copy(), None

    def close(self) -> None:
        """Stop the workers and release the shared memory; a SIGINT or SIGTERM meanwhile takes effect after."""
        with _signals_deferred():
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
            if self._shared is not None:
                self._ring = None
                self._shared.close()
                self._shared.unlink()
                self._shared = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@contextlib.contextmanager
def _caller_script_hidden():
    """Keep multiprocessing from running the caller's own script again in every worker.

    A new process imports the parent's ``__main__`` by its file unless it is a package's
    ``__main__``; the workers need only featx, and a script without an ``if __name__ ==
    "__main__"`` guard would otherwise extract again in each of them.
    """
    main = sys.modules["__main__"]
    saved = {name: vars(main)[name] for name in ("__file__", "__spec__") if name in vars(main)}
    vars(main).pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        vars(main).pop("__spec__", None)
        vars(main).update(saved)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM arriving in the block take effect when it ends (main thread; elsewhere no change).

    Releasing workers and shared memory must not be cut short by a second Ctrl-C or SIGTERM: that
    would leave the shared memory block behind (and the resource tracker's warnings about it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum)) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if received:
            signal.raise_signal(received[0])


def _worker_start() -> None:
    """Worker side: ignore SIGINT and SIGTERM, and exit as soon as the process that started the pool is gone.

    Ctrl-C and ``kill -- -PGID`` reach every process of the group; the owner of the pool unwinds and
    stops its workers (see :meth:`DecodePool.close`), so a worker carries on with its images
    instead of printing a traceback. Without an owner (killed outright) a worker would otherwise
    wait for its next task forever, holding memory and the owner's stderr.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="featx-parent-watch").start()


def _shared_block(size: int):
    """A new shared memory block of ``size`` bytes, or None where ``/dev/shm`` cannot hold it."""
    # checked first: a failed creation confuses multiprocessing's resource tracker (Python < 3.13)
    file_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if file_limit != resource.RLIM_INFINITY and file_limit < size:
        problem = f"files are limited to {file_limit} bytes"
    elif os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free < size:
        problem = f"/dev/shm has less than {size} bytes free"
    else:
        try:
            return shared_memory.SharedMemory(create=True, size=size)
        except OSError as error:
            problem = str(error)
    log.info("decoded pixels come back pickled, not through shared memory (%s)", problem)
    return None


def _decode_group(target, first_slot: int, paths, size, mask, decoder) -> list:
    """Decode ``paths`` into consecutive slots of ``target`` (worker side).

    ``target`` is the ring itself (threads), the name of the shared block (processes), or None
    (no shared memory: the pixels themselves are returned).

    Returns
    -------
    list of (channels or pixels or None, reason or None)
    """
    ring = _ATTACHED.get(target) if isinstance(target, str) else target
    if isinstance(target, str) and ring is None:
        block = shared_memory.SharedMemory(name=target)
        ring = np.ndarray((block.size // (size[0] * size[1] * 3), size[0] * size[1] * 3), np.uint8, block.buf)
        _ATTACHED[target] = ring
        _ATTACHED[(target, "block")] = block  # keeps the mapping open as long as the worker lives
    made = []
    for offset, path in enumerate(paths):
        try:
            pixels = images.load_compact(path, size, mask, decoder)
        except ImageDecodeError as error:
            made.append((None, error.reason))
            continue
        if ring is None:
            made.append((pixels, None))
            continue
        ring[first_slot + offset, : pixels.size] = pixels.reshape(-1)
        made.append((1 if pixels.ndim == 2 else 3, None))
    return made
