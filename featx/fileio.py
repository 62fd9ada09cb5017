"""The one writer: every file featx writes goes through this module, and so does every output
named on the command line before any work starts.

- A file is written under a temporary name beside its target, flushed to disk (``fsync``) and
  renamed into place, so that a reader sees the old file or the new one, never half of either;
  on any failure the temporary file is removed and nothing else is touched.
- An operating-system error becomes one :class:`~featx.exceptions.FileSystemError` that names the
  path and says the cause in words (:data:`CAUSES`: no space left, read-only, not a folder, is a
  folder, name too long, ...).
- **Symbolic links are followed**: the file a link points to is replaced and the link stays.
  A target that exists and is not a regular file (a device, a pipe), and any path under ``/dev``
  or ``/proc`` (``/dev/stdout``), is **written through** (appended to, as a shell's ``>>``),
  never replaced by a rename; a folder in place of a file is refused.
- Outputs named by the user (``--out``, ``--csv``, ``--model-dir``, ``--explain``, ``--cache``,
  ``--dest``) are checked by :func:`check_output_file` / :func:`check_output_folder` when the
  command starts: a folder where a file is wanted, a file where a folder is wanted, a read-only
  file system, a name too long.
- The outputs of one command that belong together (a report and the predictions it is computed
  from) are written into a temporary folder and moved in together (:func:`written_together`).
- CSV text is escaped against formula injection (:func:`csv_cell`): a text cell a spreadsheet
  would run (``=``, ``+``, ``-``, ``@``, tab, carriage return first) starts with ``'``.

Also sealed array files and hashing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from featx.exceptions import FeatxError, FileSystemError

CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder",
    errno.ENAMETOOLONG: "name too long",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EFBIG: "file too large",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error (a failing disk or a network file system)",
    errno.ENOTEMPTY: "folder not empty",
    errno.EBUSY: "busy (in use or a mount point)",
    errno.ENXIO: "no such device",
    errno.ENODEV: "no such device",
    errno.ETXTBSY: "file busy",
    errno.EINVAL: "invalid argument for this file system",
}
NAME_MAX = 255
"""Bytes in one path component on Linux file systems (ext4, xfs, tmpfs, btrfs)."""


def cause(error: BaseException) -> str:
    """The cause of an OS error in words (its ``strerror`` where :data:`CAUSES` has no entry)."""
    number = getattr(error, "errno", None)
    if number in CAUSES:
        return CAUSES[number]
    text = getattr(error, "strerror", None) or str(error)
    return text[0].lower() + text[1:] if text else type(error).__name__


def file_system_error(error: OSError, path, action: str) -> FileSystemError:
    """``error`` as a :class:`FileSystemError` naming the path the OS named (else ``path``)."""
    if isinstance(error, FileSystemError):
        return error
    named = getattr(error, "filename", None) or path
    if isinstance(named, bytes):
        named = os.fsdecode(named)
    return FileSystemError(named, action, cause(error))


@contextlib.contextmanager
def os_errors(path, action: str = "write"):
    """Turn any ``OSError`` raised in the block into a :class:`FileSystemError` about ``path``."""
    try:
        yield
    except FeatxError:
        raise
    except OSError as error:
        raise file_system_error(error, path, action) from None


def check_name(path, action: str = "use this name") -> None:
    """Refuse a path with a component longer than the file system allows (``action``: what the
    message says could not be done, default ``use this name``).

    Raises
    ------
    FileSystemError
    """
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise FileSystemError(path, action, f"name too long ({size} bytes, at most {NAME_MAX})")


def _existing_ancestor(path: Path, action: str) -> Path:
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link where a folder is wanted
            raise FileSystemError(path, action, f"{ancestor} is a symbolic link to nothing")
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    return ancestor


def _check_writable_folder(folder: Path, path: Path, action: str) -> None:
    if not folder.is_dir():
        raise FileSystemError(path, action, f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        raise FileSystemError(path, action, CAUSES[errno.EROFS if read_only else errno.EACCES])


def check_output_file(path, flag: str | None = None) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Parameters
    ----------
    path : str or Path
    flag : str, optional
        The command-line option that named it, put in the message (default: none).

    Returns
    -------
    Path
        ``path``, with the user's ``~`` expanded.

    Raises
    ------
    FileSystemError
        When ``path`` is a folder, a part of it is a file, its name is too long, or its folder is
        read-only.
    """
    path = Path(os.path.expanduser(os.fsdecode(path)))
    action = f"write {flag}" if flag else "write"
    check_name(path, action)
    if path.is_dir():
        raise FileSystemError(path, action, "is a folder (a file is wanted here)")
    if path.exists() and not path.is_file():
        return path  # a device or a pipe: written through
    _check_writable_folder(_existing_ancestor(path, action), path, action)
    return path


def check_output_folder(path, flag: str | None = None) -> Path:
    """Check, before any work, that ``path`` is a folder featx can write in, or can be made.

    Parameters
    ----------
    path : str or Path
    flag : str, optional
        The command-line option that named it, put in the message (default: none).

    Raises
    ------
    FileSystemError
        When ``path`` is a file, a part of it is a file, its name is too long, or it (or the folder
        it would be made in) is read-only.
    """
    path = Path(os.path.expanduser(os.fsdecode(path)))
    action = f"write {flag}" if flag else "write in"
    check_name(path, action)
    if path.exists():
        if not path.is_dir():
            raise FileSystemError(path, action, "is a file, not a folder")
        _check_writable_folder(path, path, action)
    else:
        _check_writable_folder(_existing_ancestor(path, action), path, action)
    return path


def make_folder(path) -> Path:
    """``mkdir -p`` with OS errors in words (a file, or a link to nothing, in the way named as such)."""
    path = Path(path)
    check_name(path)
    with os_errors(path, "make the folder"):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise FileSystemError(error.filename or path, "make the folder", "it exists and is not a folder") from None
    return path


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


SPECIAL_FOLDERS = ("/dev/", "/proc/")
"""Paths under these (``/dev/stdout``, ``/proc/self/fd/1``) are streams: always written through."""


def _written_through(path: Path) -> bool:
    """Whether ``path`` is an existing non-regular file or a stream path, written through, not replaced."""
    if str(path.absolute()).startswith(SPECIAL_FOLDERS) or os.path.realpath(path).startswith(SPECIAL_FOLDERS):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def replaced_atomically(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; once the block has written it, flush it to disk and
    rename it into place, so that readers see the old file or the new one, never half.

    ``suffix`` ends the temporary name, for writers that insist on one (Keras: ``.weights.h5``;
    default: none).

    A symbolic link at ``path`` is followed (its target is replaced, the link stays); an existing
    target that is not a regular file (a device, a pipe), or a path under ``/dev`` or ``/proc``
    (``/dev/stdout``), is written through instead of replaced. The temporary file is removed if
    anything fails, and an OS error is re-raised as a :class:`FileSystemError` naming ``path``.
    """
    path = Path(path)
    check_name(path)
    with os_errors(path):
        if path.is_dir():
            raise FileSystemError(path, "write", "is a folder (a file is wanted here)")
        through = _written_through(path)
        target = path if through else Path(os.path.realpath(path))
        folder = Path(tempfile.gettempdir()) if through else target.parent
    temporary = folder / f".{target.name[:64]}.{os.getpid()}.tmp{suffix}"
    try:
        with _about_target(path, temporary):
            yield temporary
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            if through:
                with open(temporary, "rb") as source, open(path, "ab") as sink:
                    shutil.copyfileobj(source, sink)
            else:
                os.replace(temporary, target)
                _fsync_folder(target.parent)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _about_target(path: Path, temporary: Path):
    """:func:`os_errors` about ``path``, also when the OS names the temporary file the user never asked for."""
    try:
        yield
    except FeatxError:
        raise
    except OSError as error:
        named = getattr(error, "filename", None)
        if named is not None and Path(os.fsdecode(named)) == temporary:
            error.filename = None
        raise file_system_error(error, path, "write") from None


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`replaced_atomically`), making its folder."""
    path = Path(path)
    make_folder(path.parent)
    with replaced_atomically(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def csv_cell(value):
    """``value`` as a CSV cell a spreadsheet shows and never runs.

    A text that starts with one of :data:`FORMULA_STARTS` gets a leading single quote (``'=1+2``),
    as OWASP recommends; numbers (a negative one too) and every other value are returned as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(table, columns=None) -> str:
    """``table`` as CSV text, every text cell and column name passed through :func:`csv_cell`.

    Lines end in CRLF, as RFC 4180 has it, so that a cell holding a line break (CR or LF) is quoted.

    Parameters
    ----------
    table : pandas.DataFrame or list of dict
    columns : sequence of str, optional
        The columns, in order, of a list of rows (default: the keys of the first row).
    """
    import pandas as pd

    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table), columns=columns)
    return frame.map(csv_cell).rename(columns=csv_cell).to_csv(index=False, lineterminator="\r\n")


def write_csv(table, path, columns=None) -> Path:
    """Write ``table`` (see :func:`csv_text`) to ``path`` atomically, making its folder."""
    return write_text_atomic(path, csv_text(table, columns))


@contextlib.contextmanager
def written_together(folder):
    """Yield an empty temporary folder beside ``folder``; once the block has written its files there,
    move each into ``folder`` (made if missing; files of the same name replaced, others left alone).

    The outputs of one command appear together or not at all: if the block fails, the temporary
    folder is removed and ``folder`` is untouched. A :class:`FileSystemError` from the block names
    the file's place in ``folder``, not in the temporary folder.
    """
    folder = Path(folder)
    check_name(folder)
    real = Path(os.path.realpath(folder))
    make_folder(real.parent)
    staging = real.parent / f".{real.name[:64]}.{os.getpid()}.tmp"
    try:
        with os_errors(folder, "make the folder"):
            staging.mkdir()
        try:
            yield staging
        except FileSystemError as error:
            inside = error.path.replace(str(staging), str(folder), 1)
            raise FileSystemError(inside, error.action, error.cause) from None
        with os_errors(folder):
            for source in sorted(staging.rglob("*")):
                if not source.is_dir():
                    target = real / source.relative_to(staging)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
            _fsync_folder(real)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with os_errors(path, "read"), open(path, "rb") as handle:
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


def confined(root, relative) -> Path:
    """The path that ``relative``, a name read from data, gives inside the folder ``root``.

    Every path that comes from a file a user was given (a manifest's ``filename``, a mirror's
    metadata, an archive member, a class folder's name) goes through here before it is read or
    written, so that a data file cannot reach outside its own folder.

    Parameters
    ----------
    root : str or Path
        The folder the path must stay in.
    relative : str or Path
        The path as the data wrote it.

    Returns
    -------
    Path
        ``root / relative`` resolved (links followed), inside ``root`` resolved.

    Raises
    ------
    FeatxError
        Naming the value and the folder when ``relative`` is empty, absolute, holds a NUL byte or a
        name longer than :data:`NAME_MAX` bytes, or leads outside ``root`` (``..``, or a symbolic
        link pointing out).
    """
    text = os.fsdecode(relative)
    base = Path(os.path.realpath(root))
    try:
        sizes = [len(os.fsencode(part)) for part in Path(text).parts]
    except UnicodeEncodeError:
        sizes = None
    if not text.strip():
        problem = "an empty path"
    elif sizes is None:
        problem = "characters that cannot be written in a file name"
    elif "\0" in text:
        problem = "a NUL byte in the path"
    elif os.path.isabs(text):
        problem = "an absolute path"
    elif max(sizes, default=0) > NAME_MAX:
        problem = f"a name of {max(sizes)} bytes (at most {NAME_MAX})"
    else:
        resolved = Path(os.path.realpath(base / text))
        if resolved == base or base in resolved.parents:
            return resolved
        problem = "it leads outside the folder (.. or a symbolic link pointing out)"
    shown = text if len(text) <= 120 else text[:120] + "..."
    raise FeatxError(f"path {shown!r} refused in {root}: {problem}")
