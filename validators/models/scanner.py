"""The model-file scanner registered in ``custody.validators.scan``: one entry point, by content.

It accepts every file that is not plain text, an empty file or a dataset format, and routes the
bytes by what they are (pickle, zip, tar, compressed, numpy, HDF5, safetensors, GGUF, ONNX, 7z).
Limits on the work are counted per file; each limit hit is a finding.
"""

from __future__ import annotations

import gc
import os
import zipfile

from custody.validators.findings import Finding
from custody.validators.formats import FileFormat
from custody.validators.interface import ScanOptions, ScanTarget
from custody.validators.models.content import SNIFF_BYTES, scan_content, sniff
from custody.validators.models.context import Ctx

_NOT_OURS = frozenset({FileFormat.TEXT, FileFormat.EMPTY, FileFormat.PARQUET})


class ModelScanner:
    name = "model"

    def accepts(self, target: ScanTarget) -> bool:
        head = target.head
        if len(head) < SNIFF_BYTES and target.size > len(head):
            with target.path.open("rb") as stream:
                head = stream.read(SNIFF_BYTES)
        if sniff(head) not in _NOT_OURS:
            return True
        # text (a shell script, a README) with a zip archive after it: zipfile opens it
        return target.size > 22 and zipfile.is_zipfile(target.path)

    def scan(self, target: ScanTarget, options: ScanOptions) -> list[Finding]:
        ctx = Ctx.root(options, target.relpath, folder=target.path.parent)
        collecting = gc.isenabled()
        gc.disable()  # the scan's objects live until it ends: see pickle_fast's docstring
        try:
            with target.path.open("rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                return scan_content(stream, size, ctx)
        finally:
            if collecting:
                gc.enable()
