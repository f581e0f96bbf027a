"""Raw data that real loaders read from the middle of a pickle stream, and how to step over it.

* joblib writes each numpy array as a ``NumpyArrayWrapper`` object followed, right after its
  BUILD opcode, by the array bytes (with an alignment pad) or, for object arrays, by a nested
  pickle. The array header (dtype and shape) in the wrapper's state says how many bytes follow.
* PyTorch's legacy (pre-1.6) format stacks five pickles and then the raw storages, one record
  per storage key: an int64 element count and the elements.

Both are skipped by seeking (or reading in chunks when the stream cannot seek), never loaded.
"""

from __future__ import annotations

import math
import re
from typing import BinaryIO

from custody.errors import PickleBreak
from custody.validators.models.opcodes import read_exact
from custody.validators.models.pickle_values import DictV, GlobalRef, Obj

_JOBLIB_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
_DTYPE_CODE = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)")
_CHAR_SIZE = {"U": 4, "S": 1, "a": 1, "V": 1}
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_ELEMENT_SIZE = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QInt8": 1,
    "QUInt8": 1, "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1,
}  # fmt: skip


def skip_bytes(stream: BinaryIO, n: int, size: int | None, what: str) -> None:
    """Step over ``n`` bytes, raising PickleBreak when the stream ends first."""
    pos = stream.tell()
    if n < 0:
        raise PickleBreak(f"negative length for {what}", pos)
    if size is not None:
        if pos + n > size:
            raise PickleBreak(f"truncated {what}: {n} bytes announced, {size - pos} left", pos)
        stream.seek(n, 1)
        return
    left = n
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise PickleBreak(f"truncated {what}: {n} bytes announced", pos)
        left -= len(chunk)


def is_joblib_wrapper(obj: Obj) -> bool:
    return isinstance(obj.func, GlobalRef) and obj.func.qualified in _JOBLIB_WRAPPERS


def _state(obj: Obj) -> dict[str, object]:
    if not isinstance(obj.state, DictV):
        return {}
    return {k: v for k, v in obj.state.items if isinstance(k, str)}


def _joblib_itemsize(dtype: object) -> int | None:
    """Item size of a pickled ``numpy.dtype(code, ...)`` call; None for object arrays."""
    if not isinstance(dtype, Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        raise PickleBreak("joblib array header has no readable dtype", _dtype_pos(dtype))
    state = dtype.state
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return state[5]
    code = dtype.args[0]
    match = _DTYPE_CODE.match(code) if isinstance(code, str) else None
    if match is None:
        raise PickleBreak(f"joblib array dtype {code!r} is not understood", _dtype_pos(dtype))
    kind, digits = match.group(1), match.group(2)
    if kind == "O":
        return None
    count = int(digits) if digits else 1
    return count * _CHAR_SIZE.get(kind, 1)


def _dtype_pos(value: object) -> int:
    return value.pos if isinstance(value, Obj) else 0


def joblib_array_bytes(obj: Obj) -> tuple[int | None, bool]:
    """``(byte count, padded)`` of the array after a wrapper; ``None`` bytes: a pickle follows."""
    state = _state(obj)
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise PickleBreak("joblib array header has no readable shape", obj.pos)
    itemsize = _joblib_itemsize(state.get("dtype"))
    if itemsize is None:
        return None, False
    padded = state.get("numpy_array_alignment_bytes") is not None
    return math.prod(shape) * itemsize, padded


def skip_joblib_array(stream: BinaryIO, nbytes: int, padded: bool, size: int | None) -> None:
    if padded:
        pad = read_exact(stream, 1, stream.tell(), "joblib alignment byte")[0]
        skip_bytes(stream, pad, size, "joblib alignment padding")
    skip_bytes(stream, nbytes, size, "joblib array data")


def torch_storage_sizes(persistent_ids: list[object]) -> dict[str, int]:
    """Storage key -> element size, from legacy persistent ids ``('storage', type, key, ...)``."""
    sizes: dict[str, int] = {}
    for pid in persistent_ids:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            continue
        storage_type, key = pid[1], pid[2]
        if isinstance(storage_type, GlobalRef) and isinstance(key, str):
            kind = storage_type.name.removesuffix("Storage")
            sizes[key] = _TORCH_ELEMENT_SIZE.get(kind, 1)
    return sizes


def skip_torch_storages(
    stream: BinaryIO, keys: object, sizes: dict[str, int], size: int | None
) -> None:
    """Step over the raw storages of a legacy torch file; PickleBreak when they do not fit."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PickleBreak("legacy torch storage key list is not a list of strings", stream.tell())
    for key in keys:
        if key not in sizes:
            raise PickleBreak(f"legacy torch storage {key!r} is not referenced", stream.tell())
        head = read_exact(stream, 8, stream.tell(), "storage element count")
        count = int.from_bytes(head, "little", signed=True)
        skip_bytes(stream, count * sizes[key], size, f"storage {key}")
