"""Phase 1 end to end on real radiographs: a real Keras model, real HDF5 stores, real kills."""

import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from featx.cli import main
from featx.data.dataset import dataset_from_paths, load_dataset
from featx.exceptions import CacheError, DatasetError, ParameterError
from featx.features.chunks import chunk_folder, lock_path
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import open_store
from tests.processes import kill_at_progress
from tests.realdata import copy_subset, featx_command, pick_rows

SIZE = (64, 64)
RANDOM = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=SIZE)


@pytest.fixture(scope="module")
def reference_store(small_dataset, tmp_path_factory):
    """An uninterrupted extraction, the yardstick for resumed ones."""
    cache = tmp_path_factory.mktemp("reference_cache")
    return extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, progress=False)


def test_store_holds_every_image_with_provenance(reference_store, small_dataset):
    store = open_store(reference_store.store)
    assert store.features.shape == (36, 1280) and store.features.dtype == np.float32
    assert np.isfinite(store.features).all() and store.features.std() > 0
    assert list(store.rows["image_id"]) == list(small_dataset.table["image_id"])
    assert list(store.rows["label"]) == list(small_dataset.table["label"])
    assert list(store.rows["content_hash"]) == list(small_dataset.table["content_hash"])
    for key in (
        "backbone",
        "weights",
        "preprocessing",
        "input_size",
        "keras_version",
        "backend",
        "featx_version",
        "created",
        "dataset_id",
        "weights_source",
        "decoder",
        "precision",
    ):
        assert key in store.attrs
    assert store.attrs["weights"] == "random-init" and store.attrs["complete"]
    assert list(store.attrs["input_size"]) == [64, 64]


def test_second_run_does_no_cnn_work(reference_store, small_dataset):
    cache = os.path.dirname(os.path.dirname(reference_store.store))
    again = extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, progress=False)
    assert again.cached and again.store == reference_store.store and again.seconds == reference_store.seconds


@pytest.fixture(scope="module")
def overlapping_data(small_data, tmp_path_factory):
    """A second folder: 20 of ``small_data``'s radiographs (other file names and ids) and 8 it does not hold."""
    first = pd.read_csv(small_data / "metadata.csv", dtype=str, keep_default_na=False)
    shared = first.head(20)
    new = pick_rows({"covid": 12, "normal": 12}, seed=11)
    new = new[~new["filename"].isin(first["filename"])].groupby("label").head(4)
    assert len(new) == 8
    folder = copy_subset(new, tmp_path_factory.mktemp("overlapping_data"))
    renamed = shared.assign(filename="images/again-" + shared["filename"].str.removeprefix("images/"))
    for old, moved in zip(shared["filename"], renamed["filename"], strict=True):
        shutil.copyfile(small_data / old, folder / moved)
    pd.concat([renamed, new]).to_csv(folder / "metadata.csv", index=False)
    return load_dataset(folder)


def test_extract_reuses_the_rows_another_store_holds_by_content(reference_store, overlapping_data, tmp_path):
    cache = tmp_path / "cache"
    reference = open_store(reference_store.store)
    (cache / reference.key.dataset_id).mkdir(parents=True)
    shutil.copyfile(reference.path, cache / reference.key.dataset_id / reference.path.name)
    table = overlapping_data.table

    summary = extract(overlapping_data, RANDOM, batch_size=4, cache_dir=cache, pixel_cache=False, progress=False)
    assert (summary.reused_images, summary.computed_images, summary.decoded_images) == (20, 8, 8)
    store = open_store(summary.store)
    assert store.attrs["reused_images"] == 20 and not summary.cached
    assert list(store.rows["image_id"]) == list(table["image_id"])
    assert list(store.rows["content_hash"]) == list(table["content_hash"])
    row_of = reference.row_of_content()
    held = [row_of[digest] for digest in table["content_hash"][:20]]
    assert store.features[:20].tobytes() == reference.features[held].tobytes()

    held = dataset_from_paths(table["path"][:20])
    copied = extract(held, RANDOM, batch_size=4, cache_dir=cache, pixel_cache=False, progress=False)
    assert (copied.reused_images, copied.computed_images, copied.decoded_images) == (20, 0, 0)
    assert open_store(copied.store).features.tobytes() == store.features[:20].tobytes()

    rebuilt = extract(
        overlapping_data, RANDOM, batch_size=4, cache_dir=cache, rebuild=True, pixel_cache=False, progress=False
    )
    assert (rebuilt.reused_images, rebuilt.computed_images, rebuilt.decoded_images) == (0, 28, 28)
    np.testing.assert_allclose(open_store(rebuilt.store).features, store.features, rtol=1e-5, atol=1e-6)


def _extract_args(data, cache) -> list:
    return [
        "extract",
        *("--model", "efficientnet_lite0", "--weights", "none", "--input-size", "64x64", "--batch-size", "4"),
        *("--data", str(data), "--cache", str(cache)),
    ]


@pytest.mark.parametrize("kill_at", [8, 20, 28])
def test_killed_extraction_resumes_from_chunks_to_identical_features(small_data, reference_store, tmp_path, kill_at):
    cache = tmp_path / "cache"
    args = _extract_args(small_data, cache)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TQDM_MININTERVAL": "0"}  # a progress line per batch
    kill_at_progress(featx_command(*args), r"(\d+)/36", lambda done: max(done) >= kill_at, env)

    final = cache / os.path.relpath(reference_store.store, os.path.dirname(os.path.dirname(reference_store.store)))
    assert not final.exists(), "a killed run must not leave a store that claims to be complete"
    assert len(list(chunk_folder(final).glob("*.npz"))) >= kill_at // 4

    finished = subprocess.run(featx_command(*args, "--json", "--quiet"), capture_output=True, text=True, env=env)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["resumed_images"] >= kill_at and summary["images"] == 36
    # pixels of the killed run's finished batches were kept in the pixel cache
    assert summary["decoded_images"] <= 36 - summary["resumed_images"]
    resumed, reference = open_store(summary["store"]), open_store(reference_store.store)
    np.testing.assert_array_equal(resumed.features, reference.features)
    assert list(resumed.rows["image_id"]) == list(reference.rows["image_id"])
    assert not chunk_folder(final).exists()


def test_provenance_mismatch_is_refused(reference_store, small_dataset, tmp_path):
    key = RANDOM.key(small_dataset.id)
    with pytest.raises(CacheError, match="provenance does not match.*input_size"):
        open_store(
            reference_store.store,
            FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(32, 32)).key(small_dataset.id),
        )
    copy = tmp_path / "edited.h5"
    copy.write_bytes(open(reference_store.store, "rb").read())
    with h5py.File(copy, "a") as handle:
        handle.attrs["weights"] = "imagenet"
    with pytest.raises(CacheError, match="edited.h5: provenance does not match.*weights"):
        open_store(copy, key)


def test_edited_or_truncated_store_is_detected_and_rebuilt_on_request(small_dataset, reference_store, tmp_path):
    cache = tmp_path / "cache"
    summary = extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, progress=False)
    with h5py.File(summary.store, "a") as handle:
        handle["features"][3, 7] += 1.0
    with pytest.raises(CacheError, match="checksum mismatch"):
        extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, progress=False)
    data = open(summary.store, "rb").read()
    with open(summary.store, "wb") as handle:
        handle.write(data[: len(data) // 2])
    with pytest.raises(CacheError, match="damaged feature store"):
        extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, progress=False)
    rebuilt = extract(small_dataset, RANDOM, batch_size=4, cache_dir=cache, rebuild=True, progress=False)
    np.testing.assert_array_equal(open_store(rebuilt.store).features, open_store(reference_store.store).features)


@pytest.fixture
def data_with_bad_files(small_data, tmp_path):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(small_data, folder)
    (folder / "images" / "zero.jpg").write_bytes(b"")
    (folder / "images" / "page.jpg").write_text("<html>404</html>")
    with open(folder / "metadata.csv", "a") as handle:
        handle.write("images/zero.jpg,normal,normal,z1,PA,test,,,,,,,,\n")
        handle.write("images/page.jpg,covid,covid,z2,PA,test,,,,,,,,\n")
    return folder


def test_bad_files_are_skipped_listed_and_stored(data_with_bad_files, tmp_path):
    dataset = load_dataset(data_with_bad_files)
    summary = extract(dataset, RANDOM, batch_size=8, cache_dir=tmp_path / "c", progress=False)
    reasons = {s.image_id: s.reason for s in summary.skipped_files}
    assert summary.images == 36 and summary.skipped == 2
    assert "empty file" in reasons["images/zero.jpg"] and "not an image" in reasons["images/page.jpg"]
    assert dict(open_store(summary.store).skipped) == reasons


def test_strict_stops_before_writing_anything(data_with_bad_files, tmp_path):
    dataset = load_dataset(data_with_bad_files)
    cache = tmp_path / "c"
    with pytest.raises(DatasetError, match=r"strict: 2 image\(s\).*\n.*page.jpg: not an image.*\n.*zero.jpg: empty"):
        extract(dataset, RANDOM, cache_dir=cache, strict=True, progress=False)
    assert not list(cache.rglob("*.h5"))


def test_second_writer_is_refused_while_the_lock_is_held(small_dataset, tmp_path):
    path = RANDOM.key(small_dataset.id).path(tmp_path)
    chunk_folder(path).mkdir(parents=True)
    with FileLock(str(lock_path(path))):
        with pytest.raises(CacheError, match="another featx process is extracting this store.*--lock-timeout"):
            extract(small_dataset, RANDOM, cache_dir=tmp_path, progress=False, lock_timeout=0)


def test_a_finished_run_leaves_only_its_store(reference_store):
    folder = os.path.dirname(reference_store.store)
    assert os.listdir(folder) == [os.path.basename(reference_store.store)]


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused_before_any_file_is_written(small_dataset, tmp_path, batch_size):
    with pytest.raises(ParameterError, match=rf"batch_size must be a whole number within 1\.\.65536, got {batch_size}"):
        extract(small_dataset, RANDOM, batch_size=batch_size, cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_cli_json_summary_and_clean_errors(small_data, tmp_path, capsys):
    code = main(
        [
            "extract",
            "--model",
            "efficientnet_lite0",
            "--weights",
            "none",
            "--input-size",
            "64x64",
            "--data",
            str(small_data),
            "--cache",
            str(tmp_path),
            "--json",
            "--quiet",
        ]
    )
    summary = json.loads(capsys.readouterr().out)  # under --json stdout holds the JSON object alone
    assert code == 0 and summary["images"] == 36 and summary["skipped"] == 0 and summary["images_per_s"] > 0
    assert os.path.exists(summary["store"]) and summary["decoded_images"] == 36 and summary["resumed_images"] == 0
    assert summary["pixel_cache"] == str(tmp_path / "pixels" / "64x64-jpeg-draft") and summary["pixel_cache_bytes"] > 0
    assert main(["extract", "--model", "mobilenet", "--data", str(small_data)]) == 1
    assert "Unknown backbone 'mobilenet'. Available:" in capsys.readouterr().err
