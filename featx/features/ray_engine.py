"""Phase 1 beyond one machine: the batches of an extraction as a Ray Data pipeline.

Each batch (fixed dataset positions, as for the local engine) is one row of a Ray dataset.
Decoding runs as CPU tasks (reading and filling the pixel cache when it is used); the backbone
runs in a pool of actors, each loading the model once (``num_gpus`` per actor when there are
GPUs), and each actor writes its batch's chunk in the format of :mod:`featx.features.chunks` to
the cache folder, which a cluster shares. The driver assembles the store as the local engine's
finisher does, so a store made on a cluster equals one made on a laptop.

Faults: an actor or a task that dies is replaced and its batch redone (``max_restarts``,
``max_task_retries`` and ``max_retries`` are set explicitly); a whole run that is killed resumes
from the finished chunks, on Ray or locally; a batch that raises is reported with its images and
the error, and when no batch finishes for ``block_timeout`` seconds the run stops and names the
images still in flight instead of hanging.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from featx.exceptions import CacheError, FeatxError, ParameterError
from featx.features import chunks
from featx.features.engine import BatchPlan, EngineRun, make_chunk
from featx.features.pixels import PixelBatch
from featx.features.runtime import KERAS, RUNTIMES
from featx.features.store import ROW_COLUMNS

INSTALL_HINT = "pip install 'featx[distributed]'"
RETRIES = 3
BLOCK_TIMEOUT_S = 900.0
log = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module, or a clear error saying how to install it.

    Raises
    ------
    FeatxError
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FeatxError(f"the Ray engine needs Ray Data, which is not installed here: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True, kw_only=True)
class RayEngine:
    """Run phase 1 on a Ray cluster (or a local one started with this machine's cores).

    Attributes
    ----------
    address : str or None
        ``auto``, ``HOST:PORT`` of a running cluster, or None to start one here (or use the one
        this process already joined).
    workers : int or None
        Backbone actors (default: one per GPU, else one).
    gpus_per_worker : float
        GPUs each actor asks for (0 on a CPU cluster).
    retries : int
        Restarts of a dead actor and retries of a failed task.
    block_timeout : float
        Seconds without any finished batch after which the run stops, naming the images in flight.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    retries: int = RETRIES
    block_timeout: float = BLOCK_TIMEOUT_S

    name = "ray"

    def __post_init__(self):
        if self.workers is not None and int(self.workers) < 1:
            raise ParameterError("workers", self.workers, "must be >= 1")
        if self.gpus_per_worker < 0:
            raise ParameterError("gpus_per_worker", self.gpus_per_worker, "must be >= 0")
        if self.retries < 0:
            raise ParameterError("retries", self.retries, "must be >= 0")
        if not self.block_timeout > 0:
            raise ParameterError("block_timeout", self.block_timeout, "must be > 0")

    def connect(self):
        """Join the cluster (or start a local one) and return the ``ray`` module."""
        quiet = not logging.getLogger("featx").isEnabledFor(logging.DEBUG)
        if quiet:  # Ray's own start-up and execution notices, unless featx is verbose
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        ray = import_ray()
        if not ray.is_initialized():
            options = {"address": self.address} if self.address else {"num_cpus": os.cpu_count() or 1}
            ray.init(
                **options,
                include_dashboard=False,
                logging_level=logging.ERROR if quiet else logging.INFO,
                log_to_driver=not quiet,
            )
        if quiet:
            for name in ("ray", "ray.data"):
                logging.getLogger(name).setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.verbose_stats_logs = False
        return ray

    def cluster(self, ray) -> dict:
        """The cluster's size, recorded in the store's provenance."""
        resources = ray.cluster_resources()
        return {
            "engine": self.name,
            "cluster_nodes": len([node for node in ray.nodes() if node.get("Alive")]),
            "cluster_cpus": float(resources.get("CPU", 0.0)),
            "cluster_gpus": float(resources.get("GPU", 0.0)),
            "ray_version": ray.__version__,
        }

    def run(self, plan: BatchPlan, bar) -> EngineRun:
        """Compute every batch of ``plan`` on the cluster and write its chunk; ``bar`` counts the images.

        The model is loaded once here first, so that weights that cannot be had (or bfloat16 on a CPU
        without it) fail with their own error, the Keras download lands in ``$KERAS_HOME`` and an
        OpenVINO conversion is made once, before any actor starts.
        """
        features = plan.features.resolved  # every actor runs the runtime the key names, whatever its device
        if features.weights != "none" or features.runtime != KERAS:
            RUNTIMES[features.runtime].load(features, plan.batch_size)
        ray = self.connect()
        cluster = self.cluster(ray)
        actors = self.workers or max(
            1, int(cluster["cluster_gpus"] // self.gpus_per_worker) if self.gpus_per_worker else 1
        )
        table = plan.table
        items = [
            {"first": first, "last": last, "path": list(table["path"].iloc[first:last]), **plan.rows(first, last)}
            for first, last in plan.todo
        ]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        pixels = {"key": plan.pixel_key, "cache_dir": str(plan.cache_dir) if plan.pixel_cache else None}
        with warnings.catch_warnings():  # Ray 2.6x names no parameter for retries yet; they are set explicitly
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = dataset.map(_decode, fn_kwargs=pixels, num_cpus=1, max_retries=self.retries)
            computed = decoded.map(
                _Backbone,
                fn_constructor_kwargs={
                    "features": features,
                    "batch_size": plan.batch_size,
                    "key_digest": plan.key_digest,
                    "folder": str(plan.folder),
                },
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
                num_gpus=self.gpus_per_worker,
                max_restarts=self.retries,
                max_task_retries=self.retries,
            )
        run = EngineRun(provenance={**cluster, "runtime_version": RUNTIMES[features.runtime].version()})
        pending = dict.fromkeys(plan.todo)
        failures = []
        for row in _rows_within(computed, self.block_timeout, plan, pending):
            bound = (int(row["first"]), int(row["last"]))
            pending.pop(bound, None)
            run.decoded += int(row["decoded"])
            if row["error"]:
                failures.append(f"batch {bound[0]}-{bound[1]} ({_images(plan, [bound])}): {row['error']}")
                continue
            bar.update(bound[1] - bound[0])
            bar.set_postfix_str(f"blocks {len(plan.todo) - len(pending)}/{len(plan.todo)}", refresh=False)
            if run.first_batch is None:
                run.first_batch = (time.perf_counter(), bound[1] - bound[0])
        if failures:
            raise CacheError(
                f"{len(failures)} batch(es) failed on the Ray engine; finished chunks are kept:\n  "
                + "\n  ".join(failures)
            )
        return run


def _images(plan: BatchPlan, bounds, most: int = 5) -> str:
    """The first image ids of some batches, for a message."""
    ids = [str(plan.table["image_id"].iat[p]) for first, last in bounds for p in range(first, last)]
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _rows_within(dataset, timeout: float, plan: BatchPlan, pending: dict):
    """The dataset's rows as they finish; stop with the images in flight when none finishes in ``timeout``."""
    rows = queue.Queue()
    done = object()

    def pump():
        try:
            for row in dataset.iter_rows():
                rows.put(row)
        except BaseException as error:  # handed to the driver thread, which raises it
            rows.put(error)
        rows.put(done)

    threading.Thread(target=pump, daemon=True, name="featx-ray-rows").start()
    while True:
        try:
            item = rows.get(timeout=timeout)
        except queue.Empty:
            raise CacheError(
                f"no batch finished on the Ray engine in {timeout:.0f} s; still in flight: "
                f"{_images(plan, list(pending))}; finished chunks are kept"
            ) from None
        if item is done:
            return
        if isinstance(item, BaseException):
            raise CacheError(
                f"the Ray engine failed ({type(item).__name__}: {item}); finished chunks are kept, a "
                "rerun resumes from them"
            ) from None
        yield item


def _decode(row: dict, key, cache_dir) -> dict:
    """Ray task: the pixels of one batch, from the pixel cache in ``cache_dir`` or decoded in this task's threads.

    Positions in the result are the dataset's (the batch's own plus ``first``).
    """
    from featx.features.pixels import PixelCache, PixelFeed

    first = int(row["first"])
    result = {column: row[column] for column in ("first", "last", *ROW_COLUMNS)}
    try:
        cache = PixelCache(cache_dir, key) if cache_dir is not None else None
        feed = PixelFeed(row["path"], row["content_hash"], key, cache=cache, workers=0)
        batch = next(iter(feed.batches([(0, len(row["path"]))])))
    except Exception as error:  # reported with the batch's images by the driver
        return {
            **result,
            "pixels": np.zeros((0, 1, 1, 3), np.uint8),
            "positions": "[]",
            "errors": "[]",
            "decoded": 0,
            "error": f"decoding: {type(error).__name__}: {error}",
        }
    return {
        **result,
        "pixels": batch.pixels,
        "positions": json.dumps([first + p for p in batch.positions]),
        "errors": json.dumps([(first + p, reason) for p, reason in batch.errors]),
        "decoded": feed.decoded,
        "error": "",
    }


class _Backbone:
    """Ray actor: the backbone loaded once; each call computes one batch and writes its chunk."""

    def __init__(self, features, batch_size: int, key_digest: str, folder: str):
        from featx.features.forward import Forward

        self.forward = Forward(features, batch_size)
        self.batch_size, self.key_digest, self.folder = batch_size, key_digest, folder

    def __call__(self, row: dict) -> dict:
        result = {"first": row["first"], "last": row["last"], "decoded": row["decoded"], "error": row["error"]}
        if row["error"]:
            return result
        batch = PixelBatch(
            first=int(row["first"]),
            last=int(row["last"]),
            positions=json.loads(row["positions"]),
            pixels=row["pixels"],
            errors=[tuple(error) for error in json.loads(row["errors"])],
        )
        try:
            ((_, features),) = self.forward.run([batch])
            rows = {column: list(row[column]) for column in ROW_COLUMNS}
            chunk = make_chunk(rows, batch, features, batch_size=self.batch_size, key_digest=self.key_digest)
            chunks.write_chunk(self.folder, chunk)
        except Exception as error:  # reported with the batch's images by the driver
            result["error"] = f"backbone: {type(error).__name__}: {error}"
        return result
