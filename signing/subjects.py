"""Compare a verified statement's subjects with the digests Custody actually computed.

Signature verifiers (sigstore-python's included) check envelopes, not what the envelope talks
about: a valid bundle made for other bytes still verifies. This check closes that gap.
"""

from __future__ import annotations

from collections.abc import Mapping

from custody.errors import VerificationError
from custody.signing.statement import Statement


def check_subjects(statement: Statement | bytes, expected: Mapping[str, str] | str, *,
                   match_names: bool = False, source: str = "statement") -> None:
    """Refuse a verified statement whose subjects are not the artifacts actually hashed.

    ``expected`` is either ``{name: sha256 hex}`` for the artifacts at hand (every one must be
    a subject with that sha256 digest; names are compared too when ``match_names``), or one root
    digest (``hex`` or ``sha256:hex``) that some subject must carry. Subjects beyond those
    expected are allowed (one statement may cover several artifacts).
    """
    stmt = statement if isinstance(statement, Statement) else Statement.from_bytes(statement)
    signed = [(s.name, s.digest.get("sha256", "").lower()) for s in stmt.subjects]
    wanted = ({"": expected} if isinstance(expected, str) else dict(expected))
    missing: list[str] = []
    for name, digest in wanted.items():
        value = digest.lower().removeprefix("sha256:")
        ok = bool(value) and any(
            d == value and (not match_names or not name or n == name) for n, d in signed
        )
        if not ok:
            missing.append(f"{name + ' ' if name else ''}sha256:{value[:16]}…")
    if missing:
        shown = ", ".join(f"{n} sha256:{d[:16]}…" for n, d in signed) or "none"
        raise VerificationError(
            f"{source}: the signature is valid but does not cover {', '.join(missing)} "
            f"(signed subjects: {shown})",
            rule="statement.subject_mismatch",
            hint="the bundle was made for other bytes; the artifact may have been swapped",
            subject=source,
        )
