"""Shared state of one file's scan: options, the work budget, and where we are inside it.

Every limit on hostile input (opcodes, archive members, decompressed bytes, nesting depth, wall
time) is counted here, for the whole file, across nested containers. Hitting one raises
:class:`LimitHit`, which the scanner turns into a finding: a limit is never a silent pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custody.errors import LimitHit
from custody.validators.findings import Finding, Severity
from custody.validators.interface import ScanLimits, ScanOptions


@dataclass
class Budget:
    limits: ScanLimits
    deadline: float
    opcodes: int = 0
    members: int = 0
    decompressed: int = 0
    exhausted: bool = False  # a limit was hit: stop starting new work for this file

    def _hit(self, rule: str, message: str) -> LimitHit:
        self.exhausted = True
        return LimitHit(rule, message)

    @classmethod
    def start(cls, limits: ScanLimits) -> Budget:
        return cls(limits=limits, deadline=time.monotonic() + limits.max_seconds)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self._hit(
                rule="limit.time",
                message=f"scan took longer than {self.limits.max_seconds:g} s and was stopped",
            )

    def add_opcodes(self, n: int) -> None:
        self.opcodes += n
        if self.opcodes > self.limits.max_pickle_opcodes:
            raise self._hit(
                rule="limit.opcodes",
                message=f"more than {self.limits.max_pickle_opcodes} pickle opcodes in one file",
            )
        self.check_time()

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise self._hit(
                rule="limit.members",
                message=f"more than {self.limits.max_archive_members} archive members in one file",
            )

    def add_decompressed(self, n: int) -> None:
        self.decompressed += n
        if self.decompressed > self.limits.max_decompressed_bytes:
            raise self._hit(
                rule="limit.decompressed",
                message=f"more than {self.limits.max_decompressed_bytes} decompressed bytes in one "
                "file",
            )


@dataclass
class TorchRefs:
    """What a torch checkpoint's main pickle says about its storages (see ``torch_checks``)."""

    persistent_ids: list[object] = field(default_factory=list)
    rebuilds: list[object] = field(default_factory=list)  # calls of the tensor rebuild functions


@dataclass
class Ctx:
    """Where a scan is: the file, the container path inside it, and the nesting depth."""

    options: ScanOptions
    relpath: str
    budget: Budget
    depth: int = 0
    where: tuple[str, ...] = field(default_factory=tuple)
    folder: Path | None = None  # the folder of a top-level file (for relative references)
    torchscript: bool = False  # inside a TorchScript archive (read by torch.jit's unpickler)
    torch_refs: TorchRefs | None = None  # collects storage references of a checkpoint's pickle

    @classmethod
    def root(cls, options: ScanOptions, relpath: str, folder: Path | None = None) -> Ctx:
        budget = Budget.start(options.limits)
        return cls(options=options, relpath=relpath, budget=budget, folder=folder)

    def inside(self, label: str, *, nested: bool = True) -> Ctx:
        """A context for content inside this one (an archive member, a nested pickle)."""
        depth = self.depth + 1 if nested else self.depth
        return Ctx(
            self.options, self.relpath, self.budget, depth, (*self.where, label), None,
            self.torchscript, self.torch_refs,
        )  # fmt: skip

    def too_deep(self) -> bool:
        return self.depth > self.options.limits.max_nesting_depth

    def location(self, at: str = "") -> str:
        parts = [*self.where, at] if at else list(self.where)
        return " > ".join(parts)

    def finding(
        self,
        rule_id: str,
        severity: Severity,
        message: str,
        at: str = "",
        evidence: dict[str, Any] | None = None,
    ) -> Finding:
        return Finding(
            rule_id=rule_id,
            severity=severity,
            path=self.relpath,
            message=message,
            location=self.location(at),
            evidence=evidence or {},
        )

    def limit_finding(self, hit: LimitHit) -> Finding:
        return self.finding(
            hit.rule, Severity.HIGH, f"{hit}; the rest was not inspected (fail closed)"
        )
