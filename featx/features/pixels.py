"""Decode once: the pixel cache, and the feed that gives every phase its pixels.

Every path from files to a model's input goes through here: phase 1 (:class:`PixelFeed`'s batches),
and fine-tuning, ``predict`` and ``validate`` (:func:`hold_pixels`), each by the
:class:`~featx.features.identity.ImageRecord` it applies, through the decode pool
(:mod:`featx.data.pool`) and, where the command has a cache folder, the pixel cache.

The pixel cache holds every image letterboxed once per (image content, input size, mask,
decoder), as uint8 with one channel for grayscale content (radiographs) and three otherwise, so
every backbone at that size, and every dataset that holds the same images (a subset of its
folder, say), reads the pixels instead of decoding the files again. It lives in
``cache/pixels/WxH-DECODER[-mask-NAME]/``: a ``pixels.json`` that records its provenance (the
key, the format, the decoding libraries' versions) and immutable chunk files, each written under
a temporary name and renamed, sealed with a checksum that is verified whenever it is read.

A cache whose provenance does not match is refused with its path (``rebuild`` redoes it); a
chunk that is damaged is reported, deleted and its images decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from featx.data.images import DECODERS, MASKS, as_rgb, fill_rgb
from featx.data.pool import DecodePool
from featx.exceptions import CacheError
from featx.features.identity import ImageRecord, Side
from featx.fileio import make_folder, read_arrays_verified, write_arrays_atomic, write_text_atomic
from featx.records import STRICT, Text, read_record

PIXEL_FORMAT = 1
MANIFEST = "pixels.json"
PREFETCH_BATCHES = 2
HOLD_BATCH = 64
"""Images :func:`hold_pixels` asks the decode pool for at once."""
CHUNKS_KEPT = 4  # chunks held in memory after reading: a subset walks its parent's chunks in order
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PixelKey:
    """What letterboxed pixels depend on, besides the image content.

    Attributes
    ----------
    input_size : tuple of int
        (width, height).
    mask : str or None
    decoder : str
    """

    input_size: tuple
    mask: str | None
    decoder: str

    @classmethod
    def of(cls, image: ImageRecord) -> PixelKey:
        """What the pixels of ``image`` depend on (its preprocessing scales them afterwards)."""
        return cls(input_size=image.input_size, mask=image.mask, decoder=image.decoder)

    def folder(self, cache_dir) -> Path:
        """``cache_dir/pixels/WxH-DECODER[-mask-NAME]``."""
        width, height = self.input_size
        mask = f"-mask-{self.mask}" if self.mask else ""
        return Path(cache_dir) / "pixels" / f"{width}x{height}-{self.decoder}{mask}"

    def provenance(self) -> PixelProvenance:
        """The key, the cache format and the versions of the libraries that decode."""
        import PIL
        from PIL import features

        return PixelProvenance(
            input_size=tuple(self.input_size),
            mask=self.mask,
            decoder=self.decoder,
            format_version=PIXEL_FORMAT,
            pillow=PIL.__version__,
            libjpeg_turbo=features.version("libjpeg_turbo") or "",
        )


@dataclass(frozen=True, kw_only=True)
class PixelProvenance:
    """A pixel cache's ``pixels.json``: its :class:`PixelKey`, format and decoding libraries.

    Attributes
    ----------
    input_size : tuple of int
    mask : str or None
    decoder : str
    format_version : int
    pillow : str
        Pillow's version.
    libjpeg_turbo : str
        libjpeg-turbo's version (empty when Pillow was built without it).
    """

    __pydantic_config__ = STRICT

    input_size: tuple[Side, Side]
    mask: Literal[tuple(MASKS)] | None
    decoder: Literal[DECODERS]
    format_version: Annotated[int, Field(ge=1)]
    pillow: Text
    libjpeg_turbo: str


class PixelCache:
    """One folder of letterboxed pixels, indexed by image content hash.

    Parameters
    ----------
    cache_dir : str or Path
    key : PixelKey
    rebuild : bool
        Delete the folder first.

    Raises
    ------
    CacheError
        When the folder's recorded provenance differs from ``key``'s (listing the differences).
    RecordError
        When its ``pixels.json`` is not a pixel cache manifest of this featx's format.
    """

    def __init__(self, cache_dir, key: PixelKey, *, rebuild: bool = False):
        self.key = key
        self.path = key.folder(cache_dir)
        self._provenance = key.provenance()
        self._digest = hashlib.sha256(json.dumps(asdict(self._provenance), sort_keys=True).encode()).hexdigest()[:16]
        self._lock = threading.Lock()
        self._index = {}  # content hash -> (chunk path, slot)
        self._loaded = OrderedDict()  # chunk path -> its arrays, most recently read last
        if rebuild:
            shutil.rmtree(self.path, ignore_errors=True)
        manifest = self.path / MANIFEST
        if manifest.exists():
            self._check(manifest)
        else:
            make_folder(self.path)
            write_text_atomic(manifest, json.dumps(asdict(self._provenance), indent=1, sort_keys=True))
        for chunk in sorted(self.path.glob("*.npz")):
            self._add_to_index(chunk)

    def _check(self, manifest: Path) -> None:
        recorded = read_record(
            manifest, PixelProvenance, what="pixel cache manifest", version_field="format_version", version=PIXEL_FORMAT
        )
        wanted = asdict(self._provenance)
        differences = [
            f"{name}: cache has {found!r}, request has {wanted[name]!r}"
            for name, found in asdict(recorded).items()
            if found != wanted[name]
        ]
        if differences:
            raise CacheError(
                f"{self.path}: pixel cache provenance does not match; refused ({'; '.join(differences)}). "
                "Rebuild it, or extract without the pixel cache"
            )

    def _add_to_index(self, chunk: Path) -> None:
        try:
            arrays = read_arrays_verified(chunk, names=("content_hash", "cache_digest"))
        except ValueError as error:
            self._drop(chunk, str(error))
            return
        if str(arrays["cache_digest"]) != self._digest:
            self._drop(chunk, "made for another pixel cache")
            return
        with self._lock:
            for slot, digest in enumerate(arrays["content_hash"].tolist()):
                self._index.setdefault(digest, (chunk, slot))

    def _drop(self, chunk: Path, reason: str) -> None:
        log.warning("%s: damaged pixel chunk (%s); deleted, its images are decoded again", chunk, reason)
        chunk.unlink(missing_ok=True)
        with self._lock:
            self._index = {digest: place for digest, place in self._index.items() if place[0] != chunk}
            self._loaded.pop(chunk, None)

    def __contains__(self, content_hash: str) -> bool:
        with self._lock:
            return content_hash in self._index

    def read(self, content_hashes) -> dict:
        """The cached pixels of the given contents, verified; those of a damaged chunk are left out.

        Returns
        -------
        dict of str to (numpy.ndarray or None, str or None)
            Pixels ((H, W) or (H, W, 3) uint8) or None, and the reason decoding failed.
        """
        found = {}
        for digest in content_hashes:
            with self._lock:
                place = self._index.get(digest)
            if place is None:
                continue
            arrays = self._chunk(place[0])
            if arrays is not None:
                found[digest] = _unpack(arrays, place[1], self.key.input_size)
        return found

    def _chunk(self, chunk: Path):
        with self._lock:
            if chunk in self._loaded:
                self._loaded.move_to_end(chunk)
                return self._loaded[chunk]
        try:
            arrays = read_arrays_verified(chunk)
        except ValueError as error:
            self._drop(chunk, str(error))
            return None
        arrays["offset"] = np.concatenate([[0], np.cumsum(arrays["nbytes"])])
        with self._lock:
            self._loaded[chunk] = arrays
            while len(self._loaded) > CHUNKS_KEPT:
                self._loaded.popitem(last=False)
        return arrays

    def add(self, content_hashes, results) -> None:
        """Store newly decoded images (pixels or the reason they failed) as one chunk."""
        fresh = {}
        for digest, result in zip(content_hashes, results, strict=True):
            if digest not in self and digest not in fresh:
                fresh[digest] = result
        if not fresh:
            return
        pixels = [result[0] for result in fresh.values()]
        hashes = list(fresh)
        arrays = {
            "content_hash": np.asarray(hashes, dtype="<U64"),
            "cache_digest": np.asarray(self._digest),
            "ndim": np.asarray([0 if p is None else p.ndim for p in pixels], dtype=np.uint8),
            "nbytes": np.asarray([0 if p is None else p.size for p in pixels], dtype=np.int64),
            "reason": np.asarray([reason or "" for _, reason in fresh.values()], dtype=str),
            "pixels": np.concatenate([p.reshape(-1) for p in pixels if p is not None] or [np.zeros(0, np.uint8)]),
        }
        name = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:20]
        chunk = write_arrays_atomic(self.path / f"{name}.npz", arrays)
        with self._lock:
            for slot, digest in enumerate(hashes):
                self._index.setdefault(digest, (chunk, slot))


def disk_bytes(folder) -> int:
    """Bytes the files of a pixel cache folder take (0 when there is none)."""
    return sum(path.stat().st_size for path in Path(folder).glob("*") if path.is_file())


def _unpack(arrays: dict, slot: int, size) -> tuple:
    reason = str(arrays["reason"][slot])
    if reason:
        return None, reason
    width, height = size
    shape = (height, width) if int(arrays["ndim"][slot]) == 2 else (height, width, 3)
    start, stop = int(arrays["offset"][slot]), int(arrays["offset"][slot + 1])
    return arrays["pixels"][start:stop].reshape(shape), None


@dataclass(frozen=True, eq=False, kw_only=True)
class PixelBatch:
    """The pixels of one batch, ``dataset[first:last]``, ready for a model.

    Attributes
    ----------
    first, last : int
    positions : list of int
        Dataset positions of the decoded images, in order.
    pixels : numpy.ndarray
        (len(positions), height, width, 3) uint8.
    errors : list of (int, str)
        Positions that could not be decoded, with the reason.
    results : dict
        Content hash -> (pixels, (H, W) or (H, W, 3) uint8, or None; the reason or None) of every image of the batch.
    """

    first: int
    last: int
    positions: list
    pixels: np.ndarray
    errors: list
    results: dict = field(repr=False, default_factory=dict)


class PixelFeed:
    """Batches of letterboxed pixels for fixed dataset positions, from the cache or decoded ahead.

    Images the cache lacks are decoded by a :class:`~featx.data.pool.DecodePool` (a few batches
    ahead of the consumer) and added to the cache by a thread, behind; cached ones are read and
    verified by the same thread, ahead.

    Parameters
    ----------
    paths, content_hashes : sequence of str
        One per dataset position.
    key : PixelKey
    cache : PixelCache or None
        None decodes every image.
    workers : int, optional
        Decoding processes (0: threads; default: the number of CPUs).
    """

    def __init__(self, paths, content_hashes, key: PixelKey, *, cache: PixelCache | None, workers=None):
        self.paths = list(paths)
        self.hashes = list(content_hashes)
        self.key = key
        self.cache = cache
        self.workers = workers
        self.decoded = 0

    def batches(self, bounds):
        """Yield a :class:`PixelBatch` for each ``(first, last)`` of ``bounds``, in order."""
        bounds = list(bounds)
        if not bounds:
            return
        capacity = max(last - first for first, last in bounds)
        pool = DecodePool(
            self.key.input_size,
            mask=self.key.mask,
            decoder=self.key.decoder,
            workers=self.workers,
            capacity=capacity,
            depth=PREFETCH_BATCHES + 2,  # one more region for a damaged cache chunk's images
        )
        with pool, ThreadPoolExecutor(max_workers=1) as reader:
            pending, adding = deque(), deque()
            upcoming = iter(bounds)
            for bound in upcoming:
                pending.append(self._start(bound, pool, reader))
                if len(pending) > PREFETCH_BATCHES:
                    break
            try:
                while pending:
                    batch = self._finish(pool, reader, adding, *pending.popleft())
                    following = next(upcoming, None)
                    if following is not None:
                        pending.append(self._start(following, pool, reader))
                    while adding and (adding[0].done() or len(adding) > PREFETCH_BATCHES):
                        adding.popleft().result()  # a failed write (a full disk) is raised here
                    yield batch
            finally:  # also when the consumer stops early: every write is waited for and a failure raised
                while adding:
                    adding.popleft().result()

    def _start(self, bound, pool: DecodePool, reader):
        first, last = bound
        wanted = {}
        for position in range(first, last):
            wanted.setdefault(self.hashes[position], position)
        cached = {digest for digest in wanted if self.cache is not None and digest in self.cache}
        missing = [digest for digest in wanted if digest not in cached]
        reading = reader.submit(self.cache.read, sorted(cached)) if cached else None
        decoding = pool.submit([self.paths[wanted[digest]] for digest in missing]) if missing else None
        return bound, wanted, missing, reading, decoding

    def _finish(self, pool, reader, adding, bound, wanted, missing, reading, decoding) -> PixelBatch:
        first, last = bound
        results = self._results(pool, reader, adding, wanted, missing, reading, decoding)
        width, height = self.key.input_size
        positions = [p for p in range(first, last) if results[self.hashes[p]][0] is not None]
        pixels = np.empty((len(positions), height, width, 3), dtype=np.uint8)
        for row, position in enumerate(positions):
            image = results[self.hashes[position]][0]
            fill_rgb(pixels[row], image)
        errors = [(p, results[self.hashes[p]][1]) for p in range(first, last) if results[self.hashes[p]][0] is None]
        return PixelBatch(first=first, last=last, positions=positions, pixels=pixels, errors=errors, results=results)

    def _results(self, pool, reader, adding, wanted, missing, reading, decoding) -> dict:
        """Pixels or failure reason per content hash of a batch; decoded ones counted and added to the cache by
        the ``reader`` thread (their writing overlaps the model; its future is appended to ``adding``)."""
        results = dict(zip(missing, decoding.result(), strict=True)) if decoding is not None else {}
        if reading is not None:
            results.update(reading.result())
        unread = [digest for digest in wanted if digest not in results]  # in a chunk found damaged
        if unread:
            results.update(zip(unread, pool.submit([self.paths[wanted[d]] for d in unread]).result(), strict=True))
        fresh = missing + unread
        self.decoded += len(fresh)
        if self.cache is not None and fresh:
            adding.append(reader.submit(self.cache.add, fresh, [results[digest] for digest in fresh]))
        return results


@dataclass(frozen=True, kw_only=True, eq=False)
class HeldPixels:
    """The letterboxed pixels of a list of files, held in memory (one channel for grayscale content).

    Attributes
    ----------
    positions : list of int
        Positions (in the list) of the files that decoded, in order.
    images : list of numpy.ndarray
        Their pixels, (H, W) or (H, W, 3) uint8, one per entry of ``positions``.
    failures : list of (int, str)
        Position and reason of each file that could not be decoded.
    decoded : int
        Images decoded by this call; the others were read from the pixel cache.
    """

    positions: list
    images: list
    failures: list
    decoded: int

    def rgb(self, rows) -> np.ndarray:
        """The held images at ``rows`` (indices into :attr:`images`) as one (n, H, W, 3) uint8 array."""
        return np.stack([as_rgb(self.images[row]) for row in rows])


def hold_pixels(paths, content_hashes, image: ImageRecord, *, cache_dir=None, workers=None) -> HeldPixels:
    """Letterbox every file as ``image`` says, through the decode pool and, given ``cache_dir``, the pixel cache.

    The one way fine-tuning, ``predict`` and ``validate`` read images: the pixels are those phase 1
    makes for the same record (the same decoder, mask and size; the same cache folder), so a model
    sees the pixels its training rows were made from, and files the cache holds are not decoded
    again. Says on the log how many images were decoded.

    Parameters
    ----------
    paths, content_hashes : sequence of str
        One per file.
    image : ImageRecord
    cache_dir : str or Path, optional
        The command's cache folder: pixels are read from and kept in ``cache_dir/pixels``. None
        decodes every file and keeps nothing.
    workers : int, optional
        Decoding processes (0: threads of this process; default: the CPUs this process may use).

    Returns
    -------
    HeldPixels

    Raises
    ------
    CacheError
        When the pixel cache of this record was made with other decoding libraries (see :class:`PixelCache`).
    """
    key = PixelKey.of(image)
    cache = PixelCache(cache_dir, key) if cache_dir is not None else None
    feed = PixelFeed(paths, content_hashes, key, cache=cache, workers=workers)
    bounds = [(first, min(first + HOLD_BATCH, len(feed.paths))) for first in range(0, len(feed.paths), HOLD_BATCH)]
    positions, held, failures = [], [], []
    for batch in feed.batches(bounds):
        for position in range(batch.first, batch.last):
            pixels, reason = batch.results[feed.hashes[position]]
            if pixels is None:
                failures.append((position, reason))
            else:
                positions.append(position)
                held.append(pixels)
    where = f"the rest read from {cache.path}" if cache is not None else "no pixel cache"
    log.info("%d of %d images decoded (%s)", feed.decoded, len(feed.paths), where)
    return HeldPixels(positions=positions, images=held, failures=failures, decoded=feed.decoded)
