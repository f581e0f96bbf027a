"""OpenSSF Model Signing over files on disk: hash a model, sign it, verify it against model.sig.

The statement format, its parsing and the manifest comparison are in :mod:`custody.signing.oms`
(which never touches the file system); this module walks and hashes the model with Custody's own
streamed hashing (:mod:`custody.provenance.hashing.files`).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from custody.errors import ArtifactError
from custody.provenance.hashing.files import default_workers, iter_files, sha256_file
from custody.provenance.hashing.manifest import Manifest
from custody.signing.interface import BundleVerifier, Signer
from custody.signing.oms import (
    GIT_PATHS,
    SINGLE_FILE,
    OmsManifest,
    OmsResource,
    OmsVerification,
    check_ignore_path,
    compare_manifests,
    parse_oms_statement,
)
from custody.signing.statement import Statement


def hash_model(model_path: Path, *, ignore_paths: Iterable[str] = (),
               signature_path: Path | None = None, allow_symlinks: bool = False,
               ignore_git_paths: bool = True) -> OmsManifest:
    """Hash a model file or directory into its OMS manifest.

    ``ignore_paths`` are relative to the model directory; a directory ignores all below it. The
    signature file, when inside the model, is ignored and recorded as ignored, as model_signing
    does; so are the git paths (``.git``, ``.github``, ...) unless ``ignore_git_paths`` is off.
    """
    ignored = [check_ignore_path(p) for p in ignore_paths]
    if signature_path is not None and model_path.is_dir():
        rel = relative_to(signature_path, model_path)
        if rel is not None:
            ignored.append(rel)
    if ignore_git_paths:
        ignored.extend(GIT_PATHS)
    recorded = sorted(set(ignored))
    resources = hash_files(model_path, recorded, allow_symlinks)
    serialization_args: dict[str, Any] = {"method": "files", "hash_type": "sha256",
                                          "allow_symlinks": allow_symlinks}
    if recorded and model_path.is_dir():
        serialization_args["ignore_paths"] = recorded
    return OmsManifest(model_name=model_name(model_path), resources=resources,
                       serialization=serialization_args)


def oms_manifest_from(manifest: Manifest, model_path: Path) -> OmsManifest:
    """The OMS manifest of a model already hashed by Custody (no second pass over the bytes).

    The same files, names and ordering as :func:`hash_model` with its defaults: git paths are
    left out, resources are ordered as model_signing orders them, a single file is ``"."``.
    """
    if not manifest.is_directory:
        resources: tuple[OmsResource, ...] = (OmsResource(SINGLE_FILE, manifest.digest),)
        serialization: dict[str, Any] = {"method": "files", "hash_type": "sha256",
                                         "allow_symlinks": False}
    else:
        prefixes = [PurePosixPath(p) for p in GIT_PATHS]
        resources = tuple(sorted(
            (OmsResource(f.relpath, f.sha256) for f in manifest.files
             if not any(PurePosixPath(f.relpath).is_relative_to(p) for p in prefixes)),
            key=lambda r: PurePosixPath(r.name)))
        serialization = {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                         "ignore_paths": sorted(GIT_PATHS)}
    return OmsManifest(model_name=model_name(model_path), resources=resources,
                       serialization=serialization)


def build_oms_statement(model_path: Path, *, ignore_paths: Iterable[str] = (),
                        signature_path: Path | None = None,
                        allow_symlinks: bool = False) -> Statement:
    """The OMS in-toto statement for a model, ready to sign (``statement.to_bytes()``)."""
    return hash_model(model_path, ignore_paths=ignore_paths, signature_path=signature_path,
                      allow_symlinks=allow_symlinks).statement()


def sign_model(model_path: Path, signer: Signer, signature_path: Path, *,
               ignore_paths: Iterable[str] = (), allow_symlinks: bool = False) -> OmsManifest:
    """Sign a model in OMS form and write the bundle to ``signature_path`` (model.sig)."""
    manifest = hash_model(model_path, ignore_paths=ignore_paths, signature_path=signature_path,
                          allow_symlinks=allow_symlinks)
    signature_path.write_text(signer.sign_statement(manifest.statement().to_bytes()),
                              encoding="utf-8")
    return manifest


def verify_model(model_path: Path, signature_path: Path, verifier: BundleVerifier, *,
                 ignore_git_paths: bool = True) -> OmsVerification:
    """Verify ``model_path`` against the OMS signature file ``signature_path``.

    Refusals: the verifier's own (signature, identity, chain); ``oms.*`` for the statement;
    ``oms.changed_file``, ``oms.missing_file``, ``oms.extra_file`` for the model's files.
    """
    source = str(signature_path)
    try:
        text = signature_path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read signature {signature_path}: {exc.strerror or exc}",
                            hint="pass the signature file (model.sig) with --bundle",
                            subject=source) from None
    verified = verifier.verify_bundle(text, source=source)
    expected = parse_oms_statement(verified.payload, source=source)
    ignored = list(expected.ignore_paths)
    if model_path.is_dir():
        rel = relative_to(signature_path, model_path)
        if rel is not None:
            ignored.append(rel)
        if ignore_git_paths:
            ignored.extend(GIT_PATHS)
    allow = bool(expected.serialization.get("allow_symlinks", False))
    actual = hash_files(model_path, ignored, allow)
    compare_manifests(expected, actual, model=str(model_path))
    return OmsVerification(manifest=expected, signer=verified.signer, payload=verified)


def hash_files(model_path: Path, ignored: Iterable[str], allow_symlinks: bool
                ) -> tuple[OmsResource, ...]:
    prefixes = [PurePosixPath(p) for p in ignored]
    single = model_path.is_file()
    planned = [
        (path, SINGLE_FILE if single else rel)
        for path, rel in iter_files(model_path, allow_symlinks=allow_symlinks)
        if single or not any(PurePosixPath(rel).is_relative_to(p) for p in prefixes)
    ]

    def one(item: tuple[Path, str]) -> OmsResource:
        return OmsResource(name=item[1], digest=sha256_file(item[0], follow=True)[1]
                           if single or allow_symlinks else sha256_file(item[0])[1])

    with ThreadPoolExecutor(max_workers=default_workers(),
                            thread_name_prefix="custody-oms") as pool:
        resources = list(pool.map(one, planned))
    return tuple(sorted(resources, key=lambda r: PurePosixPath(r.name)))


def relative_to(path: Path, root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def model_name(model_path: Path) -> str:
    return model_path.name or model_path.resolve().name
