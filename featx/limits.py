"""Domains of featx's numbers: the bounds every option and every record read back is checked
against, and the memory a request needs, estimated before anything is allocated."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

from featx.exceptions import ParameterError, ResourceError

MAX_INPUT_SIDE = 4096
"""Pixels on either side of an input size (the paper's is 200x266; 4096 holds a full radiograph)."""
MIN_INPUT_SIDE = 8
MAX_BATCH_SIZE = 1 << 16
MAX_SEED = (1 << 32) - 1
"""NumPy's legacy seeds are 32-bit."""
MAX_HEAD_WIDTH = 1 << 16
"""Units in one dense layer of a head (the paper's widest is 2500)."""
MAX_EPOCHS = 100_000
MAX_FOLDS = 1000
"""Folds of a cross-validation (each needs images; the paper's is 10)."""
MAX_REPEATS = 1000
"""Split sets of a repeated cross-validation (each is a full cross-validation of every variant)."""
MAX_PROCESSES = 1024
"""Worker processes, jobs or Ray actors one command starts."""
MAX_GPUS_PER_WORKER = 64
MAX_LAYERS = 100_000
"""Layers of a backbone a cutoff may name (the deepest registered one has under 1000)."""
MAX_WAIT_SECONDS = 1e7
"""Seconds a process waits for another's lock (about four months; 0 fails at once)."""
MAX_LEARNING_RATE = 3.4028234663852886e38
"""The largest float32: the optimizer computes in float32, so no larger rate is one of its numbers."""


@dataclass(frozen=True, kw_only=True)
class Domain:
    """The values one number may take: finite, of ``kind``, within ``minimum..maximum``.

    Attributes
    ----------
    kind : type
        ``int`` (a whole number) or ``float``.
    minimum, maximum : int or float
        Both included, except ``minimum`` when ``open_minimum``.
    open_minimum : bool
        ``minimum`` itself is excluded (a learning rate must be above 0). Default False.
    """

    kind: type
    minimum: float
    maximum: float
    open_minimum: bool = False

    def text(self) -> str:
        """The range in words: ``within 1..65536`` or ``above 0 and at most 3.40282e+38``."""
        high = f"{self.maximum:g}" if self.kind is float else str(self.maximum)
        return f"above {self.minimum:g} and at most {high}" if self.open_minimum else f"within {self.minimum:g}..{high}"

    def check(self, parameter: str, value):
        """``value`` as a Python ``int`` or ``float`` when it lies in this domain.

        Raises
        ------
        ParameterError
            When it is not a number (booleans are not), not whole for an integer domain, not
            finite, or out of range; the message names the range.
        """
        problem = f"must be {'a whole number' if self.kind is int else 'a finite number'} {self.text()}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(parameter, value, problem)
        if isinstance(value, numbers.Integral):
            number = int(value)
        elif math.isfinite(value) and (self.kind is float or float(value).is_integer()):
            number = float(value)
        else:
            raise ParameterError(parameter, value, problem)
        low_ok = number > self.minimum if self.open_minimum else number >= self.minimum
        if not (low_ok and number <= self.maximum):
            raise ParameterError(parameter, value, problem)
        return self.kind(number)


DOMAINS = {
    "batch_size": Domain(kind=int, minimum=1, maximum=MAX_BATCH_SIZE),
    "epochs": Domain(kind=int, minimum=1, maximum=MAX_EPOCHS),
    "learning_rate": Domain(kind=float, minimum=0, maximum=MAX_LEARNING_RATE, open_minimum=True),
    "folds": Domain(kind=int, minimum=2, maximum=MAX_FOLDS),
    "inner_folds": Domain(kind=int, minimum=2, maximum=MAX_FOLDS),
    "seed": Domain(kind=int, minimum=0, maximum=MAX_SEED),
    "head_seed": Domain(kind=int, minimum=0, maximum=MAX_SEED),
    "repeats": Domain(kind=int, minimum=1, maximum=MAX_REPEATS),
    "jobs": Domain(kind=int, minimum=1, maximum=MAX_PROCESSES),
    "workers": Domain(kind=int, minimum=0, maximum=MAX_PROCESSES),
    "gpus_per_worker": Domain(kind=float, minimum=0, maximum=MAX_GPUS_PER_WORKER),
    "cutoff": Domain(kind=int, minimum=0, maximum=MAX_LAYERS),
    "input_size": Domain(kind=int, minimum=MIN_INPUT_SIDE, maximum=MAX_INPUT_SIDE),
    "head_width": Domain(kind=int, minimum=1, maximum=MAX_HEAD_WIDTH),
    "lock_timeout": Domain(kind=float, minimum=0, maximum=MAX_WAIT_SECONDS),
}
"""Every bounded number featx takes, by parameter name: the command-line options (``--batch-size``
and so on, ``input_size`` per side), the library's records and the tests all read this one table."""


def check(parameter: str, value):
    """``value`` checked against ``DOMAINS[parameter]`` (see :meth:`Domain.check`).

    Raises
    ------
    ParameterError
    """
    return DOMAINS[parameter].check(parameter, value)


def check_input_size(input_size) -> tuple[int, int]:
    """``input_size`` as a (width, height) tuple, each side within ``MIN_INPUT_SIDE..MAX_INPUT_SIDE``.

    Raises
    ------
    ParameterError
    """
    sides = tuple(input_size) if isinstance(input_size, (tuple, list)) else ()
    domain = DOMAINS["input_size"]
    if len(sides) != 2:
        raise ParameterError("input_size", input_size, f"must be (width, height), each {domain.text()}")
    try:
        return tuple(domain.check("input_size", side) for side in sides)
    except ParameterError:
        raise ParameterError(
            "input_size", "x".join(map(str, sides)), f"must be WIDTHxHEIGHT, each side {domain.text()}"
        ) from None


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
