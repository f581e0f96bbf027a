"""Custody's exceptions: one base class whose subclasses carry user-facing diagnostics.

Every error says *what* failed, *where* (the file, artifact or ledger it concerns) and *what to
do*. The CLI prints ``str(error)`` and the hint, never a traceback, and exits with the class's
``exit_code``: 1 when Custody refused something (verification failed, a finding at or above the
threshold), 2 when it could not do its job (bad usage, unreadable input, broken ledger).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2


class CustodyError(Exception):
    """Base class of every error Custody raises on purpose."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None, subject: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.subject = subject

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its attributes, not by calling __init__ (whose keyword-only arguments
        # pickle cannot pass): an error raised on a Dask worker reaches the client intact.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def diagnostic(self) -> dict[str, str | int | None]:
        """A machine-readable form of the error, for ``--json`` output."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "subject": self.subject,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


def _rebuild(cls: type[CustodyError], args: tuple[object, ...],
             state: dict[str, object]) -> CustodyError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


# --- operational errors (exit 2) -------------------------------------------------------------


class UsageError(CustodyError):
    """The request itself is malformed: bad option, unknown reference syntax."""


class ArtifactError(CustodyError):
    """A path cannot be hashed: missing, unreadable, a special file, an escaping symlink."""


class LoadError(ArtifactError):
    """Verified bytes that the framework cannot load (not Parquet, a pickle beyond weights)."""


class LedgerError(CustodyError):
    """The ledger cannot be found, opened, or read consistently."""


class NotFoundError(LedgerError):
    """A reference (``NAME``, ``NAME@VERSION``, ``sha256:HEX``) names nothing in the ledger."""


class KeyMaterialError(CustodyError):
    """A key or certificate cannot be loaded or generated."""


class OutputError(CustodyError):
    """An output file (``--out``, ``--bundle-out``) cannot be written."""


class SigningError(CustodyError):
    """A statement could not be signed."""


class PolicyFileError(UsageError):
    """The policy file is malformed; the message names the key."""


class VersionConflict(UsageError):
    """A submitted statement was signed for a version that is no longer the next one."""


class WebhookSignatureError(UsageError):
    """A webhook delivery's HMAC signature, timestamp or headers do not check out."""


class RequestError(UsageError):
    """An HTTP request the service refuses before handling it (token, role, size, endpoint).

    ``status`` is the HTTP status it answers with; ``headers`` go on the response."""

    def __init__(self, status: int, message: str, *, hint: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.headers = headers


class ExecutionError(CustodyError):
    """The executor cannot run the work: its scheduler is unreachable, its package (the extra
    ``custody[dask]``) is missing, or a task could not finish (its workers kept dying). Nothing
    was recorded; the message names the executor's address."""


class ReportedOutcome(CustodyError):
    """A command that has already shown its report ends with this report's exit code.

    The CLI prints nothing more for it: the report (a scan table, its JSON) said why."""

    def __init__(self, exit_code: int, message: str = "see the report above"):
        super().__init__(message)
        self.exit_code = exit_code


# --- refusals (exit 1) -----------------------------------------------------------------------


class RefusedError(CustodyError):
    """Custody looked and said no. Subclasses say why."""

    exit_code = EXIT_REFUSED

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        hint: str | None = None,
        subject: str | None = None,
    ):
        super().__init__(message, hint=hint, subject=subject)
        self.rule = rule

    def diagnostic(self) -> dict[str, str | int | None]:
        out = super().diagnostic()
        out["rule"] = self.rule
        return out


class VerificationError(RefusedError):
    """The bytes, signature, record or chain do not check out: tampering or distrust."""


class ScanRefusedError(RefusedError):
    """A scanner reported a finding at or above the refusal threshold."""


# --- tampering and broken proofs (exit 1) ----------------------------------------------------


class MerkleProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not check out: tampering or a forked log."""

    def __init__(
        self,
        message: str,
        *,
        rule: str = "merkle.proof_invalid",
        hint: str | None = None,
        subject: str | None = None,
    ):
        super().__init__(message, rule=rule, hint=hint, subject=subject)


_CHECKPOINT_HINT = (
    "the checkpoint was altered or signed by another key: export a fresh one with "
    "`custody audit checkpoint`, and check which verifier key (vkey) you trust"
)


class CheckpointError(VerificationError):
    """A signed note or checkpoint is malformed, forged, or not signed by a trusted key."""

    def __init__(
        self,
        message: str,
        *,
        rule: str = "checkpoint.malformed",
        hint: str | None = _CHECKPOINT_HINT,
        subject: str | None = None,
    ):
        super().__init__(message, rule=rule, hint=hint, subject=subject)


class ReceiptError(VerificationError):
    """A receipt cannot be parsed."""

    def __init__(
        self,
        message: str,
        *,
        rule: str = "receipt.malformed",
        hint: str | None = "export a fresh receipt with `custody audit prove REF`",
        subject: str | None = None,
    ):
        super().__init__(message, rule=rule, hint=hint, subject=subject)


class AuditError(VerificationError):
    """The ledger does not match its signed log."""


# --- scanner-internal signals ----------------------------------------------------------------
# Raised and caught inside the scanners; each one ends as a Finding (a refusal with its rule),
# never as an exit code of its own. Kept here so that every exception class lives in one file.


class CorruptStream(OSError):
    """Compressed data that cannot be decompressed."""


class ZipBroken(Exception):
    """The archive or a member cannot be read at all."""


class PickleBreak(Exception):
    """The stream cannot be read further as a pickle (truncated, malformed, unknown opcode)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


class LimitHit(Exception):
    """A bound on the work for one file was reached; ``rule`` names which one."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class OnnxMalformed(Exception):
    """An ONNX protobuf cannot be decoded."""


class GgufMalformed(Exception):
    """A GGUF header cannot be decoded."""


class DatasetReadError(ValueError):
    """The input is not a dataset this reader understands (reported as a finding, not a pass)."""
