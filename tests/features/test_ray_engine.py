"""Phase 1 on Ray: one local cluster for the whole module, real radiographs at a small input size."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from featx.data.dataset import load_dataset
from featx.features import chunks
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import open_store
from tests.processes import kill_at_progress
from tests.realdata import REPO, featx_command

SIZE = (64, 64)
RANDOM = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=SIZE)


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of two CPUs started once for these tests; its address for other drivers."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data)


@pytest.fixture(scope="module")
def local_store(dataset, tmp_path_factory):
    summary = extract(dataset, RANDOM, batch_size=4, cache_dir=tmp_path_factory.mktemp("local"), progress=False)
    return open_store(summary.store)


def _ray(**options):
    from featx.features.ray_engine import RayEngine

    return RayEngine(**options)


def test_the_ray_store_equals_the_local_store(cluster, dataset, local_store, tmp_path):
    summary = extract(dataset, RANDOM, batch_size=4, cache_dir=tmp_path, progress=False, engine=_ray())
    store = open_store(summary.store)
    assert summary.engine == "ray" and store.attrs["engine"] == "ray" and store.attrs["cluster_cpus"] == 2
    assert np.abs(store.features - local_store.features).max() <= 1e-5
    assert list(store.rows["content_hash"]) == list(local_store.rows["content_hash"])
    assert store.key == local_store.key


def _backbone_actors() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if "_Backbone" in " ".join(p.info["cmdline"] or [])]


def test_a_killed_actor_is_replaced_and_its_batch_redone(cluster, dataset, local_store, tmp_path):
    folder = chunks.chunk_folder(RANDOM.key(dataset.id).path(tmp_path))
    killed = []

    def kill_an_actor_after_the_first_chunk():
        while not killed:  # keyed on a finished chunk, the engine's own progress
            actors = _backbone_actors()
            if actors and list(folder.glob("*.npz")):
                actors[0].send_signal(signal.SIGKILL)
                killed.append(actors[0].pid)
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_an_actor_after_the_first_chunk, daemon=True)
    watcher.start()
    summary = extract(dataset, RANDOM, batch_size=2, cache_dir=tmp_path, progress=False, engine=_ray(retries=3))
    watcher.join(timeout=5)
    assert killed, "no actor was killed"
    np.testing.assert_array_equal(open_store(summary.store).features, local_store.features)


def test_an_interrupted_ray_run_resumes_from_its_chunks_without_redoing_them(
    cluster, small_data, dataset, local_store, tmp_path
):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TQDM_MININTERVAL": "0"}
    args = [
        "extract",
        "--model",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--input-size",
        "64x64",
        "--batch-size",
        "4",
        "--data",
        str(small_data),
        "--cache",
        str(tmp_path),
        "--engine",
        "ray",
        "--address",
        cluster,
    ]
    kill_at_progress(featx_command(*args), r"(\d+)/36", lambda done: max(done) >= 12, env)
    folder = chunks.chunk_folder(RANDOM.key(dataset.id).path(tmp_path))
    before = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.npz")}
    assert len(before) >= 3
    summary = extract(dataset, RANDOM, batch_size=4, cache_dir=tmp_path, progress=False, engine=_ray())
    assert summary.resumed_images == 4 * len(before) >= 12  # every finished chunk kept, none redone
    np.testing.assert_array_equal(open_store(summary.store).features, local_store.features)


def test_without_ray_the_engine_says_how_to_install_it(small_data, tmp_path):
    hide_ray = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('No module named ray')\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from featx.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = "extract --model efficientnet_lite0 --weights none --input-size 64x64 --engine ray -q".split()
    result = subprocess.run(
        [sys.executable, "-c", hide_ray, *command, "--data", str(small_data), "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pip install 'featx[distributed]'" in result.stderr
