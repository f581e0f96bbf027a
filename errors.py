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

    def diagnostic(self) -> dict[str, str | int | None]:
        """A machine-readable form of the error, for ``--json`` output."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "subject": self.subject,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


# --- operational errors (exit 2) -------------------------------------------------------------


class UsageError(CustodyError):
    """The request itself is malformed: bad option, unknown reference syntax."""


class ArtifactError(CustodyError):
    """A path cannot be hashed: missing, unreadable, a special file, an escaping symlink."""


class LedgerError(CustodyError):
    """The ledger cannot be found, opened, or read consistently."""


class NotFoundError(LedgerError):
    """A reference (``NAME``, ``NAME@VERSION``, ``sha256:HEX``) names nothing in the ledger."""


class KeyMaterialError(CustodyError):
    """A key or certificate cannot be loaded or generated."""


class SigningError(CustodyError):
    """A statement could not be signed."""


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
