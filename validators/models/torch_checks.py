"""Torch checkpoints: every storage a pickle declares must fit the bytes that back it.

``torch.load`` reads ``('storage', type, key, location, numel)`` from the pickle and then asks
for ``numel`` elements of ``<archive>/data/<key>``; a tensor is ``(storage, offset, size,
stride)``. A storage that declares more elements than its record holds, a record that is
missing, or a tensor whose last element lies past the end of its storage make loaders read out
of bounds (a memory-safety bug class). Both are checked against the zip's central directory,
without reading the tensor bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx, TorchRefs
from custody.validators.models.pickle_values import GlobalRef, Obj, Persistent

_STORAGE_SIZE = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QInt8": 1,
    "QUInt8": 1, "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1, "Untyped": 1,
}  # fmt: skip
_DTYPE_SIZE = {
    "float64": 8, "double": 8, "float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2,
    "int64": 8, "long": 8, "int32": 4, "int": 4, "int16": 2, "short": 2, "int8": 1, "uint8": 1,
    "bool": 1, "complex64": 8, "complex128": 16, "uint16": 2, "uint32": 4, "uint64": 8,
}  # fmt: skip
_MAX_REPORTED = 5


def _element_size(storage_type: object) -> int:
    if isinstance(storage_type, GlobalRef):
        return _STORAGE_SIZE.get(storage_type.name.removesuffix("Storage"), 1)
    return 1


def _declared_storages(refs: TorchRefs) -> dict[str, tuple[int, int]]:
    """Storage key -> (element size, declared elements) from the persistent ids."""
    out: dict[str, tuple[int, int]] = {}
    for pid in refs.persistent_ids:
        if (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[2], str) and isinstance(pid[4], int)):
            out[pid[2]] = (_element_size(pid[1]), pid[4])
    return out


def check_checkpoint(
    refs: TorchRefs, prefix: str, sizes: Mapping[str, int], ctx: Ctx
) -> list[Finding]:
    """``sizes``: member name -> uncompressed size, for every member of the archive."""
    findings: list[Finding] = []
    declared = _declared_storages(refs)
    for key, (element, numel) in sorted(declared.items()):
        name = f"{prefix}data/{key}"
        have = sizes.get(name)
        if have is None:
            problem = f"storage {key!r} declares {numel} elements but {name} is missing"
        elif numel < 0 or numel * element > have:
            problem = (f"storage {key!r} declares {numel} elements of {element} bytes "
                       f"({numel * element} bytes) but {name} holds {have}")
        else:
            continue
        findings.append(ctx.finding("torch.storage_mismatch", Severity.HIGH,
                                    f"{problem}: loaders read past the buffer", at=name))
        if len(findings) >= _MAX_REPORTED:
            break
    findings.extend(_tensors(refs, declared, ctx))
    return findings


def _tensors(refs: TorchRefs, declared: dict[str, tuple[int, int]], ctx: Ctx) -> list[Finding]:
    out: list[Finding] = []
    for call in refs.rebuilds:
        args = call.args if isinstance(call, Obj) else None
        if type(args) is not tuple or len(args) < 4:
            continue
        storage, offset, size, stride = args[:4]
        pid = storage.pid if type(storage) is Persistent else None
        if type(pid) is not tuple or len(pid) < 5 or pid[2] not in declared:
            continue
        element, numel = declared[pid[2]]
        if len(args) >= 7 and isinstance(args[6], GlobalRef):  # _rebuild_tensor_v3
            numel = numel * element // _DTYPE_SIZE.get(args[6].name, 1)
        if (type(offset) is int and type(size) is tuple and len(size) == 1
                and type(stride) is tuple and len(stride) == 1):  # the common case, inline
            n, st = size[0], stride[0]
            if type(n) is int and type(st) is int and offset >= 0 and (
                    n <= 0 or offset + (n - 1) * abs(st) < numel):
                continue
        end = _last_element(offset, size, stride)
        if end is None or end <= numel:
            continue
        out.append(ctx.finding(
            "torch.tensor_out_of_bounds", Severity.HIGH,
            f"a tensor (offset {offset}, size {size}, stride {stride}) reaches element {end} of "
            f"a storage of {numel}: loaders read out of bounds",
            at=f"byte {getattr(call, 'pos', 0)}"))
        if len(out) >= _MAX_REPORTED:
            break
    return out


def _last_element(offset: object, size: object, stride: object) -> int | None:
    """The index one past the tensor's last element in its storage; None if not computable."""
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(isinstance(v, int) for v in (*size, *stride))):
        return None
    if offset < 0 or any(s < 0 for s in size):
        return 2**63
    if math.prod(size) == 0:
        return None
    pairs = zip(size, stride, strict=True)
    last: int = offset + sum((int(s) - 1) * abs(int(st)) for s, st in pairs)
    return last + 1
