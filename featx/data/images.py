"""Decode radiographs (PNG, JPEG, DICOM) into pixels and letterbox them; pure, no Keras."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featx.exceptions import ImageDecodeError

DEFAULT_SIZE = (200, 266)  # (width, height), as in the paper
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
_DICOM_MAGIC_OFFSET = 128


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
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError as error:
        raise ImageDecodeError(path, f"cannot be read ({error.strerror or error})") from None
    if not head:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    if head[_DICOM_MAGIC_OFFSET:] == b"DICM":
        return _decode_dicom(path)
    return _decode_pillow(path)


def _decode_pillow(path: Path) -> np.ndarray:
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
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_uint8(image)
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
    width, height = size
    src_h, src_w = pixels.shape[:2]
    scale = min(width / src_w, height / src_h)
    new_w = max(1, min(width, round(src_w * scale)))
    new_h = max(1, min(height, round(src_h * scale)))
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.BILINEAR))
    canvas = np.zeros((height, width) + resized.shape[2:], dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    if canvas.ndim == 2:
        canvas = np.repeat(canvas[:, :, None], 3, axis=2)
    return canvas


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


def load(path, size=DEFAULT_SIZE, mask: str | None = None) -> np.ndarray:
    """Decode, optionally mask (a name from :data:`MASKS`), and letterbox one file: (height, width, 3) uint8."""
    pixels = decode(path)
    if mask is not None:
        pixels = MASKS[mask](pixels)
    return letterbox(pixels, size)
