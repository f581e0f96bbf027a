"""The scanner concept: something that looks at one file's bytes and returns findings.

Implementations never load, unpickle, import or execute what they inspect. They read bytes and
parse structure. An input a scanner cannot parse is a finding, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from custody.validators.findings import Finding


@dataclass(frozen=True)
class ScanLimits:
    """Bounds on the work done for hostile input; hitting one is itself a finding."""

    max_pickle_opcodes: int = 5_000_000
    max_archive_members: int = 1_000_000
    max_decompressed_bytes: int = 4 * 1024**3
    max_compression_ratio: float = 200.0
    max_nesting_depth: int = 3
    max_seconds: float = 120.0
    # pickles: memo and stack grow by at most one entry per opcode, so max_pickle_opcodes
    # bounds them; these bound what the loader builds from them
    max_pickle_depth: int = 1_000  # values nested deeper than this (recursion in loaders)
    max_pickle_expansion: int = 50_000_000  # values counted with shared references unfolded
    max_allocation: int = 256 << 20  # bytes one declared length or call may allocate


@dataclass(frozen=True)
class ScanTarget:
    """One regular file of an artifact: where it is and how the manifest names it."""

    path: Path
    relpath: str
    size: int
    head: bytes = b""  # the first bytes, for format detection by content


@dataclass
class ScanOptions:
    limits: ScanLimits = field(default_factory=ScanLimits)
    extra_safe_globals: frozenset[str] = frozenset()
    pickle_profiles: tuple[str, ...] | None = None  # allowlist profiles in force; None: all
    second_opinion: bool = True  # also run picklescan on every pickle stream and merge its verdict


class FileScanner(Protocol):
    """A scanner for one file format family."""

    name: str

    def accepts(self, target: ScanTarget) -> bool:
        """True when this scanner understands the file (decided by content, never extension)."""
        ...

    def scan(self, target: ScanTarget, options: ScanOptions) -> list[Finding]:
        """Inspect the file; raise nothing for malformed input: report it as a finding."""
        ...
