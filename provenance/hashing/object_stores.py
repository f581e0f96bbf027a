"""Which object stores Custody reads through fsspec, the extra each needs, and their errors.

One table (:data:`PROTOCOLS`) says, per URI scheme, which package implements it, which
``custody[...]`` extra installs that package, how its credentials are found (the hint of every
credential error) and which open argument pins the exact object version that was listed. A
scheme whose package is absent is a :class:`~custody.errors.UsageError` naming the extra
(``pip install 'custody[gcs]'``), before anything is read.

Store errors become :class:`~custody.errors.ArtifactError` (exit 2) naming the redacted URI:
a missing object or bucket, denied or missing credentials, an unreachable endpoint. Their text
goes through :func:`~custody.provenance.hashing.locations.scrub`, so no credential is ever shown.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from custody.errors import ArtifactError, CustodyError, UsageError
from custody.provenance.hashing.locations import is_uri, query_values, redact_uri, scrub

_DOCS = "docs/object-stores.md"


@dataclass(frozen=True)
class Protocol:
    """One URI scheme: its package, the extra that installs it, and its credential chain."""

    scheme: str
    module: str | None  # the package fsspec loads for it; None: part of fsspec itself
    extra: str | None  # custody[EXTRA]
    credentials: str  # how the store's usual chain finds credentials
    listable: bool = True  # a prefix can be listed (https:// is one object, read-only)
    defaults: tuple[tuple[str, Any], ...] = ()  # filesystem options Custody sets
    pin: str | None = None  # the open() argument that pins the listed version


_S3 = ("s3fs finds credentials as boto3 does: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and "
       "AWS_SESSION_TOKEN), AWS_PROFILE in ~/.aws/credentials or ~/.aws/config, else the "
       "instance or container role; AWS_ENDPOINT_URL_S3 points it at another S3 server")
_GCS = ("gcsfs uses Google's default credentials: GOOGLE_APPLICATION_CREDENTIALS (a service "
        "account file) or `gcloud auth application-default login`, else the metadata server")
_AZURE = ("adlfs reads AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, "
          "AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING, else Azure's "
          "DefaultAzureCredential (environment, managed identity, `az login`)")
_HF = "huggingface_hub reads HF_TOKEN, else the token saved by `hf auth login`"
_HTTP = ("https:// is read without credentials of Custody's; a signed URL carries its own in "
         "its query string, which is used to read and never recorded or shown")
_LOCAL = "local files are read with this process's own permissions"

_PROTOCOLS: dict[str, Protocol] = {
    p.scheme: p for p in (
        Protocol("s3", "s3fs", "s3", _S3, defaults=(("version_aware", True),), pin="version_id"),
        Protocol("s3a", "s3fs", "s3", _S3, defaults=(("version_aware", True),),
                 pin="version_id"),
        Protocol("gs", "gcsfs", "gcs", _GCS),
        Protocol("gcs", "gcsfs", "gcs", _GCS),
        Protocol("az", "adlfs", "azure", _AZURE),
        Protocol("abfs", "adlfs", "azure", _AZURE),
        Protocol("abfss", "adlfs", "azure", _AZURE),
        Protocol("hf", "huggingface_hub", "hf", _HF),
        Protocol("http", "aiohttp", "http", _HTTP, listable=False),
        Protocol("https", "aiohttp", "http", _HTTP, listable=False),
        Protocol("file", None, None, _LOCAL),
        Protocol("memory", None, None, _LOCAL),
    )
}


@dataclass(frozen=True)
class Target:
    """A URI resolved to its filesystem and path, with what may be shown of it."""

    protocol: Protocol
    fs: Any  # an fsspec AbstractFileSystem
    path: str  # the filesystem's path (for https://, the full URL)
    shown: str  # the redacted URI, for messages and the ledger
    secrets: tuple[str, ...]  # the URI's userinfo and query values, scrubbed from messages


def _protocol_of(uri: str) -> Protocol:
    scheme = uri.split("://", 1)[0].lower()
    if "::" in scheme:
        shown = redact_uri(uri.rsplit("::", 1)[-1])
        raise UsageError(f"{shown}: chained fsspec URLs (a::b://...) are not accepted",
                         hint="give the object store's own URI (s3://bucket/key)",
                         subject=shown)
    found = _PROTOCOLS.get(scheme)
    if found is None:
        raise UsageError(
            f"{redact_uri(uri)}: {scheme}:// is not an object store Custody reads",
            hint="use one of " + ", ".join(f"{s}://" for s in _PROTOCOLS) + f" (see {_DOCS})",
            subject=redact_uri(uri))
    return found


def open_target(uri: str, storage_options: dict[str, Any] | None = None) -> Target:
    """The filesystem for ``uri`` (a fresh instance, no listing cache); a missing package is a
    UsageError naming the extra that installs it."""
    if not is_uri(uri):
        raise UsageError(f"{uri} is not a URI", hint="give scheme://bucket/key", subject=uri)
    protocol = _protocol_of(uri)
    shown = redact_uri(uri)
    if protocol.module is not None and importlib.util.find_spec(protocol.module) is None:
        raise _missing_extra(protocol, shown)
    fsspec = importlib.import_module("fsspec")
    try:
        cls = fsspec.get_filesystem_class(protocol.scheme)
    except (ImportError, ValueError):
        raise _missing_extra(protocol, shown) from None
    options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False,
                               **dict(protocol.defaults), **(storage_options or {})}
    secrets = tuple(query_values(uri)) + tuple(
        str(v) for v in (storage_options or {}).values() if isinstance(v, str))
    try:
        fs = cls(**options)
    except store_errors(protocol) as exc:
        raise translate(exc, shown, protocol, secrets) from None
    path = uri if not protocol.listable else cls._strip_protocol(uri)
    if not str(path).strip("/"):
        raise UsageError(f"{shown} names no bucket or path", subject=shown,
                         hint=f"give {protocol.scheme}://BUCKET/KEY or a prefix ending in /")
    return Target(protocol, fs, str(path), shown, secrets)


def _missing_extra(protocol: Protocol, shown: str) -> UsageError:
    return UsageError(
        f"{shown}: reading {protocol.scheme}:// needs the package {protocol.module}, which is "
        f"not installed: it comes with the extra custody[{protocol.extra}]",
        hint=f"pip install 'custody[{protocol.extra}]'", subject=shown)


def store_errors(protocol: Protocol) -> tuple[type[BaseException], ...]:
    """The exception classes a store's calls raise (every fsspec backend raises OSError for
    missing objects and denied access; some let their client library's own errors through)."""
    found: list[type[BaseException]] = [OSError]
    for module, names in _CLIENT_ERRORS.get(protocol.module or "", ()):
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        found.extend(getattr(loaded, n) for n in names if hasattr(loaded, n))
    return tuple(found)


_CLIENT_ERRORS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "s3fs": (("botocore.exceptions", ("BotoCoreError", "ClientError")),),
    "gcsfs": (("google.auth.exceptions", ("GoogleAuthError",)),
              ("gcsfs.retry", ("HttpError",))),
    "adlfs": (("azure.core.exceptions", ("AzureError",)),),
    "huggingface_hub": (("huggingface_hub.errors", ("HfHubHTTPError",)),),
    "aiohttp": (("aiohttp", ("ClientError",)),),
}


def changed_errors(protocol: Protocol) -> tuple[type[BaseException], ...]:
    """Errors that mean "the object is no longer the one listed" (an If-Match that failed)."""
    if protocol.module == "s3fs":
        from s3fs.utils import FileExpired  # type: ignore[import-untyped]

        return (FileExpired,)
    return ()


def translate(exc: BaseException, shown: str, protocol: Protocol,
              secrets: tuple[str, ...] = ()) -> CustodyError:
    """A store's error as an ArtifactError naming the redacted URI, with no credential in it."""
    reason = scrub(str(exc) or type(exc).__name__, secrets)
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return ArtifactError(
            f"{shown}: no such object, prefix or bucket ({reason})",
            hint="check the bucket and the key; a prefix must hold at least one object",
            subject=shown)
    if isinstance(exc, PermissionError) or name in {"NoCredentialsError",
                                                    "PartialCredentialsError",
                                                    "DefaultCredentialsError",
                                                    "ClientAuthenticationError"}:
        return ArtifactError(
            f"{shown}: the store refused the credentials ({reason})",
            hint=f"{protocol.credentials} (see {_DOCS})", subject=shown)
    return ArtifactError(
        f"cannot read {shown}: {name}: {reason}",
        hint=f"check that the store is reachable; {protocol.credentials} (see {_DOCS})",
        subject=shown)
