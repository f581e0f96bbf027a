"""docs/deploy/ is something a platform team can apply: validated offline, and run as written.

Built-in kinds are checked with kubernetes-validate (strict: no unknown field) against the
Kubernetes schemas it bundles; the custom resources (cert-manager's Certificate and Issuer,
KServe's ClusterStorageContainer) have their structure checked here, the container of the
ClusterStorageContainer against the core Container schema. Then the properties that make the
gate a gate: ``service:`` not ``url:``, no query string in the path, failurePolicy Fail, every
namespace gated but custody's own and kube-system, TLS for the name the API server calls, the
kubeconfig user keyed by the right ``host[:port]``, and the images' commands being the ones the
manifests run. Finally the storage initializer's command runs with the two arguments KServe
appends, and the service starts as the Deployment starts it (environment only, TLS, no
workspace) and answers an AdmissionReview.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shlex
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from support import service_support as support

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
K8S = "1.30"  # the oldest Kubernetes the manifests are checked against (and the bundle's newest)
BUILT_IN = {"Namespace", "ServiceAccount", "Deployment", "PodDisruptionBudget", "Service",
            "ValidatingWebhookConfiguration"}


def documents(name: str) -> list[dict[str, Any]]:
    with (DEPLOY / name).open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def every_document() -> list[dict[str, Any]]:
    return [d for name in ("service.yaml", "webhook.yaml", "cluster-storage-container.yaml")
            for d in documents(name)]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in every_document() if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


@pytest.mark.parametrize("version", [K8S, kubernetes_validate.latest_version()])
def test_built_in_kinds_validate_strictly(version: str) -> None:
    kinds = set()
    for doc in every_document():
        if doc["kind"] in BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)
            kinds.add(doc["kind"])
    assert kinds == BUILT_IN


def test_a_bad_manifest_is_caught() -> None:
    """The validator is not a rubber stamp: an unknown field and a wrong type fail."""
    bad = one("ValidatingWebhookConfiguration")
    bad = {**bad, "webhooks": [{**bad["webhooks"][0], "failurPolicy": "Fail"}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)
    service = one("Service")
    wrong = {**service, "spec": {**service["spec"], "ports": [{"port": "https"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S, strict=True)


def container_is_valid(container: dict[str, Any]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"initContainers": [container], "containers": [{"name": "c", "image": "i"}]}}
    kubernetes_validate.validate(pod, K8S, strict=True)


def test_cluster_storage_container_structure() -> None:
    csc = one("ClusterStorageContainer")
    assert csc["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert set(csc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(csc["metadata"]) == {"name"}  # cluster-scoped: no namespace
    spec = csc["spec"]
    assert set(spec) <= {"container", "supportedUriFormats", "workloadType"}
    assert spec.get("workloadType", "initContainer") in ("initContainer",
                                                         "localModelDownloadJob")
    container = spec["container"]
    container_is_valid(container)
    assert container["name"] == "storage-initializer"  # how KServe finds its init container
    assert "args" not in container  # KServe sets them: [storageUri, /mnt/models]
    assert container["command"][:3] == ["custody", "fetch", "--verify"]
    formats = spec["supportedUriFormats"]
    assert formats and all(len(f) == 1 and set(f) <= {"prefix", "regex"} for f in formats)
    for f in formats:
        if "regex" in f:
            re.compile(f["regex"])
    with pytest.raises(kubernetes_validate.ValidationError):
        container_is_valid({**container, "imagePullPolicy": 3})


def test_cert_manager_resources_structure() -> None:
    for doc in every_document():
        if doc["apiVersion"].startswith("cert-manager.io/"):
            assert doc["apiVersion"] == "cert-manager.io/v1"
            assert doc["kind"] in ("Issuer", "Certificate")
            assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
            assert doc["metadata"]["namespace"] == "custody-system"
            if doc["kind"] == "Issuer":
                assert len(doc["spec"]) == 1 and set(doc["spec"]) <= {"selfSigned", "ca"}
            else:
                ref = doc["spec"]["issuerRef"]
                one("Issuer", ref["name"])
                assert ref["kind"] == "Issuer" and doc["spec"]["secretName"]


def test_the_webhook_gates_every_inference_service_through_the_service() -> None:
    config = one("ValidatingWebhookConfiguration")
    service = one("Service")
    ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
    port = service["spec"]["ports"][0]["port"]
    from custody.provenance.service.hooks import router

    routes = {getattr(r, "path", "") for r in router.routes}
    for hook in config["webhooks"]:
        client = hook["clientConfig"]
        assert "url" not in client and set(client) == {"service"}, hook["name"]
        target = client["service"]
        assert (target["namespace"], target["name"], target.get("port", 443)) == (ns, name,
                                                                                   port)
        assert "?" not in target["path"] and "#" not in target["path"]
        assert target["path"] in routes or target["path"].rsplit("/", 1)[0] in routes
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert 1 <= hook["timeoutSeconds"] <= 30
        assert hook["namespaceSelector"] == {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn",
            "values": [ns, "kube-system"]}]}
    gate = next(h for h in config["webhooks"] if any(
        "inferenceservices" in r["resources"] for r in h["rules"]))
    assert "objectSelector" not in gate  # no label opts an InferenceService out
    assert {op for r in gate["rules"] for op in r["operations"]} == {"CREATE", "UPDATE"}


def test_tls_is_for_the_name_the_api_server_calls() -> None:
    service = one("Service")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    config = one("ValidatingWebhookConfiguration")
    injected = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    cert_ns, cert_name = injected.split("/")
    cert = one("Certificate", cert_name)
    assert cert["metadata"]["namespace"] == cert_ns and host in cert["spec"]["dnsNames"]
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == cert["spec"]["secretName"]
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")["mountPath"]
    args = container["args"]
    assert args[args.index("--tls-cert") + 1] == f"{mount}/tls.crt"
    assert args[args.index("--tls-key") + 1] == f"{mount}/tls.key"
    port_name = service["spec"]["ports"][0]["targetPort"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[port_name] == int(
        args[args.index("--port") + 1])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"


def test_the_api_server_token_is_keyed_by_the_webhooks_host_and_port() -> None:
    service = one("Service")
    port = one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"].get(
        "port", 443)
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    expected = host if port == 443 else f"{host}:{port}"
    (kubeconfig,) = documents("apiserver/webhook-kubeconfig.yaml")
    assert kubeconfig["kind"] == "Config"
    assert [u["name"] for u in kubeconfig["users"]] == [expected]
    assert set(kubeconfig["users"][0]["user"]) == {"tokenFile"}  # a bearer token, not in here
    (admission,) = documents("apiserver/admission-configuration.yaml")
    assert admission["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert admission["kind"] == "AdmissionConfiguration"
    (plugin,) = admission["plugins"]
    assert plugin["name"] == "ValidatingAdmissionWebhook"
    assert plugin["configuration"]["kind"] == "WebhookAdmissionConfiguration"
    assert plugin["configuration"]["kubeConfigFile"].endswith("/webhook-kubeconfig.yaml")


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        op, rest = words[0].upper(), (words[1] if len(words) > 1 else "")
        if op == "FROM":
            parent = rest.split()[0]
            current = {**stages.get(parent, {}), "copy": []}
            stages[rest.split()[-1]] = current
        elif op in ("ENTRYPOINT", "CMD"):
            current[op] = yaml.safe_load(rest)  # the exec form is a JSON list
        elif op == "COPY":
            current["copy"].append([w for w in shlex.split(rest) if not w.startswith("--")])
        elif op == "RUN":
            current.setdefault("run", []).append(rest)
    return stages


def test_the_images_run_what_the_manifests_say() -> None:
    stages = dockerfile_stages()
    assert {"service", "storage-initializer"} <= set(stages)
    container = one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert stages["service"]["ENTRYPOINT"] == ["custody", "serve"]
    assert stages["service"]["CMD"] == container["args"]
    csc = one("ClusterStorageContainer")["spec"]["container"]
    assert stages["storage-initializer"]["ENTRYPOINT"] == csc["command"]
    policy = csc["command"][csc["command"].index("--policy") + 1]
    (trust,) = [c for c in stages["storage-initializer"]["copy"] if c[-1] == "/etc/custody/"]
    assert (REPO / trust[0] / Path(policy).relative_to("/etc/custody")).is_file()
    extras = re.findall(r"custody\[([a-z0-9,]+)\]", " ".join(stages["base"]["run"]))
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras and all(e in declared for x in extras for e in x.split(","))
    env = {e["name"] for e in container["env"]}
    assert {"CUSTODY_LEDGER", "CUSTODY_LEDGER_VKEY", "CUSTODY_POLICY"} <= env
    assert {"CUSTODY_LEDGER", "CUSTODY_LEDGER_VKEY"} <= {e["name"] for e in csc["env"]}


# --- run as written ----------------------------------------------------------------------------


def trust_folder(ws: Any, target: Path) -> Path:
    """docs/deploy/trust/ as the image holds it, with the workspace's key as the release key."""
    import shutil

    shutil.copytree(DEPLOY / "trust", target)
    shutil.copy(ws.pub, target / "keys" / "release.pub")
    return target / "policy.toml"


def ledger_vkey(ws: Any) -> str:
    import tomllib

    return str(tomllib.loads((ws.home / "config.toml").read_text())["ledger_vkey"])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_the_storage_initializer_command_runs_with_kserves_two_arguments(
        ws, cli, make_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    model = make_file(ws.root / "model" / "weights.bin", b"served weights")
    cli("record", model.parent, "--name", "fraud-clf", "--kind", "model", cwd=ws.root).expect(0)
    command = one("ClusterStorageContainer")["spec"]["container"]["command"]
    policy = trust_folder(ws, tmp_path / "etc-custody")
    argv = [str(policy) if a == "/etc/custody/policy.toml" else a for a in command[1:]]
    mount = tmp_path / "mnt" / "models"
    mount.mkdir(parents=True)
    elsewhere = tmp_path / "pod"  # no workspace: the environment names the ledger and its key
    elsewhere.mkdir()
    monkeypatch.setenv("CUSTODY_LEDGER", ws.url)
    monkeypatch.setenv("CUSTODY_LEDGER_VKEY", ledger_vkey(ws))
    cli(*argv, (ws.root / "model").as_uri(), mount, cwd=elsewhere).expect(0, "VERIFIED")
    assert (mount / "weights.bin").read_bytes() == b"served weights"
    other = tmp_path / "mnt2"
    other.mkdir()
    model.write_bytes(b"replaced")
    cli(*argv, (ws.root / "model").as_uri(), other, cwd=elsewhere).expect(1, "REFUSED")
    assert list(other.iterdir()) == []


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "custody.custody-system.svc")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("custody.custody-system.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_the_service_starts_as_the_deployment_starts_it(ws, cli, make_file,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    model = make_file(ws.root / "served" / "w.bin", b"weights")
    cli("record", model, "--name", "w", "--kind", "model", cwd=ws.root).expect(0)
    token = support.make_tokens(ws.url)["reader"]
    tls = tmp_path / "tls"
    tls.mkdir()
    crt, _ = self_signed(tls)
    container = one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = [str(tls / Path(a).name) if a.startswith("/tls/") else a for a in container["args"]]
    port = support.free_port()
    args[args.index("--host") + 1], args[args.index("--port") + 1] = "127.0.0.1", str(port)
    policy = trust_folder(ws, tmp_path / "etc-custody")
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    env.update(CUSTODY_LEDGER=ws.url, CUSTODY_LEDGER_VKEY=ledger_vkey(ws),
               CUSTODY_POLICY=str(policy))
    pod = tmp_path / "pod"
    pod.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "custody", "serve", *args], cwd=pod,
                            env={**support.os.environ, **env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if b"Uvicorn running on" in line:
                break
        else:
            pytest.fail(b"".join(seen).decode(errors="replace"))
        base = f"https://127.0.0.1:{port}"
        trusted = ssl.create_default_context(cafile=str(crt))  # the caBundle's role
        probe = container["readinessProbe"]["httpGet"]["path"]
        assert httpx.get(base + probe, verify=trusted, timeout=30).status_code == 200
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": str(uuid.uuid4()), "operation": "CREATE", "object": {
                "kind": "InferenceService", "metadata": {"name": "w"},
                "spec": {"predictor": {"model": {"storageUri": model.as_uri()}}}}}}
        path = one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"][
            "service"]["path"]
        answer = httpx.post(base + path, json=review, verify=trusted, timeout=60,
                            headers=support.auth(token)).json()["response"]
        assert answer["allowed"] is True, answer
        unauthenticated = httpx.post(base + path, json=review, verify=trusted, timeout=60)
        assert unauthenticated.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
