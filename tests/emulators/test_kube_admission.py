"""The emulator's mutating admission: a MutatingWebhookConfiguration called over HTTPS on pod CREATE."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from negsync.kube.webhook import generate_serving_certificate
from tests.emulators.kubeapi import KubeApiEmulator

pytestmark = pytest.mark.timeout(30)


class StubWebhook:
    """An HTTPS admission webhook; ``mode`` says how it answers, ``reviews`` what it was sent."""

    def __init__(self, *, service: str = "hook", namespace: str = "hooks") -> None:
        self.mode = "patch"
        self.reviews: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.ca_pem, cert, key = generate_serving_certificate(service=service, namespace=namespace)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.reviews.append(review)
                stub.paths.append(self.path)
                uid = review["request"]["uid"]
                response: dict[str, Any] = {"uid": uid, "allowed": True}
                if stub.mode == "sleep":
                    time.sleep(3)
                elif stub.mode == "deny":
                    response = {"uid": uid, "allowed": False, "status": {"code": 403, "message": "no pods today"}}
                elif stub.mode == "wrong-uid":
                    response["uid"] = "other"
                elif stub.mode == "patch":
                    patch = [{"op": "add", "path": "/spec/readinessGates",
                              "value": [{"conditionType": "target-health.negsync.io/web"}]}]
                    response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
                data = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": response}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        import tempfile
        from pathlib import Path

        self._dir = tempfile.TemporaryDirectory()
        Path(self._dir.name, "tls.crt").write_bytes(cert)
        Path(self._dir.name, "tls.key").write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(Path(self._dir.name, "tls.crt"), Path(self._dir.name, "tls.key"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()


@pytest.fixture
def hook() -> Iterator[StubWebhook]:
    stub = StubWebhook()
    yield stub
    stub.stop()


@pytest.fixture
def core(api_client: client.ApiClient) -> Any:
    return client.CoreV1Api(api_client)


def install(kube: KubeApiEmulator, hook: StubWebhook, *, failure_policy: str = "Ignore", timeout: int = 5,
            ca: bytes | None = None, object_selector: dict[str, Any] | None = None, port: int | None = None) -> None:
    """The webhook's Service and EndpointSlice (as the EndpointSlice controller writes it), and the MWC."""
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": "hooks"},
                 "spec": {"ports": [{"name": "webhook", "port": 443, "targetPort": "webhook"}]}})
    kube.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "hook-x", "namespace": "hooks", "labels": {"kubernetes.io/service-name": "hook"}},
                 "addressType": "IPv4", "ports": [{"name": "webhook", "port": port or hook.port, "protocol": "TCP"}],
                 "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]})
    webhook: dict[str, Any] = {
        "name": "readiness-gates.negsync.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "failurePolicy": failure_policy, "timeoutSeconds": timeout,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                   "scope": "Namespaced"}],
        "namespaceSelector": {"matchLabels": {"negsync.io/readiness-gate-inject": "enabled"}},
        "clientConfig": {"service": {"name": "hook", "namespace": "hooks", "path": "/mutate-pods", "port": 443},
                         "caBundle": base64.b64encode(hook.ca_pem if ca is None else ca).decode()}}
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    kube.create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                 "metadata": {"name": "negsync"}, "webhooks": [webhook]})
    for name, labels in (("shop", {"negsync.io/readiness-gate-inject": "enabled"}), ("plain", {})):
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})


def new_pod(name: str = "", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels or {"app": "web"}}
    meta.update({"name": name} if name else {"generateName": "web-"})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "web"}]}}


def gates(pod: Any) -> list[str]:
    return [g.condition_type for g in pod.spec.readiness_gates or []]


def test_pod_create_in_a_selected_namespace_goes_through_the_webhook(
        kube: KubeApiEmulator, hook: StubWebhook, core: Any) -> None:
    install(kube, hook)
    created = core.create_namespaced_pod("shop", new_pod())
    assert gates(created) == ["target-health.negsync.io/web"]  # the JSON patch was applied before storing
    (review,) = hook.reviews
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert request["operation"] == "CREATE" and request["namespace"] == "shop"
    assert request["name"] == ""  # generateName is resolved after mutating admission
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["object"]["metadata"]["generateName"] == "web-"
    assert hook.paths == ["/mutate-pods?timeout=5s"]
    # Not selected: no call at all. Python-side writes (the test's own etcd) skip admission too.
    assert gates(core.create_namespaced_pod("plain", new_pod("p"))) == []
    kube.create({**new_pod("direct"), "metadata": {"name": "direct", "namespace": "shop"}})
    assert len(hook.reviews) == 1
    assert [c.outcome for c in kube.admission_calls] == ["patched"]


def test_object_selector_is_honoured(kube: KubeApiEmulator, hook: StubWebhook, core: Any) -> None:
    install(kube, hook, object_selector={"matchExpressions": [{"key": "inject", "operator": "NotIn", "values": ["no"]}]})
    assert gates(core.create_namespaced_pod("shop", new_pod("a", inject="no"))) == []
    assert gates(core.create_namespaced_pod("shop", new_pod("b", inject="yes"))) == ["target-health.negsync.io/web"]
    assert len(hook.reviews) == 1


def test_a_denial_rejects_the_create(kube: KubeApiEmulator, hook: StubWebhook, core: Any) -> None:
    install(kube, hook)
    hook.mode = "deny"
    with pytest.raises(ApiException) as denied:
        core.create_namespaced_pod("shop", new_pod("a"))
    assert denied.value.status == 403
    assert json.loads(str(denied.value.body))["message"] == \
        'admission webhook "readiness-gates.negsync.io" denied the request: no pods today'
    assert kube.get("v1", "Pod", "shop", "a") is None


@pytest.mark.parametrize("failure_policy", ["Ignore", "Fail"])
def test_failure_policy_decides_when_the_call_fails(kube: KubeApiEmulator, hook: StubWebhook, core: Any,
                                                    failure_policy: str) -> None:
    # The caBundle names another CA: TLS verification fails, as for a replica whose CA is not in it.
    other_ca, _, _ = generate_serving_certificate(service="hook", namespace="hooks")
    install(kube, hook, failure_policy=failure_policy, ca=other_ca)
    if failure_policy == "Ignore":
        assert gates(core.create_namespaced_pod("shop", new_pod("a"))) == []
        assert kube.admission_calls[-1].outcome.startswith("ignored: SSLCertVerificationError")
    else:
        with pytest.raises(ApiException) as failed:
            core.create_namespaced_pod("shop", new_pod("a"))
        assert failed.value.status == 500
        assert 'failed calling webhook "readiness-gates.negsync.io"' in json.loads(str(failed.value.body))["message"]
        assert kube.get("v1", "Pod", "shop", "a") is None
    assert hook.reviews == []  # the handshake failed: the webhook never saw a request


def test_timeout_seconds_bounds_the_call(kube: KubeApiEmulator, hook: StubWebhook, core: Any) -> None:
    install(kube, hook, timeout=1)
    hook.mode = "sleep"
    started = time.monotonic()
    created = core.create_namespaced_pod("shop", new_pod("a"))
    assert 0.9 <= time.monotonic() - started < 2.9  # cut at timeoutSeconds, not after the webhook's 3 s
    assert gates(created) == [] and "timed out" in kube.admission_calls[-1].outcome


def test_unreachable_or_malformed_answers_follow_the_failure_policy(kube: KubeApiEmulator, hook: StubWebhook,
                                                                    core: Any) -> None:
    install(kube, hook, failure_policy="Fail")
    hook.mode = "wrong-uid"
    with pytest.raises(ApiException) as failed:
        core.create_namespaced_pod("shop", new_pod("a"))
    assert failed.value.status == 500 and "expected response.uid" in str(failed.value.body)
    # No ready endpoint behind the Service: a call failure too.
    kube.update({**kube.get("discovery.k8s.io/v1", "EndpointSlice", "hooks", "hook-x"),  # type: ignore[dict-item]
                 "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": False}}]})
    with pytest.raises(ApiException) as unreachable:
        core.create_namespaced_pod("shop", new_pod("b"))
    assert unreachable.value.status == 500 and "no ready endpoints" in str(unreachable.value.body)
