import numpy as np
import pytest
from PIL import Image

from featx.data import images
from featx.exceptions import ImageDecodeError, UnknownNameError
from tests.hostile import dicom, gradient, png_with_header_size
from tests.realdata import SHARED_DATA, requires_data


def test_letterbox_keeps_aspect_and_pads_black():
    wide = np.full((50, 200), 255, dtype=np.uint8)  # 4:1 landscape
    out = images.letterbox(wide, (100, 100))
    assert out.shape == (100, 100, 3)
    rows_with_content = np.where(out[:, :, 0].max(axis=1) > 0)[0]
    assert len(rows_with_content) == 25  # 200x50 scaled by 0.5 -> 100x25
    assert out[: rows_with_content[0]].max() == 0 and out[rows_with_content[-1] + 1 :].max() == 0
    assert (out[rows_with_content] == 255).all()


def test_letterbox_default_size_is_the_papers_200x266():
    out = images.letterbox(gradient(), images.DEFAULT_SIZE)
    assert out.shape == (266, 200, 3)


@requires_data
def test_real_radiograph_decodes_and_letterboxes():
    path = next((SHARED_DATA / "images").glob("kermany_*.jpg"))
    pixels = images.decode(path)
    out = images.load(path, (200, 266))
    assert pixels.dtype == np.uint8 and pixels.ndim == 2
    assert out.shape == (266, 200, 3) and out.std() > 10
    assert (out[..., 0] == out[..., 2]).all()  # grayscale replicated


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_sixteen_bit_png_is_stretched_to_full_range(tmp_path):
    ramp = (np.arange(64).reshape(8, 8) * 40 + 1000).astype(np.uint16)
    path = _save(tmp_path, "deep.png", Image.fromarray(ramp))
    pixels = images.decode(path)
    assert pixels.min() == 0 and pixels.max() == 255 and pixels.dtype == np.uint8


def test_rgba_and_palette_transparency_composite_onto_black(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    pixels = images.decode(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert (pixels[:2] == 200).all() and (pixels[2:] == 0).all()
    palette = Image.fromarray(rgba, "RGBA").convert("P")
    palette.info["transparency"] = 0
    assert images.decode(_save(tmp_path, "p.png", palette, transparency=0)).shape == (4, 4, 3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = _save(tmp_path, "cmyk.jpg", Image.new("CMYK", (16, 12), (0, 255, 255, 0)))
    pixels = images.decode(path)
    assert pixels.shape == (12, 16, 3) and pixels[..., 0].mean() > 200 and pixels[..., 1].mean() < 60


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(gradient(40, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(tmp_path, "rot.jpg", image, exif=exif)
    assert images.decode(path).shape == (30, 40)


def test_dicom_rescale_and_monochrome1_inversion(tmp_path):
    ramp = np.tile(np.arange(0, 4000, 250, dtype=np.uint16), (4, 1))
    plain = images.decode(dicom(tmp_path / "m2.dcm", ramp))
    inverted = images.decode(dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1", slope=2.0, intercept=-10))
    assert plain[0, 0] == 0 and plain[0, -1] == 255
    assert inverted[0, 0] == 255 and inverted[0, -1] == 0


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("page.jpg", b"<html><body>Not found</body></html>", "not an image"),
        ("noise.png", bytes(range(256)) * 4, "not an image"),
    ],
)
def test_undecodable_bytes_name_the_file_and_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as caught:
        images.decode(path)
    assert caught.value.path == str(path)


@requires_data
def test_truncated_real_jpeg_is_refused(tmp_path):
    source = next((SHARED_DATA / "images").glob("cohen_*.jpg")).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(source[: len(source) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        images.decode(path)


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    path = png_with_header_size(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageDecodeError, match="too large"):
        images.decode(path)


def test_one_pixel_image_still_letterboxes(tmp_path):
    path = _save(tmp_path, "dot.png", Image.new("L", (1, 1), 255))
    out = images.load(path, (32, 32))
    assert out.shape == (32, 32, 3) and out.max() == 255


def test_dicom_without_pixel_data(tmp_path):
    path = dicom(tmp_path / "header.dcm", np.zeros((2, 2)), with_pixels=False)
    with pytest.raises(ImageDecodeError, match="no pixel data"):
        images.decode(path)


def test_lung_mask_blackens_the_central_field_only():
    pixels = np.full((100, 80), 200, dtype=np.uint8)
    masked = images.mask_lung_field(pixels)
    assert (masked[15:90, 12:68] == 0).all()
    assert (masked[:15] == 200).all() and (masked[90:] == 200).all()
    assert (masked[:, :12] == 200).all() and (masked[:, 68:] == 200).all()


@requires_data
def test_lung_mask_survives_letterboxing_on_a_real_radiograph():
    """The field is blackened before letterboxing: the centre is black, the rows above it are the image's."""
    portrait = (path for path in sorted((SHARED_DATA / "images").glob("cohen_*.jpg")) if _taller_than_wide(path))
    path = next(portrait)  # so that the image, not padding, fills the top rows of the square letterbox
    plain, masked = images.load(path, (64, 64)), images.load(path, (64, 64), mask="lungs")
    centre = (slice(28, 36), slice(28, 36))
    assert plain[centre].max() > 0 and masked[centre].max() == 0
    assert plain[:4, 24:40].min() > 0  # image content above the lung field
    np.testing.assert_array_equal(masked[:4], plain[:4])


def _taller_than_wide(path) -> bool:
    with Image.open(path) as image:
        return image.height > image.width


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    """A 2400x1800 grayscale JPEG with fine detail, like a full-size radiograph."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1800, 0:2400]
    pixels = (128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0) + rng.normal(0, 12, (1800, 2400))).clip(0, 255)
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
    return path


def test_plain_decoder_is_the_letterbox_of_the_full_image(large_jpeg):
    plain = images.load(large_jpeg, (200, 266), decoder="plain")
    np.testing.assert_array_equal(plain, images.letterbox(images.decode(large_jpeg), (200, 266)))


def test_draft_decoder_scales_large_jpegs_in_the_dct_domain_and_stays_close(large_jpeg):
    with Image.open(large_jpeg) as image:
        box = images._draft(image, (200, 266))
        assert image.size == (600, 450) and box is None  # 1/4 of 2400x1800: still twice the letterbox
    draft = images.load(large_jpeg, (200, 266), decoder="jpeg-draft")
    plain = images.load(large_jpeg, (200, 266), decoder="plain")
    difference = np.abs(draft.astype(int) - plain.astype(int))
    assert draft.shape == plain.shape and (draft[:, :, 0] == 0).sum() == (plain[:, :, 0] == 0).sum()
    assert difference.max() <= 16 and difference.mean() < 1.0


def test_draft_leaves_small_files_and_other_formats_alone(tmp_path):
    path = _save(tmp_path, "small.jpg", Image.fromarray(gradient(300, 200)), quality=95)
    png = _save(tmp_path, "large.png", Image.fromarray(gradient(900, 700)))
    for file in (path, png):
        np.testing.assert_array_equal(images.load(file, (200, 266)), images.load(file, (200, 266), decoder="plain"))


def test_unknown_decoder_is_refused(tmp_path):
    path = _save(tmp_path, "a.png", Image.fromarray(gradient()))
    with pytest.raises(UnknownNameError, match="Unknown decoder 'turbo'. Available: jpeg-draft, plain"):
        images.load(path, (32, 32), decoder="turbo")


@requires_data
def test_letterbox_has_imageops_pads_pixels_but_centres_the_odd_pixel_consistently():
    """ImageOps.pad resizes identically, then rounds the offset half to even; featx always floors it."""
    from PIL import ImageOps

    for path in sorted((SHARED_DATA / "images").glob("*.jpg"))[:40]:
        pixels = images.decode(path)
        ours = images.letterbox_compact(pixels, (97, 33))
        padded = np.asarray(ImageOps.pad(Image.fromarray(pixels), (97, 33), Image.BILINEAR, color=0))
        if not np.array_equal(ours, padded):
            shifted = np.roll(ours, 1, axis=1)  # pad puts the odd pixel before the image when the half rounds up
            np.testing.assert_array_equal(shifted, padded)
