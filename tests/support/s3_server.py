"""A real S3 protocol server for the tests and benchmarks: ``moto_server`` on 127.0.0.1.

The server runs in its own process (its own interpreter, so it never competes with the code
under test for the GIL) on a port the OS picks; it is ready once it prints the address it
listens on (read from its stderr, no polling or sleeps). One IAM user with full S3 access is
created at start; inside ``with server.authenticating():`` the server checks SigV4 signatures
against IAM access keys, so wrong keys are refused as AWS would refuse them. (Outside it, any
key is accepted: moto's signature check rejects listings with a ``prefix=`` parameter even for
the right key, getmoto/moto#5948, so only requests without one are made while it is on.)

Use it from a test module::

    @pytest.fixture(scope="module")
    def s3() -> Iterator[S3Server]:
        with S3Server.start() as server:
            yield server

and ``monkeypatch`` the environment with ``s3.env`` (the credentials of the usual chain).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_READY = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
_REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[str] = field(repr=False)

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[S3Server]:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        try:
            assert process.stderr is not None
            port = None
            lines: list[str] = []
            for line in process.stderr:
                lines.append(line)
                found = _READY.search(line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise RuntimeError("moto_server did not start: " + "".join(lines)[-2000:])
            # keep draining its request log, or the pipe fills and the server blocks
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            endpoint = f"http://127.0.0.1:{port}"
            access, secret = _iam_user(endpoint)
            yield cls(endpoint, access, secret, process)
        finally:
            process.terminate()
            process.wait(timeout=30)

    @contextmanager
    def authenticating(self) -> Iterator[None]:
        """Check signatures and access keys (as AWS does) until the block ends."""
        _post(self.endpoint + "/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            _post(self.endpoint + "/moto-api/reset-auth", b"inf")

    @property
    def env(self) -> dict[str, str]:
        """The environment of boto's usual credential chain, pointed at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_CONFIG_FILE": str(Path("/nonexistent/custody-tests/aws-config")),
            "AWS_SHARED_CREDENTIALS_FILE": str(Path("/nonexistent/custody-tests/aws-creds")),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=_REGION,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def bucket(self, *, versioned: bool = True) -> str:
        """A new bucket (versioned unless told otherwise); returns its name."""
        name = f"custody-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name,
                                         VersioningConfiguration={"Status": "Enabled"})
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Write one object; returns its version id ('null' in an unversioned bucket)."""
        out = self.client().put_object(Bucket=bucket, Key=key, Body=data)
        return str(out.get("VersionId", "null"))

    def put_tree(self, bucket: str, prefix: str, root: Path) -> None:
        """Upload every file under ``root`` to ``prefix/relpath``."""
        client = self.client()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=path.read_bytes())


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - loopback
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        answer.read()


def _iam_user(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed every S3 action, and its access key (made while auth is off)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=_REGION,
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="custody-tests")
    iam.put_user_policy(UserName="custody-tests", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="custody-tests")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])
