"""DVC's hashes beside Custody's: MD5 of files and directories, ``.dvc``/``dvc.lock`` checks.

Nothing here imports or runs the ``dvc`` application (so DVC's usage analytics never start, and
importing this package leaves ``os.environ`` alone): ``.dvc`` files and ``dvc.lock`` are read as
YAML (:mod:`custody.provenance.hashing.dvc.files`), and DVC's MD5 values are computed from
the bytes by ``dvc-data``, DVC's hashing library, imported only when a DVC-tracked path is hashed
(:mod:`custody.provenance.hashing.dvc.md5`).

- :func:`check_dvc_workspace`: the DVC facts of a path, or a ``dvc.workspace_mismatch`` refusal.
- :func:`stage_outputs`: the workspace paths a stage produced (``verify --dvc-stage``).
"""

from __future__ import annotations

from custody.provenance.hashing.dvc.check import (
    RULE_MISMATCH,
    DvcInfo,
    OutStatus,
    check_dvc_workspace,
    check_out,
    stage_outputs,
)
from custody.provenance.hashing.dvc.files import (
    DvcOut,
    LockFile,
    Stage,
    find_repo_root,
    iter_tracked,
    load_lock,
    read_dvc_file,
)
from custody.provenance.hashing.dvc.md5 import HASH_LEGACY, HASH_MD5, dir_md5, file_md5

__all__ = [
    "HASH_LEGACY",
    "HASH_MD5",
    "RULE_MISMATCH",
    "DvcInfo",
    "DvcOut",
    "LockFile",
    "OutStatus",
    "Stage",
    "check_dvc_workspace",
    "check_out",
    "dir_md5",
    "file_md5",
    "find_repo_root",
    "iter_tracked",
    "load_lock",
    "read_dvc_file",
    "stage_outputs",
]
