"""Decode radiographs (PNG, JPEG, DICOM) into pixels and letterbox them; pure, no Keras.

Two decoders (:data:`DECODERS`) give the letterboxed pixels: ``plain`` decodes every file at
full size; ``jpeg-draft`` (the default) lets libjpeg scale a JPEG down in the DCT domain (by 1/2,
1/4 or 1/8) to no less than twice the letterbox size before resampling, which is about three
times faster on multi-megapixel radiographs and differs from ``plain`` by a fraction of a grey
level on average. The decoder is part of every cache key, so their outputs never mix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featx.exceptions import ImageDecodeError, UnknownNameError

DECODERS = ("jpeg-draft", "plain")
DEFAULT_DECODER = "jpeg-draft"
DRAFT_GAP = 2  # a drafted JPEG keeps at least twice the letterbox size, as Pillow's thumbnail does
DEFAULT_SIZE = (200, 266)  # (width, height), as in the paper
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
_DICOM_MAGIC_OFFSET = 128
_EXIF_ORIENTATION = 0x0112


def decode(path) -> np.ndarray:
    """Decode an image file into a uint8 array, (H, W) for grayscale or (H, W, 3) for colour.

    PNG and JPEG of any mode (8/16-bit grayscale, RGB, RGBA, palette, CMYK) are read with
    Pillow, EXIF orientation applied, transparency composited onto black; DICOM is read with
    pydicom (rescale slope/intercept, VOI LUT, MONOCHROME1 inverted).  Wide-range pixels
    (16-bit, float) are stretched from their own minimum to maximum.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray of uint8

    Raises
    ------
    ImageDecodeError
        With the file name and the reason (empty, truncated, not an image, too large, ...).
    """
    return _decode(Path(path), None)[0]


def _decode(path: Path, draft_size) -> tuple[np.ndarray, tuple | None]:
    """Pixels and, for a JPEG drafted towards ``draft_size`` (width, height), the box they cover."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError as error:
        raise ImageDecodeError(path, f"cannot be read ({error.strerror or error})") from None
    if not head:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    if head[_DICOM_MAGIC_OFFSET:] == b"DICM":
        return _decode_dicom(path), None
    return _decode_pillow(path, draft_size)


def _draft(image: Image.Image, size) -> tuple | None:
    """Ask libjpeg for a DCT-domain downscale that keeps ``DRAFT_GAP`` times the letterboxed size.

    Only for JPEGs without an EXIF rotation (whose box would move); returns the box of the
    drafted pixels that holds the image (their last row or column may be partly outside it), or
    None when that is all of them.
    """
    if image.format != "JPEG" or image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        return None
    scale = min(size[0] / image.width, size[1] / image.height) * DRAFT_GAP
    wanted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    drafted = image.draft(image.mode, wanted)
    return None if drafted is None or drafted[1][2:] == image.size else drafted[1]


def _decode_pillow(path: Path, draft_size) -> tuple[np.ndarray, tuple | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageDecodeError(
                        path,
                        f"image too large ({image.width}x{image.height} pixels, limit {MAX_PIXELS}); "
                        "decompression bomb refused",
                    )
                box = _draft(image, draft_size) if draft_size is not None else None
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_uint8(image), box
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image (format not recognised as PNG, JPEG or DICOM)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(path, f"image too large, decompression bomb refused ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(path, f"corrupt or truncated image ({error})") from None


def _to_uint8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _stretch(np.asarray(image, dtype=np.float64))
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "RGBA", "PA"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba).convert("RGB" if mode != "LA" else "L")
        mode = image.mode
    if mode == "L":
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))


def _stretch(pixels: np.ndarray) -> np.ndarray:
    """Map the array's own range onto 0..255 (constant images become black)."""
    low, high = float(np.min(pixels)), float(np.max(pixels))
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for bad files
        raise ImageDecodeError(path, f"unreadable DICOM ({error})") from None
    if "PixelData" not in dataset:
        raise ImageDecodeError(path, "DICOM file has no pixel data")
    try:
        pixels = dataset.pixel_array
    except Exception as error:
        raise ImageDecodeError(path, f"DICOM pixel data cannot be decoded ({error})") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return _stretch(pixels.astype(np.float64))
    if pixels.ndim != 2:
        raise ImageDecodeError(path, f"DICOM with {pixels.ndim}-D pixel data (frames?) is not supported")
    values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float64)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        values = values.max() - values
    return _stretch(values)


def letterbox(pixels: np.ndarray, size=DEFAULT_SIZE) -> np.ndarray:
    """Resize without distortion into (width, height) = size, padding with black.

    Parameters
    ----------
    pixels : numpy.ndarray of uint8
        (H, W) grayscale or (H, W, 3) RGB.
    size : tuple of int
        Target (width, height).

    Returns
    -------
    numpy.ndarray of uint8, shape (height, width, 3)
        The image centred; grayscale is replicated into three channels.
    """
    return as_rgb(letterbox_compact(pixels, size))


def letterbox_compact(pixels: np.ndarray, size=DEFAULT_SIZE, box=None) -> np.ndarray:
    """:func:`letterbox` with one channel kept for grayscale (and for RGB whose channels are equal).

    The resized image is centred with the odd padding pixel, if any, after it (``PIL.ImageOps.pad``
    gives the same resized pixels but rounds the offset half to even, one pixel off in about one
    case in six).

    Parameters
    ----------
    pixels : numpy.ndarray of uint8
    size : tuple of int
    box : tuple of float, optional
        The region of ``pixels`` that holds the image (a drafted JPEG's), default all of it.

    Returns
    -------
    numpy.ndarray of uint8, (height, width) or (height, width, 3)
    """
    width, height = size
    src_w, src_h = (box[2] - box[0], box[3] - box[1]) if box is not None else pixels.shape[1::-1]
    scale = min(width / src_w, height / src_h)
    new_w = max(1, min(width, round(src_w * scale)))
    new_h = max(1, min(height, round(src_h * scale)))
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.BILINEAR, box=box))
    canvas = np.zeros((height, width) + resized.shape[2:], dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    if canvas.ndim == 3 and (canvas[..., 1:] == canvas[..., :1]).all():
        return np.ascontiguousarray(canvas[..., 0])
    return canvas


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W) grayscale replicated into (H, W, 3); RGB returned as it is."""
    if pixels.ndim == 3:
        return pixels
    return fill_rgb(np.empty((*pixels.shape, 3), dtype=pixels.dtype), pixels)


def fill_rgb(target: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Write ``pixels``, (H, W) grayscale or (H, W, 3) RGB, into ``target`` (H, W, 3), grayscale into each
    channel, and return ``target``. Channel by channel: numpy's broadcast over a last axis of 3 copies about
    five times slower, which on two cores is time taken from the backbone."""
    if pixels.ndim == 3:
        target[...] = pixels
        return target
    for channel in range(target.shape[-1]):
        target[:, :, channel] = pixels
    return target


LUNG_FIELD = ((0.15, 0.85), (0.15, 0.90))  # (x from, to), (y from, to) as fractions of the radiograph


def mask_lung_field(pixels: np.ndarray) -> np.ndarray:
    """Black out the central lung field of a radiograph (the confound audit's control).

    The rectangle spans 15-85% of the width and 15-90% of the height, which covers both lungs
    on a frontal chest film and leaves borders, shoulders, labels and corners visible.
    """
    (x0, x1), (y0, y1) = LUNG_FIELD
    height, width = pixels.shape[:2]
    masked = pixels.copy()
    masked[int(y0 * height) : int(np.ceil(y1 * height)), int(x0 * width) : int(np.ceil(x1 * width))] = 0
    return masked


MASKS = {"lungs": mask_lung_field}


def load(path, size=DEFAULT_SIZE, mask: str | None = None, decoder: str = DEFAULT_DECODER) -> np.ndarray:
    """Decode, optionally mask (a name from :data:`MASKS`), and letterbox one file: (height, width, 3) uint8."""
    return as_rgb(load_compact(path, size, mask, decoder))


def load_compact(path, size=DEFAULT_SIZE, mask: str | None = None, decoder: str = DEFAULT_DECODER) -> np.ndarray:
    """:func:`load` with one channel for grayscale content: (height, width) or (height, width, 3) uint8.

    Raises
    ------
    UnknownNameError
        When ``decoder`` is not one of :data:`DECODERS`.
    ImageDecodeError
    """
    if decoder not in DECODERS:
        raise UnknownNameError("decoder", decoder, DECODERS)
    pixels, box = _decode(Path(path), size if decoder == "jpeg-draft" else None)
    if mask is not None:
        pixels = MASKS[mask](pixels)
    return letterbox_compact(pixels, size, box)
