"""File helpers: atomic writes (a temporary file beside the target, then ``os.replace``), sealed array
files, and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def replaced_atomically(path):
    """Yield a temporary path beside ``path``; once the block has written it, flush it to disk
    (``fsync``) and rename it into place, so that readers see the old file or the new one, never half.

    The temporary file is removed if anything fails (a full disk, say), and the error re-raised.
    """
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`replaced_atomically`), making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as temporary:
        temporary.write_text(text)
    return path


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SEAL = "sha256"


def _seal(arrays: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_arrays_atomic(path, arrays: dict) -> Path:
    """Write named arrays as one uncompressed ``.npz`` sealed with a sha256 of their contents.

    The file appears complete or not at all (see :func:`replaced_atomically`). Text goes in as
    fixed-width unicode arrays, so the file reads back without pickle.
    """
    path = Path(path)
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    arrays[SEAL] = np.asarray(_seal(arrays))
    with replaced_atomically(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def read_arrays_verified(path, names=None) -> dict:
    """The arrays of a file from :func:`write_arrays_atomic`, checked against its seal.

    Parameters
    ----------
    path : str or Path
    names : sequence of str, optional
        Read only these arrays and skip the check (for an index); default: every array, checked.

    Raises
    ------
    ValueError
        When the file is truncated, not such a file, or its contents do not match the seal.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in (names or archive.files)}
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"unreadable ({type(error).__name__}: {error})") from None
    if names is None:
        seal = arrays.pop(SEAL, None)
        if seal is None or str(seal) != _seal(arrays):
            raise ValueError("checksum mismatch")
    return arrays
