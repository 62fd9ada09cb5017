"""The pixel cache on real radiographs: decode once per size, shared by backbones and datasets, refused
when its provenance does not match, a damaged chunk decoded again."""

import json

import numpy as np
import pytest

from featx.data.dataset import dataset_from_paths
from featx.exceptions import CacheError
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.pixels import PixelCache, PixelKey, hold_pixels
from featx.features.store import open_store
from featx.fileio import read_arrays_verified

LITE0 = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(64, 64))
MOBILENET = FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=(64, 64))


@pytest.fixture(scope="module")
def warm_cache(small_dataset, tmp_path_factory):
    """A cache folder where Lite0 was extracted: the pixel cache holds every image at 64x64."""
    cache = tmp_path_factory.mktemp("warm")
    first = extract(small_dataset, LITE0, batch_size=4, cache_dir=cache, progress=False)
    assert first.decoded_images == 36
    return cache


def test_a_second_backbone_at_the_same_size_decodes_no_image(small_dataset, warm_cache, tmp_path):
    second = extract(small_dataset, MOBILENET, batch_size=4, cache_dir=warm_cache, progress=False)
    assert second.decoded_images == 0 and second.pixel_cache == str(warm_cache / "pixels" / "64x64-jpeg-draft")
    decoded = extract(small_dataset, MOBILENET, batch_size=4, cache_dir=tmp_path, progress=False, pixel_cache=False)
    assert decoded.decoded_images == 36 and decoded.pixel_cache is None and not (tmp_path / "pixels").exists()
    np.testing.assert_array_equal(open_store(second.store).features, open_store(decoded.store).features)


def test_another_dataset_of_the_same_images_reads_their_pixels(small_dataset, warm_cache):
    part = dataset_from_paths(list(small_dataset.table["path"][::3]))
    summary = extract(part, LITE0, batch_size=4, cache_dir=warm_cache, progress=False)
    assert part.id != small_dataset.id and summary.images == 12 and summary.decoded_images == 0


def test_grayscale_pixels_are_kept_in_one_channel(small_dataset, warm_cache):
    cache = PixelCache(warm_cache, PixelKey(input_size=(64, 64), mask=None, decoder="jpeg-draft"))
    found = cache.read(small_dataset.table["content_hash"])
    assert len(found) == 36 and {pixels.shape for pixels, _ in found.values()} == {(64, 64)}
    assert cache.path.joinpath("pixels.json").exists()


def test_provenance_mismatch_is_refused_and_rebuild_redoes_the_cache(small_dataset, warm_cache, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(warm_cache / "pixels", cache / "pixels")
    manifest = cache / "pixels" / "64x64-jpeg-draft" / "pixels.json"
    recorded = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**recorded, "pillow": "9.0.0"}))
    with pytest.raises(CacheError, match="64x64-jpeg-draft: pixel cache provenance does not match; refused.*pillow"):
        extract(small_dataset, MOBILENET, batch_size=4, cache_dir=cache, progress=False)
    assert not list(cache.rglob("*.h5"))
    rebuilt = extract(small_dataset, MOBILENET, batch_size=4, cache_dir=cache, progress=False, rebuild=True)
    assert rebuilt.decoded_images == 36 and json.loads(manifest.read_text()) == recorded


def test_a_damaged_pixel_chunk_is_deleted_and_its_images_decoded_again(small_dataset, warm_cache, tmp_path, caplog):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(warm_cache / "pixels", cache / "pixels")
    chunk = sorted((cache / "pixels" / "64x64-jpeg-draft").glob("*.npz"))[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    summary = extract(small_dataset, MOBILENET, batch_size=4, cache_dir=cache, progress=False)
    assert summary.decoded_images == 4 and "damaged pixel chunk" in caplog.text
    read_arrays_verified(chunk)  # written again, intact, from the images decoded anew
    reference = extract(small_dataset, MOBILENET, batch_size=4, cache_dir=warm_cache, progress=False)
    np.testing.assert_array_equal(open_store(summary.store).features, open_store(reference.store).features)


def test_held_pixels_of_an_extracted_record_are_read_not_decoded(small_dataset, warm_cache):
    paths, hashes = small_dataset.table["path"], small_dataset.table["content_hash"]
    cached = hold_pixels(paths, hashes, LITE0.image, cache_dir=warm_cache)
    assert cached.decoded == 0 and cached.positions == list(range(36)) and cached.failures == []
    fresh = hold_pixels(paths, hashes, LITE0.image, workers=0)  # no cache: every image decoded, nothing kept
    assert fresh.decoded == 36
    for read, decoded in zip(cached.images, fresh.images, strict=True):
        np.testing.assert_array_equal(read, decoded)
    assert cached.rgb([0, 5]).shape == (2, 64, 64, 3)


def test_held_pixels_name_the_files_that_do_not_decode(small_dataset, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(small_dataset.table["path"].iat[0], "rb").read()[:300])
    paths = [small_dataset.table["path"].iat[1], str(broken)]
    held = hold_pixels(paths, ["a" * 64, "b" * 64], LITE0.image, cache_dir=tmp_path / "cache", workers=0)
    assert held.positions == [0] and len(held.failures) == 1 and held.failures[0][0] == 1
    assert "truncated" in held.failures[0][1]
