"""MLflow's REST API as the registry gate uses it (API 2.0, standard library): a version's
tags, aliases and download URI, and downloading a version's artifacts into a private directory
(``mlflow-artifacts:`` through the tracking server, other remote URIs through the MLflow client of
the ``custody[mlflow]`` extra). The gate itself: ``mlflow.py``."""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from custody.errors import ArtifactError, LedgerError, NotFoundError, UsageError

_MAX_FILES = 100_000  # files downloaded for one version
_CHUNK = 1 << 20
_EXTRA = "pip install 'custody[mlflow]' where `custody serve` runs (it brings mlflow-skinny)"


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]


class MlflowRest:
    """The MLflow REST calls the gate makes (API 2.0), with the standard library."""

    def __init__(self, tracking_uri: str, token: str | None = None, timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(tracking_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"MLflow tracking URI {tracking_uri!r} is not http(s)",
                             hint="set CUSTODY_MLFLOW_TRACKING_URI to http(s)://HOST:PORT")
        self.base = tracking_uri.rstrip("/")
        self.netloc = parsed.netloc
        self.token = token
        self.timeout = timeout

    def _open(self, method: str, path: str, *, params: dict[str, str] | None = None,
              body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base}/api/2.0/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s)
            url, data=json.dumps(body).encode() if body is not None else None,
            headers=headers, method=method)
        what = path.partition("?")[0]
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise NotFoundError(f"MLflow has no {what} for {params or body}",
                                    hint="check the model name and version in MLflow") from None
            raise LedgerError(f"MLflow refused {method} {what}: HTTP {exc.code}",
                              hint="check the tracking URI, MLFLOW_TRACKING_TOKEN and the "
                              "token's permissions on the model") from None
        except (urllib.error.URLError, OSError) as exc:
            raise LedgerError(f"MLflow is unreachable for {what}: {exc}",
                              hint="check CUSTODY_MLFLOW_TRACKING_URI and that the tracking "
                              "server is up; MLflow retries the delivery") from None

    def _json(self, method: str, path: str, *, params: dict[str, str] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._open(method, f"mlflow/{path}", params=params, body=body) as reply:
            raw = reply.read()
        try:
            data = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LedgerError(f"MLflow answered {path} with something that is not JSON") from None
        return data if isinstance(data, dict) else {}

    def get_model_version(self, name: str, version: str) -> ModelVersionInfo:
        data = self._json("GET", "model-versions/get", params={"name": name, "version": version})
        mv = data.get("model_version")
        if not isinstance(mv, dict):
            raise LedgerError(f"MLflow answered model-versions/get for {name} {version} "
                              "without a model_version")
        tags = {str(t.get("key")): str(t.get("value")) for t in mv.get("tags") or []
                if isinstance(t, dict)}
        return ModelVersionInfo(name, version, str(mv.get("source") or ""), tags,
                                tuple(str(a) for a in mv.get("aliases") or []))

    def download_uri(self, name: str, version: str) -> str:
        data = self._json("GET", "model-versions/get-download-uri",
                          params={"name": name, "version": version})
        uri = data.get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise ArtifactError(f"MLflow gives no download URI for {name} version {version}",
                                subject=f"{name}/{version}")
        return uri

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._json("POST", "model-versions/set-tag",
                   body={"name": name, "version": version, "key": key, "value": value})

    def delete_tag(self, name: str, version: str, key: str) -> None:
        self._json("DELETE", "model-versions/delete-tag",
                   body={"name": name, "version": version, "key": key})

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._json("POST", "registered-models/alias",
                   body={"name": name, "alias": alias, "version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        self._json("DELETE", "registered-models/alias", body={"name": name, "alias": alias})

    # the tracking server's artifact proxy (mlflow-artifacts:)

    def _artifact_files(self, path: str) -> list[dict[str, Any]]:
        with self._open("GET", "mlflow-artifacts/artifacts", params={"path": path}) as reply:
            raw = reply.read()
        try:
            files = json.loads(raw or b"{}").get("files") or []
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            raise LedgerError("MLflow's artifact listing is not JSON") from None
        return [f for f in files if isinstance(f, dict)]

    def _artifact_bytes(self, path: str, dest: Path) -> None:
        quoted = urllib.parse.quote(path, safe="/")
        try:
            reply = self._open("GET", f"mlflow-artifacts/artifacts/{quoted}")
        except NotFoundError:
            raise ArtifactError(f"MLflow's artifact store has no {path}", subject=path) from None
        with reply, dest.open("xb") as out:
            shutil.copyfileobj(reply, out, _CHUNK)

    def download_proxied(self, uri: str, dest: Path) -> Path:
        """Download ``mlflow-artifacts:`` URI ``uri`` (a file or a directory tree) to ``dest``
        (which must not exist); the local file or directory."""
        parsed = urllib.parse.urlsplit(uri)
        if parsed.netloc and parsed.netloc != self.netloc:
            raise ArtifactError(f"{uri} names another artifact server than the tracking server "
                                f"{self.netloc}", subject=uri)
        root = parsed.path.strip("/")
        if not root:
            raise ArtifactError(f"{uri} names no artifact path", subject=uri)
        files = self._artifact_files(root)
        if not files:  # a file, or nothing
            self._artifact_bytes(root, dest)
            return dest
        dest.mkdir()
        pending = [(root, dest, files)]
        count = 0
        while pending:
            remote, local, entries = pending.pop()
            for entry in entries:
                name = _safe_name(str(entry.get("path", "")), uri)
                if entry.get("is_dir"):
                    (local / name).mkdir()
                    sub = f"{remote}/{name}"
                    pending.append((sub, local / name, self._artifact_files(sub)))
                    continue
                count += 1
                if count > _MAX_FILES:
                    raise ArtifactError(f"{uri} holds more than {_MAX_FILES} files", subject=uri)
                self._artifact_bytes(f"{remote}/{name}", local / name)
        return dest


def _safe_name(name: str, uri: str) -> str:
    """One path component as listed by MLflow: never a separator, ``..`` or an absolute path."""
    base = PurePosixPath(name).name
    if not base or base in (".", "..") or "\\" in base or "\x00" in base or (
            name != base and not name.endswith("/" + base)):
        raise ArtifactError(f"MLflow listed an unsafe artifact name {name[:100]!r} under {uri}",
                            subject=uri)
    return base


_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://?", re.IGNORECASE)


def download_version(rest: MlflowRest, uri: str, dest: Path) -> Path:
    """The version's artifacts at ``uri`` downloaded to ``dest`` (must not exist)."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme == "mlflow-artifacts":
        return rest.download_proxied(uri, dest)
    if scheme in ("", "file") or not _REMOTE.match(uri) or len(scheme) == 1:  # C:\ on Windows
        raise ArtifactError(
            f"the version's artifacts are a path on the MLflow host ({uri[:200]}): Custody does "
            "not read its own disk for them", subject=uri)
    try:
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise LedgerError(f"the MLflow gate needs the MLflow client to download {scheme}:// "
                          "artifacts", hint=_EXTRA) from None
    dest.mkdir()
    try:
        local = Path(download_artifacts(artifact_uri=uri, dst_path=str(dest),
                                        tracking_uri=rest.base))
    except MlflowException as exc:
        raise ArtifactError(f"the MLflow client could not download {uri[:200]}: "
                            f"{str(exc)[:300]}", subject=uri) from None
    except OSError as exc:
        raise LedgerError(f"downloading {uri[:200]} failed: {exc}",
                          hint="check the artifact store's credentials and reachability; "
                          "MLflow retries the delivery") from None
    if not local.resolve().is_relative_to(dest.resolve()):
        raise ArtifactError(f"the MLflow client put {uri[:200]} outside the download directory",
                            subject=uri)
    return local
