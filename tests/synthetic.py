"""Synthetic radiographs: a data folder that needs nothing from ../shared, for the fast test tier.

Every image is drawn from its seed alone (same seed, same bytes): a dark field, a bright body
ellipse, two lung fields crossed by ribs, a spine, and noise. The classes differ where a head can
see it (mean brightness and texture of the lung fields):

- ``normal``: clear (dark) lungs;
- ``pneumonia``: one lung field filled by a dense lobar consolidation (``bacterial`` on the left,
  ``viral`` on the right, fainter);
- ``covid``: patchy opacities in the lower, outer parts of both lungs.

:func:`write_dataset` writes the PNGs and a ``metadata.csv`` in the format
:func:`featx.data.dataset.load_dataset` reads: ``filename``, ``label``, ``subtype``, ``patient_id``
(two images per patient), ``source`` (``repo@commit:path``, two collections so the audit has sources
to tell apart), ``view``, ``age`` and ``sex``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SUBTYPES = {"covid": "covid", "bacterial": "pneumonia", "viral": "pneumonia", "normal": "normal"}
"""Subtype -> label, as in the real data's manifest."""
SIZE = (72, 60)
"""(width, height) of a synthetic radiograph: not square, so letterboxing is exercised."""
SOURCES = ("synthetic-a@0000000", "synthetic-b@0000000")


def radiograph(subtype: str, seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """One grayscale radiograph of ``subtype`` (a key of :data:`SUBTYPES`), as ``uint8`` (height, width).

    Parameters
    ----------
    subtype : str
    seed : int
        The only source of variation: position, size, ribs, lesions and noise follow from it.
    size : tuple of int
        (width, height); default :data:`SIZE`.
    """
    if subtype not in SUBTYPES:
        raise ValueError(f"unknown subtype {subtype!r}; one of {', '.join(SUBTYPES)}")
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    centre_x, centre_y = 0.5 + rng.uniform(-0.04, 0.04), 0.52 + rng.uniform(-0.04, 0.04)
    body = ((x - centre_x) / 0.42) ** 2 + ((y - centre_y) / 0.46) ** 2 <= 1
    image = np.where(body, 0.72, 0.05)
    lungs = []
    for side in (-1, 1):
        lung = ((x - centre_x - side * 0.17) / 0.13) ** 2 + ((y - centre_y + 0.02) / 0.32) ** 2 <= 1
        lungs.append(lung)
        image = np.where(lung, 0.22, image)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (y * rng.uniform(7.5, 8.5) + 0.6 * np.abs(x - centre_x)))
    image += np.where(lungs[0] | lungs[1], 0.12 * ribs, 0)
    image = np.where(body & (np.abs(x - centre_x) < 0.035), 0.85, image)  # the spine
    label = SUBTYPES[subtype]
    if label == "pneumonia":
        lung = lungs[0] if subtype == "bacterial" else lungs[1]
        lobe = lung & (y > centre_y - rng.uniform(0.05, 0.15))
        image = np.where(lobe, image + (0.45 if subtype == "bacterial" else 0.32), image)
    elif label == "covid":
        for _ in range(int(rng.integers(6, 10))):
            side = rng.choice((-1, 1))
            spot_x = centre_x + side * rng.uniform(0.2, 0.28)
            spot_y = centre_y + rng.uniform(0.0, 0.25)
            radius = rng.uniform(0.04, 0.08)
            spot = np.exp(-(((x - spot_x) ** 2 + (y - spot_y) ** 2) / (2 * radius**2)))
            image += 0.35 * spot * (lungs[0] | lungs[1])
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_dataset(folder, per_subtype: dict, seed: int = 0, prefix: str = "syn") -> Path:
    """Write synthetic radiographs and their ``metadata.csv`` into ``folder``.

    Parameters
    ----------
    folder : str or Path
        Created if missing; images go to ``folder/images``.
    per_subtype : dict
        Subtype (a key of :data:`SUBTYPES`) -> how many images.
    seed : int
        Images of different seeds (and prefixes) differ; the same arguments write the same bytes.
    prefix : str
        Start of every file name and patient id.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for subtype, count in per_subtype.items():
        for index in range(count):
            image_seed = int(np.random.SeedSequence([seed, list(SUBTYPES).index(subtype), index]).generate_state(1)[0])
            filename = f"images/{prefix}_{subtype}_{index:03d}.png"
            Image.fromarray(radiograph(subtype, image_seed)).save(folder / filename)
            rows.append(
                {
                    "filename": filename,
                    "label": SUBTYPES[subtype],
                    "subtype": subtype,
                    "patient_id": f"{prefix}-{subtype}-{index // 2}",
                    "view": "PA",
                    "source": f"{SOURCES[index % 2]}:{filename}",
                    "age": str(20 + (image_seed % 60)),
                    "sex": "MF"[index % 2],
                }
            )
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder
