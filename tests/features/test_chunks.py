"""Chunks on real features: sealed, verified, refused when damaged or foreign, redone by the next run."""

import os

import numpy as np
import pytest

from featx.data.dataset import load_dataset
from featx.exceptions import CacheError
from featx.features.chunks import Chunk, batch_bounds, chunk_folder, chunk_path, read_chunk, write_chunk
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import ROW_COLUMNS, open_store

RANDOM = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(64, 64))


@pytest.fixture(scope="module")
def reference(small_data, tmp_path_factory):
    dataset = load_dataset(small_data)
    summary = extract(dataset, RANDOM, batch_size=4, cache_dir=tmp_path_factory.mktemp("chunks_ref"), progress=False)
    return dataset, open_store(summary.store)


def _chunk_of(store, first, last, digest) -> Chunk:
    rows = {column: list(store.rows[column][first:last]) for column in ROW_COLUMNS}
    features = store.features[first:last]
    return Chunk(first=first, last=last, batch_size=4, key_digest=digest, rows=rows, features=features, skipped=[])


def test_a_chunk_reads_back_exactly(reference, tmp_path):
    dataset, store = reference
    digest = RANDOM.key(dataset.id).digest()
    path = write_chunk(tmp_path, _chunk_of(store, 4, 8, digest))
    assert path == chunk_path(tmp_path, 4, 8) and not list(tmp_path.glob("*.tmp"))
    chunk = read_chunk(path, digest)
    np.testing.assert_array_equal(chunk.features, store.features[4:8])
    assert chunk.rows["image_id"] == list(store.rows["image_id"][4:8]) and chunk.skipped == []
    with open(path, "rb") as handle:
        assert b"pickle" not in handle.read(200)


def test_truncated_edited_or_foreign_chunks_are_refused(reference, tmp_path):
    dataset, store = reference
    digest = RANDOM.key(dataset.id).digest()
    path = write_chunk(tmp_path, _chunk_of(store, 0, 4, digest))
    with pytest.raises(CacheError, match="chunk of another store"):
        read_chunk(
            path, FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=(64, 64)).key(dataset.id).digest()
        )
    data = path.read_bytes()
    offset = data.index(np.ascontiguousarray(store.features[1], dtype="<f4").tobytes())
    path.write_bytes(data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :])
    with pytest.raises(CacheError, match="damaged chunk.*CRC"):  # the zip's own check
        read_chunk(path, digest)
    path.write_bytes(data)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["features"][1, 7] += 1.0  # an edit that keeps the zip consistent and the old seal
    np.savez(path, **arrays)
    with pytest.raises(CacheError, match="damaged chunk.*checksum mismatch"):
        read_chunk(path, digest)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="damaged chunk.*unreadable"):
        read_chunk(path, digest)


def test_a_truncated_chunk_is_detected_deleted_and_redone(reference, tmp_path, caplog):
    dataset, store = reference
    key = RANDOM.key(dataset.id)
    folder = chunk_folder(key.path(tmp_path))
    folder.mkdir(parents=True)
    for first, last in batch_bounds(36, 4)[:3]:  # an interrupted run's first three batches
        write_chunk(folder, _chunk_of(store, first, last, key.digest()))
    damaged = chunk_path(folder, 4, 8)
    damaged.write_bytes(damaged.read_bytes()[:1000])
    (folder / "000000012-000000016.npz.999.tmp").write_bytes(b"half a chunk")
    summary = extract(dataset, RANDOM, batch_size=4, cache_dir=tmp_path, progress=False)
    assert summary.resumed_images == 8
    assert "000000004-000000008.npz: damaged chunk" in caplog.text and "its batch is done again" in caplog.text
    np.testing.assert_array_equal(open_store(summary.store).features, store.features)
    assert not folder.exists()


def test_a_resumed_run_keeps_the_interrupted_runs_batch_size(reference, tmp_path, caplog):
    dataset, store = reference
    key = RANDOM.key(dataset.id)
    folder = chunk_folder(key.path(tmp_path))
    folder.mkdir(parents=True)
    write_chunk(folder, _chunk_of(store, 0, 4, key.digest()))
    summary = extract(dataset, RANDOM, batch_size=32, cache_dir=tmp_path, progress=False)
    assert summary.resumed_images == 4 and "batch size 4 (asked for 32)" in caplog.text
    resumed = open_store(summary.store)
    assert resumed.attrs["batch_size"] == 4
    np.testing.assert_array_equal(resumed.features, store.features)
    assert sorted(os.listdir(tmp_path / dataset.id)) == [os.path.basename(summary.store)]
