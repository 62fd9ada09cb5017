"""Domains of featx's numbers: the bounds every option and every record read back is checked
against, and the memory a request needs, estimated before anything is allocated."""

from __future__ import annotations

import os

from featx.exceptions import ResourceError

MAX_INPUT_SIDE = 4096
"""Pixels on either side of an input size (the paper's is 200x266; 4096 holds a full radiograph)."""
MIN_INPUT_SIDE = 8
MAX_BATCH_SIZE = 1 << 16
MAX_SEED = (1 << 32) - 1
"""NumPy's legacy seeds are 32-bit."""
MAX_HEAD_WIDTH = 1 << 16
"""Units in one dense layer of a head (the paper's widest is 2500)."""


def available_memory() -> int:
    """Bytes of memory this process can still use: ``MemAvailable`` (Linux), else physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed: int, what: str, advice: str) -> None:
    """Refuse a request whose estimated memory exceeds what is available, with both figures.

    Parameters
    ----------
    needed : int
        Estimated bytes.
    what : str
        What needs it (``"a batch of 64 images at 4096x4096"``).
    advice : str
        What to change (``"use a smaller --batch-size or --input-size"``).

    Raises
    ------
    ResourceError
    """
    available = available_memory()
    if needed > available:
        raise ResourceError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory and "
            f"{available / 2**30:.1f} GiB is available; {advice}"
        )
