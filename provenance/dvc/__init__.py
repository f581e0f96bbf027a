"""DVC integration: DVC's hashes beside Custody's, workspace checks, ``dvc.lock`` as lineage.

Nothing here imports or runs the ``dvc`` application (so DVC's usage analytics never start, and
importing this package leaves ``os.environ`` alone): ``.dvc`` files and ``dvc.lock`` are read as
YAML (:mod:`custody.provenance.dvc.files`), and DVC's MD5 values are computed from the bytes by
``dvc-data``, DVC's hashing library, imported only when a DVC-tracked path is hashed
(:mod:`custody.provenance.dvc.hashing`).

- :func:`check_dvc_workspace`: the DVC facts of a path, or a ``dvc.workspace_mismatch`` refusal.
- :func:`import_dvc_lock`: every stage of a ``dvc.lock`` recorded as signed lineage.
- :func:`stage_outputs`: the workspace paths a stage produced (``verify --dvc-stage``).
"""

from __future__ import annotations

from custody.provenance.dvc.check import (
    RULE_MISMATCH,
    DvcInfo,
    OutStatus,
    check_dvc_workspace,
    check_out,
    stage_outputs,
)
from custody.provenance.dvc.files import (
    DvcOut,
    LockFile,
    Stage,
    find_repo_root,
    iter_tracked,
    load_lock,
    read_dvc_file,
)
from custody.provenance.dvc.hashing import HASH_LEGACY, HASH_MD5, dir_md5, file_md5
from custody.provenance.dvc.importer import (
    NAME_PREFIX,
    DvcImport,
    ImportedArtifact,
    ImportedStage,
    artifact_name,
    import_dvc_lock,
)

__all__ = [
    "HASH_LEGACY",
    "HASH_MD5",
    "NAME_PREFIX",
    "RULE_MISMATCH",
    "DvcImport",
    "DvcInfo",
    "DvcOut",
    "ImportedArtifact",
    "ImportedStage",
    "LockFile",
    "OutStatus",
    "Stage",
    "artifact_name",
    "check_dvc_workspace",
    "check_out",
    "dir_md5",
    "file_md5",
    "find_repo_root",
    "import_dvc_lock",
    "iter_tracked",
    "load_lock",
    "read_dvc_file",
    "stage_outputs",
]
