"""The ``.custody/`` folder: where the ledger is, which key signs, which keys are trusted.

Resolution order for the ledger, like git: ``--ledger URL``, else ``$CUSTODY_LEDGER``, else the
nearest ``.custody/`` found upward from the working directory. ``config.toml`` inside it holds::

    ledger = "ledger.db"                 # a path (relative to .custody/) or a database URL
    signing_key = "keys/signing.key"     # used by `custody record` unless --key is given
    trusted_keys = ["keys/signing.pub"]  # used by `custody verify` unless --key is given
    ledger_key = "keys/ledger.skey"      # Ed25519 key that signs the ledger's checkpoints
    ledger_vkey = "custody.ledger/...+..."  # the pinned checkpoint verifier key

Verdicts (verify, audit, lineage marks, the service) check the ledger's checkpoints with a pinned
key, never with the one stored in the database: ``--ledger-vkey VKEY`` where a command has it,
else ``$CUSTODY_LEDGER_VKEY``, else ``ledger_vkey`` here (written by ``init``); a ledger opened
with none of them is refused (``ledger.key_unpinned``).

``init`` also writes ``.custody/.gitignore`` so that ``git add .`` leaves the private keys and
the SQLite ledger out while the config and public keys stay committable, and commands refuse a
private key file that group or others may read or write.
"""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import KeyMaterialError, LedgerError, UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.log.checkpoint import NoteSigner, NoteVerifier
    from custody.validators.interface import ScanOptions

DIRNAME = ".custody"
CONFIG = "config.toml"
_ENV_LEDGER = "CUSTODY_LEDGER"
ENV_LEDGER_VKEY = "CUSTODY_LEDGER_VKEY"  # as custody.provenance.ledger.store.ENV_LEDGER_VKEY
_GITIGNORE = """\
# Written by `custody init`. Private keys and the local SQLite ledger never go into git;
# config.toml and the public keys (keys/*.pub) may be committed.
keys/*.key
keys/*.skey
*.db
*.db-wal
*.db-shm
*.db-journal
"""


@dataclass(frozen=True)
class Workspace:
    """A resolved configuration: the ledger URL plus the key paths that go with it."""

    ledger_url: str
    home: Path | None = None  # the .custody/ folder, when there is one
    signing_key: Path | None = None
    trusted_keys: tuple[Path, ...] = field(default_factory=tuple)
    ledger_key: Path | None = None
    ledger_vkey: str | None = None

    def ledger_signer(self) -> NoteSigner | None:
        """The checkpoint-signing key, when this workspace may append."""
        if self.ledger_key is None:
            return None
        from custody.provenance.log.checkpoint import NoteSigner

        check_private_key_file(self.ledger_key)
        try:
            text = self.ledger_key.read_text(encoding="utf-8")
        except OSError as exc:
            raise LedgerError(f"cannot read ledger key {self.ledger_key}: {exc.strerror}",
                              subject=str(self.ledger_key)) from None
        return NoteSigner.from_skey(text.strip())

    def ledger_verifier(self) -> NoteVerifier | None:
        """The pinned checkpoint verifier key: ``$CUSTODY_LEDGER_VKEY``, else this workspace's
        ``ledger_vkey``; None if neither pins one."""
        pinned = self.ledger_pin()
        return pinned[0] if pinned is not None else None

    def ledger_pin(self) -> tuple[NoteVerifier, str] | None:
        """The pinned checkpoint verifier key and where it was pinned (for messages)."""
        env = os.environ.get(ENV_LEDGER_VKEY, "").strip()
        if env:
            return _parse_vkey(env, f"${ENV_LEDGER_VKEY}"), f"${ENV_LEDGER_VKEY}"
        if self.ledger_vkey is None:
            return None
        where = f"{self.home / CONFIG}" if self.home is not None else "the workspace"
        return _parse_vkey(self.ledger_vkey, f"ledger_vkey in {where}"), f"ledger_vkey in {where}"

    def policy_file(self) -> Path | None:
        """``.custody/policy.toml``, the workspace's default policy, when there is one."""
        path = self.home / "policy.toml" if self.home is not None else None
        return path if path is not None and path.is_file() else None

    def scan_options(self) -> ScanOptions:
        """How ``record`` scans here: the allowed pickle globals of the workspace policy, as
        ``scan --policy`` and ``verify`` read them."""
        from custody.validators.interface import ScanOptions

        path = self.policy_file()
        if path is None:
            return ScanOptions()
        from custody.provenance.policy.file import load_policy

        policy = load_policy(path)
        return ScanOptions(extra_safe_globals=policy.extra_safe_globals,
                           pickle_profiles=policy.pickle_profiles)

    def open_ledger(self, *, append: bool = False) -> Ledger:
        from custody.provenance.ledger.store import Ledger, PinnedKey

        self._check_ledger_present()
        pin = self.ledger_pin()
        return Ledger.open(self.ledger_url, signer=self.ledger_signer() if append else None,
                           pinned=PinnedKey(*pin) if pin is not None else None)


    def _check_ledger_present(self) -> None:
        """A workspace whose pinned ledger lost its SQLite file says so: never an empty one."""
        if self.home is None or self.ledger_vkey is None or not self.ledger_url.startswith(
                "sqlite:///"):
            return
        db = Path(self.ledger_url.removeprefix("sqlite:///"))
        if db.exists():
            return
        origin = self.ledger_vkey.split("+", 1)[0]
        raise LedgerError(
            f"the ledger database {db} of the workspace {self.home} is missing: the ledger "
            f"{origin} pinned in its config.toml, and its whole history, are gone from here",
            hint=f"restore {db} from a backup (with its -wal file, if the backup has one); only "
            f"to give up that history, move {self.home} aside and run `custody init` again "
            "(new keys and an empty ledger)",
            subject=str(db),
        )


def _parse_vkey(text: str, where: str) -> NoteVerifier:
    from custody.provenance.log.checkpoint import NoteVerifier

    try:
        return NoteVerifier.from_vkey(text)
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            f"the ledger key pinned by {where} is unusable: {exc.message}",
            hint="a verifier key reads NAME+KEYID+BASE64: copy the ledger_vkey line of the "
            ".custody/config.toml of the workspace that created the ledger", subject=where,
        ) from None


def check_private_key_file(path: Path) -> None:
    """Refuse a private key file that group or others may read or write (POSIX only)."""
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return  # missing or unreadable: the load that follows says so with its own hint
    if mode & 0o077:
        raise KeyMaterialError(
            f"private key {path} is accessible to group or others (mode {mode:04o})",
            hint=f"chmod 600 {path}",
            subject=str(path),
        )


def _to_url(location: str, base: Path | None = None) -> str:
    """Turn a ledger location (URL or filesystem path) into an SQLAlchemy URL."""
    if "://" in location:
        return location
    path = Path(location).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir():
        home = path if path.name == DIRNAME else path / DIRNAME
        if (home / CONFIG).is_file():
            return load_workspace(home).ledger_url
        raise LedgerError(
            f"{path} is a directory, not a ledger",
            hint="pass a database file or URL, or a folder that holds a .custody/ workspace",
            subject=str(path),
        )
    return f"sqlite:///{path.absolute()}"


def find_home(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / DIRNAME
        if (candidate / CONFIG).is_file():
            return candidate
    return None


def load_workspace(home: Path) -> Workspace:
    config_path = home / CONFIG
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LedgerError(
            f"cannot read {config_path}: {exc.strerror or exc}", subject=str(config_path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise LedgerError(
            f"{config_path} is not valid TOML: {exc}", subject=str(config_path)
        ) from None
    unknown = set(data) - {"ledger", "signing_key", "trusted_keys", "ledger_key", "ledger_vkey"}
    if unknown:
        raise LedgerError(
            f"{config_path}: unknown setting(s) {', '.join(sorted(unknown))}",
            subject=str(config_path),
        )
    ledger = data.get("ledger", "ledger.db")
    signing = data.get("signing_key")
    trusted = data.get("trusted_keys", [])
    ledger_key = data.get("ledger_key")
    vkey = data.get("ledger_vkey")
    if not isinstance(ledger, str) or not isinstance(trusted, list):
        raise LedgerError(f"{config_path}: wrong value types", subject=str(config_path))
    return Workspace(
        ledger_url=_to_url(ledger, home),
        home=home,
        signing_key=home / signing if isinstance(signing, str) else None,
        trusted_keys=tuple(home / str(p) for p in trusted),
        ledger_key=home / ledger_key if isinstance(ledger_key, str) else None,
        ledger_vkey=vkey if isinstance(vkey, str) else None,
    )


def resolve(ledger: str | None = None, *, start: Path | None = None) -> Workspace:
    """Find the workspace for a command, following the documented resolution order."""
    home = find_home(start)
    local = load_workspace(home) if home is not None else None
    explicit = ledger or os.environ.get(_ENV_LEDGER)
    if explicit:
        named = _workspace_folder(explicit)
        if named is not None:  # a folder holding a workspace: that workspace, keys and all
            return load_workspace(named)
        url = _to_url(explicit)
        if local is not None and url == local.ledger_url:
            return local
        owner = _sqlite_owner(url)
        if owner is not None:  # the SQLite file of a workspace: as if its folder were named
            return owner
        if local is not None:  # another ledger: its checkpoint keys are not this workspace's
            return Workspace(url, local.home, local.signing_key, local.trusted_keys)
        return Workspace(url)
    if local is None:
        raise UsageError(
            "no ledger: no .custody/ folder here or above, and no --ledger or $CUSTODY_LEDGER",
            hint="run `custody init` to create one here, or pass --ledger URL",
        )
    return local


def _sqlite_owner(url: str) -> Workspace | None:
    """The workspace whose config names this SQLite ledger file (``.custody/ledger.db``), so
    that a path or URL to that file pins the workspace's ledger key as naming its folder does."""
    if not url.startswith("sqlite:///"):
        return None
    home = Path(url.removeprefix("sqlite:///")).parent
    if home.name != DIRNAME or not (home / CONFIG).is_file():
        return None
    try:
        owner = load_workspace(home)
    except LedgerError:
        return None
    return owner if owner.ledger_url == url else None


def _workspace_folder(location: str) -> Path | None:
    if "://" in location:
        return None
    path = Path(location).expanduser()
    home = path if path.name == DIRNAME else path / DIRNAME
    return home if path.is_dir() and (home / CONFIG).is_file() else None


def _write_config(home: Path, *, ledger: str, signing_key: str, trusted_keys: list[str],
                 ledger_key: str | None, ledger_vkey: str) -> None:
    lines = [
        "# Custody workspace configuration (see docs/usage.md)",
        f"ledger = {_toml_str(ledger)}",
        f"signing_key = {_toml_str(signing_key)}",
        "trusted_keys = [" + ", ".join(_toml_str(k) for k in trusted_keys) + "]",
        *([f"ledger_key = {_toml_str(ledger_key)}"] if ledger_key else []),
        f"ledger_vkey = {_toml_str(ledger_vkey)}",
        "",
    ]
    (home / CONFIG).write_text("\n".join(lines), encoding="utf-8")


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_workspace(
    directory: Path, *, ledger: str | None = None, ledger_key: Path | None = None
) -> Workspace:
    """Create ``DIRECTORY/.custody/`` with a signing key, a config and a ledger.

    With ``ledger`` naming a database that already holds a Custody ledger, connect to it: pin its
    checkpoint key, and append only if ``ledger_key`` (its private checkpoint key) is given.
    """
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.log.checkpoint import NoteSigner
    from custody.signing.keys import generate_key_pair

    home = directory.absolute() / DIRNAME
    if (home / CONFIG).exists():
        raise UsageError(
            f"{home} already exists: this folder is already a Custody workspace",
            subject=str(home),
        )
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", subject=str(directory))
    url = _to_url(ledger, home) if ledger else _to_url("ledger.db", home)
    created = not home.exists()
    try:
        (home / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
        (home / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")
        generate_key_pair(home / "keys" / "signing")
        existing = _existing_ledger_vkey(url)
        if existing is None:
            signer = NoteSigner.generate(f"custody.ledger/{uuid.uuid4().hex[:16]}")
            _write_secret(home / "keys" / "ledger.skey", signer.skey + "\n")
            key_ref: str | None = "keys/ledger.skey"
            vkey = signer.verifier().vkey
            Ledger.create(url, signer=signer).close()
        else:
            vkey = _joined_vkey(existing, url)
            key_ref = str(ledger_key.absolute()) if ledger_key else None
            if ledger_key is not None:
                _check_join_key(ledger_key, vkey)
        _write_config(home, ledger=ledger or "ledger.db", signing_key="keys/signing.key",
                     trusted_keys=["keys/signing.pub"], ledger_key=key_ref, ledger_vkey=vkey)
        return load_workspace(home)
    except BaseException:
        if created:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
        raise


def _joined_vkey(stored: str, url: str) -> str:
    """The key to pin when joining an existing ledger: the database's (trust on first use),
    unless ``$CUSTODY_LEDGER_VKEY`` pins one already: then the two must agree."""
    from custody.provenance.ledger.engine import redact

    pinned = os.environ.get(ENV_LEDGER_VKEY, "").strip()
    if pinned and pinned != stored:
        raise KeyMaterialError(
            f"the ledger {redact(url)} names the checkpoint key {stored.split('+', 1)[0]!r} "
            f"({'+'.join(stored.split('+')[:2])}), but ${ENV_LEDGER_VKEY} pins "
            f"{'+'.join(pinned.split('+')[:2])}: it is not the ledger you meant, or it was "
            "re-keyed", hint=f"check the URL; unset {ENV_LEDGER_VKEY} only if you trust this "
            "database's key", subject=redact(url))
    return pinned or stored


def _check_join_key(path: Path, vkey: str) -> None:
    """The key given to join an existing ledger must be that ledger's checkpoint key."""
    from custody.provenance.log.checkpoint import NoteSigner

    check_private_key_file(path)
    try:
        signer = NoteSigner.from_skey(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise KeyMaterialError(f"cannot read ledger key {path}: {exc.strerror}",
                               subject=str(path)) from None
    if signer.verifier().vkey != vkey:
        raise KeyMaterialError(
            f"{path} is the checkpoint key {signer.name!r}, not this ledger's "
            f"({vkey.split('+', 1)[0]!r})",
            hint="copy keys/ledger.skey from the workspace that created the ledger",
            subject=str(path),
        )


def _existing_ledger_vkey(url: str) -> str | None:
    from custody.provenance.ledger.engine import make_engine
    from custody.provenance.ledger.migrate import current_revision

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    from sqlalchemy.exc import SQLAlchemyError

    from custody.provenance.ledger.engine import open_error

    engine = make_engine(url, must_exist=False)
    try:
        try:
            revision = current_revision(engine)
        except SQLAlchemyError as exc:
            raise open_error(engine, url, exc) from None
        if revision is None:
            return None
        from custody.provenance.ledger.store import Ledger

        return Ledger(engine, url).meta().get("checkpoint_vkey")
    finally:
        engine.dispose()


def _write_secret(path: Path, text: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
