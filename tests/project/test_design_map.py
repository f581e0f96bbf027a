"""The docs cite only files and folders that exist in this repository.

docs/design.md is the project's map: every path it names (backticked in the prose, or an entry
of the layout tree, whose indented entries live in the folder above them) must exist. README.md
and docs/*.md name repository paths in backticks too (``provenance/recording/record.py``,
``tests/ledger/test_ledger_log.py::test_name`` (the test must exist), ``tests/*/test_dvc_*.py``,
``.ci/run``, ``tests/support/ledger_helpers.append_one`` for a function of a module): those that
start with one of the repository's top-level folders must exist (a ``*`` must match something).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO / "docs" / "design.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ROOTS = ("provenance/", "validators/", "signing/", "service/", "tests/", "benchmarks/", "docs/",
         "sample_data/", ".ci/")
_TICKED = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_PATHLIKE = re.compile(r"[\w.-]+(/[\w.*-]*)*")
_EXTENSIONS = (".py", ".md", ".toml", ".json", ".txt", ".cfg", ".yml", ".yaml", ".parquet", ".pkl")


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _is_path(token: str) -> bool:
    return (_PATHLIKE.fullmatch(token) is not None and not token.startswith(".custody")
            and ("/" in token or token.endswith(_EXTENSIONS)))


def tree_paths(tree: str) -> list[str]:
    """The paths of a layout tree: `name   description` lines, two-space indents for folders."""
    found: list[str] = []
    folder = ""
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent not in (0, 2):
            continue  # a blank line or the continuation of a description
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for name in re.split(r",?\s+", names):
            assert _PATHLIKE.fullmatch(name), f"not a path in the layout tree: {name!r}"
            path = name if indent == 0 else folder + name
            if indent == 0:
                folder = name if name.endswith("/") else ""
            else:
                assert folder, f"{name!r} is indented under no folder"
            found.append(path)
    return found


def design_paths() -> list[str]:
    text = DESIGN.read_text(encoding="utf-8")
    ticked = [t for t in _TICKED.findall(_prose(text)) if _is_path(t)]
    trees = [m.group(2) for m in _FENCE.finditer(text) if m.group(1) == ""]
    assert trees, "docs/design.md has no layout tree"
    return ticked + [p for tree in trees for p in tree_paths(tree)]


def cited_paths() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for token in _TICKED.findall(_prose(doc.read_text(encoding="utf-8"))):
            path, _, test = token.partition("::")
            if path.startswith(ROOTS) and _PATHLIKE.fullmatch(path):
                found.append((str(doc.relative_to(REPO)), f"{path.removesuffix('.py')}.{test}"
                              if test else path))
    return found


def _exists(path: str) -> bool:
    """The path exists (a folder when it ends in /; ``dir/module.name``: the module defines it)."""
    if "*" in path:
        return any(REPO.glob(path))
    target = REPO / path
    if path.endswith("/"):
        return target.is_dir()
    if target.exists():
        return True
    module, _, name = path.rpartition(".")
    source = REPO / f"{module}.py"
    return bool(name.isidentifier() and source.is_file() and re.search(
        rf"^(def|class) {name}\b|^{name}\s*[:=]", source.read_text(encoding="utf-8"), re.M))


def test_design_map_names_only_existing_paths() -> None:
    paths = design_paths()
    assert len(paths) > 50, paths  # the tree was read
    assert [p for p in paths if not _exists(p)] == []


@pytest.mark.parametrize("doc", [str(d.relative_to(REPO)) for d in DOCS])
def test_docs_cite_only_existing_paths(doc: str) -> None:
    cited = [p for d, p in cited_paths() if d == doc]
    assert [p for p in cited if not _exists(p)] == [], f"{doc} cites paths that do not exist"


def test_tree_entries_live_in_their_folder() -> None:
    tree = ("errors.py              errors\n"
            "provenance/\n"
            "  a.py b.py            two modules\n"
            "                       the description, continued\n"
            "  ledger/x.py, ledger/m/   a module and a folder\n"
            "sample_data/           data\n")
    assert tree_paths(tree) == ["errors.py", "provenance/", "provenance/a.py", "provenance/b.py",
                                "provenance/ledger/x.py", "provenance/ledger/m/", "sample_data/"]
    assert not _exists("provenance/no_such_module.py")
    assert _exists("tests/*/test_dvc_*.py") and not _exists("tests/*/test_nothing_*.py")
    assert _exists("tests/support/ledger_helpers.append_one")
    assert not _exists("tests/support/ledger_helpers.no_such_function")
    assert _exists("tests/project/test_design_map.test_tree_entries_live_in_their_folder")
