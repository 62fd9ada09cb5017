"""DICOM as hospitals export it: every compressed transfer syntax featx promises decodes (pydicom's own files)."""

import numpy as np
import pytest

from featx.data import images

pydicom_data = pytest.importorskip("pydicom.data")

SYNTAXES = {
    "JPEG Lossless, process 14": "SC_rgb_jpeg_gdcm.dcm",
    "JPEG-LS lossless": "MR_small_jpeg_ls_lossless.dcm",
    "JPEG-LS near-lossless": "JPEGLSNearLossless_16.dcm",
    "JPEG 2000 lossless": "MR_small_jp2klossless.dcm",
    "JPEG 2000": "JPEG2000.dcm",
    "JPEG Extended, 12-bit": "JPGExtended.dcm",
    "RLE lossless": "MR_small_RLE.dcm",
}


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_compressed_dicom_decodes_to_full_range_pixels(syntax):
    import pydicom

    path = pydicom_data.get_testdata_file(SYNTAXES[syntax])
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID.is_compressed
    pixels = images.decode(path)
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3) and min(pixels.shape[:2]) >= 10
    assert pixels.min() == 0 and pixels.max() == 255 and pixels.std() > 10
    assert images.load(path, (64, 64)).shape == (64, 64, 3)
