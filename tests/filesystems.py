"""File-system states for tests: a tmpfs mounted inside a tmp folder (full or read-only), and a
snapshot of a folder to show that nothing else in it changed."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "256k", *, full: bool = False, read_only: bool = False, holding=None):
    """A tmpfs mounted at ``folder`` (made), given its contents by ``holding(folder)`` (default: none),
    then filled to the last byte when ``full`` and remounted read-only when ``read_only``; always
    unmounted. Skips the test where this machine cannot mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        if holding is not None:
            holding(folder)
        if full:
            fill(folder / ".filler")
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no byte left."""
    with open(path, "wb", buffering=0) as handle:
        block = bytes(1 << 16)
        while True:
            try:
                handle.write(block)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                block = block[: len(block) // 2]
                if not block:
                    return


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder``: its kind and, for links and regular files, what it holds."""
    entries = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root) / name
            if path.is_symlink():
                entries[path] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[path] = ("folder",)
            elif path.is_file():
                entries[path] = ("file", path.read_bytes())
            else:
                entries[path] = ("special",)
    return entries
