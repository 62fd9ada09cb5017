"""Keep TensorFlow's start-up chatter off the terminal unless ``-v`` asks for it.

TensorFlow's C++ runtime writes log lines to file descriptor 2 while it is imported (absl's
"All log messages before absl::InitializeLog()", oneDNN notices), which no environment variable
silences short of turning oneDNN off. featx imports TensorFlow lazily, so an import hook sends
descriptor 2 to /dev/null for the duration of that one import.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from contextlib import contextmanager

SILENCED = "tensorflow"


@contextmanager
def stderr_descriptor_to_devnull():
    """Point file descriptor 2 at /dev/null inside the block (Python's ``sys.stderr`` too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with stderr_descriptor_to_devnull():
            self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != SILENCED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow_import() -> None:
    """Install the hook (once); does nothing when TensorFlow is already imported."""
    if SILENCED in sys.modules or any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.meta_path.insert(0, _QuietFinder())
