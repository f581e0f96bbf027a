"""Where hashed bytes came from: an object's URI and identity, with no credentials in either.

An :class:`ObjectLocation` is what a record keeps beside each file of its manifest when the
artifact was read from an object store (:mod:`custody.provenance.hashing.objects`): the object's
URI and its **identity** (size, and the version id / ETag / generation the store gives), so a
later check can tell cheaply whether the object changed. The SHA-256 of the bytes stays the truth:
an identity only says "this is still the object that was hashed" or "it is not".

URIs are kept and shown **redacted** (:func:`redact_uri`): no userinfo, no query string, no
fragment (a signed URL's signature, a SAS token, ``?versionId=`` all live there), so nothing a
store could accept as a credential reaches the ledger, a log line or an error message. Text from
a store's own errors goes through :func:`scrub` before it is shown.

This module imports no object-store package: the signed statement parses locations with it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(::[A-Za-z][A-Za-z0-9+.-]*)*://")
# identity fields, in the order they are shown; each one optional except the size
_IDENTITY_FIELDS = ("version_id", "etag", "generation", "modified")
# a URL's userinfo and query anywhere in a store's error text
_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_QUERY = re.compile(r"(://[^\s?#'\"]*)[?#][^\s'\"]*")
# credentials by the names each store's usual chain reads them from
_SECRET_ENV = re.compile(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|ACCESS_KEY|ACCOUNT_KEY|SAS|SIGNATURE|"
                         r"CONNECTION_STRING|API_KEY")
_REDACTED = "[redacted]"


def is_uri(text: str) -> bool:
    """``scheme://...``: an object-store URI rather than a local path."""
    return bool(_URI.match(text))


def redact_uri(uri: str) -> str:
    """The URI without userinfo, query string or fragment (``s3://bucket/key``)."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme.lower()}://{netloc}{parts.path}"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """A store's error text made safe to show: URLs redacted, credential values removed.

    Removes every value of the environment variables the stores' credential chains read (and
    the ``secrets`` given, e.g. a signed URL's query values) wherever it appears.
    """
    out = _QUERY.sub(lambda m: m.group(1) + "?" + _REDACTED, _USERINFO.sub("", text))
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k.upper()) and len(v) >= 6}
    values.update(s for s in secrets if len(s) >= 6)
    for value in sorted(values, key=len, reverse=True):
        out = out.replace(value, _REDACTED)
    return out


def query_values(uri: str) -> list[str]:
    """The values of a URI's userinfo and query string: for :func:`scrub`."""
    if not is_uri(uri):
        return []
    parts = urlsplit(uri)
    found = [p.split("=", 1)[-1] for p in parts.query.split("&") if p]
    if "@" in parts.netloc:
        found.extend(parts.netloc.rsplit("@", 1)[0].split(":"))
    return [v for v in found if v]


@dataclass(frozen=True)
class ObjectIdentity:
    """What the store says about one object, to tell cheaply whether it is still the same.

    ``version_id`` (S3, Azure), ``etag`` (S3, Azure, HTTP), ``generation`` (GCS), ``modified``
    (stores that give none of these: a modification time or an inode). Absent fields are None.
    """

    size: int
    version_id: str | None = None
    etag: str | None = None
    generation: str | None = None
    modified: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size}
        for name in _IDENTITY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ObjectIdentity:
        fields = {name: _text(data.get(name), name) for name in _IDENTITY_FIELDS}
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("size")
        return cls(size=size, **fields)

    def differs(self, other: ObjectIdentity) -> list[str]:
        """The fields that both identities have and that differ (``[]``: the same object)."""
        out = ["size"] if self.size != other.size else []
        for name in _IDENTITY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None) or mine != theirs:
                out.append(name)
        return out

    def describe(self) -> str:
        shown = [f"{name} {getattr(self, name)}" for name in _IDENTITY_FIELDS
                 if getattr(self, name) is not None]
        return ", ".join([*shown, f"{self.size} bytes"])


@dataclass(frozen=True)
class ObjectLocation:
    """One file of a manifest and the object it was read from."""

    relpath: str
    uri: str  # redacted
    identity: ObjectIdentity

    def to_json(self) -> dict[str, Any]:
        return {"relpath": self.relpath, "uri": self.uri, **self.identity.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ObjectLocation:
        uri = str(data["uri"])
        if redact_uri(uri) != uri:
            raise ValueError("uri")  # a location never carries userinfo or a query string
        return cls(relpath=str(data["relpath"]), uri=uri,
                   identity=ObjectIdentity.from_json(data))


@dataclass(frozen=True)
class Locations:
    """The ``locations`` claim of a record: the source URI and one location per file."""

    source: str  # redacted
    objects: tuple[ObjectLocation, ...]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Locations:
        source = str(data["source"])
        if redact_uri(source) != source:
            raise ValueError("source")
        objects = data["objects"]
        if not isinstance(objects, list):
            raise TypeError("objects")
        return cls(source=source, objects=tuple(ObjectLocation.from_json(o) for o in objects))

    def by_relpath(self) -> dict[str, ObjectLocation]:
        return {o.relpath: o for o in self.objects}


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(name)
    return value
