"""Decoding in worker processes gives exactly the pixels of threads and of a plain loop."""

import numpy as np
import pytest
from PIL import Image

from featx.data import images, pool
from featx.data.pool import DecodePool
from tests.hostile import dicom, gradient


@pytest.fixture(scope="module")
def files(small_data, tmp_path_factory):
    """The 36 real radiographs, and files of every other kind: colour, CMYK, DICOM, broken."""
    extra = tmp_path_factory.mktemp("pool_files")
    colour = np.stack([gradient(300, 200), gradient(300, 200)[::-1], np.full((300, 200), 90, np.uint8)], axis=2)
    Image.fromarray(colour).save(extra / "colour.jpg", quality=90)
    Image.fromarray(colour).save(extra / "colour.png")
    Image.new("CMYK", (160, 120), (0, 255, 255, 0)).save(extra / "cmyk.jpg")
    dicom(extra / "scan.dcm", (gradient(80, 60).astype(np.uint16) * 16))
    (extra / "empty.jpg").write_bytes(b"")
    (extra / "page.jpg").write_text("<html>404</html>")
    return sorted((small_data / "images").glob("*")) + sorted(extra.glob("*"))


def _decode_all(files, workers, size=(64, 64), mask=None):
    results = []
    with DecodePool(size, mask=mask, workers=workers, capacity=8, depth=2) as decoding:
        for start in range(0, len(files), 8):
            results += decoding.submit(files[start : start + 8]).result()
    return results


def _assert_same(first, second):
    assert len(first) == len(second)
    for (pixels_a, reason_a), (pixels_b, reason_b) in zip(first, second, strict=True):
        assert reason_a == reason_b
        if pixels_a is None:
            assert pixels_b is None
        else:
            assert pixels_a.dtype == np.uint8 and pixels_a.shape == pixels_b.shape
            np.testing.assert_array_equal(pixels_a, pixels_b)


@pytest.mark.parametrize("mask", [None, "lungs"])
def test_processes_and_threads_give_identical_pixels(files, mask):
    in_processes = _decode_all(files, workers=2, mask=mask)
    in_threads = _decode_all(files, workers=0, mask=mask)
    _assert_same(in_processes, in_threads)
    one_by_one = []
    for path in files:
        try:
            one_by_one.append((images.load_compact(path, (64, 64), mask), None))
        except images.ImageDecodeError as error:
            one_by_one.append((None, error.reason))
    _assert_same(in_processes, one_by_one)
    reasons = [reason for _, reason in in_processes if reason]
    assert len(reasons) == 2 and "empty file" in reasons[0] + reasons[1]
    radiographs = [pixels for pixels, _ in in_processes[:36]]
    assert all(pixels.shape == (64, 64) for pixels in radiographs)  # grayscale kept as one channel
    assert {pixels.shape for pixels, _ in in_processes[36:] if pixels is not None} == {(64, 64), (64, 64, 3)}


def test_without_shared_memory_pixels_come_back_pickled_and_the_same(files, monkeypatch):
    monkeypatch.setattr(pool, "_shared_block", lambda size: None)
    _assert_same(_decode_all(files[30:], workers=2), _decode_all(files[30:], workers=0))


def test_a_pool_refuses_more_than_it_can_hold(files):
    with DecodePool((32, 32), workers=0, capacity=2, depth=1) as decoding:
        with pytest.raises(ValueError, match="3 images submitted at once, capacity 2"):
            decoding.submit(files[:3])
        ticket = decoding.submit(files[:2])
        with pytest.raises(RuntimeError, match="collect a ticket first"):
            decoding.submit(files[2:4])
        assert len(ticket.result()) == 2
