"""Hostile bytes fuzzed into the decoder: every input decodes or raises featx's own error."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featx.data import images
from featx.exceptions import ImageDecodeError
from tests.realdata import SHARED_DATA, requires_data

REAL_JPEG = next((SHARED_DATA / "images").glob("kermany_*.jpg"), None) if SHARED_DATA.exists() else None


def _decode_or_featx_error(path):
    try:
        pixels = images.decode(path)
    except ImageDecodeError as error:
        assert error.path == str(path) and error.reason
        return None
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3)
    return pixels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_random_bytes_decode_or_raise_featx_error(tmp_path, data):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    _decode_or_featx_error(path)


@requires_data
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=20),
    cut=st.one_of(st.none(), st.integers(0, 10**9)),
)
def test_mutated_real_jpegs_decode_or_raise_featx_error(tmp_path, edits, cut):
    data = bytearray(REAL_JPEG.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    path = tmp_path / "mutated.jpg"
    path.write_bytes(bytes(data))
    _decode_or_featx_error(path)


@requires_data
def test_wrong_extension_is_decoded_by_content(tmp_path):
    png_named_jpg = tmp_path / "really_a.png.jpg"
    from PIL import Image

    Image.open(REAL_JPEG).save(png_named_jpg, format="PNG")
    assert images.decode(png_named_jpg).shape == images.decode(REAL_JPEG).shape
