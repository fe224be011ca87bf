"""Tests for the fake compute v1 API, driven through the real googleapiclient."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from tests.emulators.compute import FakeCompute

P, Z = "proj-1", "us-central1-a"
ATTACH = "compute.networkEndpointGroups.attachNetworkEndpoints"
NEG_BODY = {"name": "neg-a", "networkEndpointType": "GCE_VM_IP_PORT",
            "network": "default", "defaultPort": 8080}

pytestmark = pytest.mark.timeout(20)


def make_client(fake: FakeCompute, credentials: Any = None, *, endpoint: str | None = None) -> Any:
    http = google_auth_httplib2.AuthorizedHttp(
        credentials or fake.credentials(), http=httplib2.Http(timeout=5))
    return discovery.build("compute", "v1", static_discovery=True, http=http,
                           client_options={"api_endpoint": endpoint or fake.api_endpoint})


def new_project(fake: FakeCompute) -> None:
    """What a new project has: the auto-mode ``default`` network, one subnetwork per region."""
    fake.add_subnetwork(P, "us-central1", "default", cidr="10.0.0.0/8")
    for i, region in enumerate(("europe-west1", "us-east1", "asia-east1")):
        fake.add_subnetwork(P, region, "default", cidr=f"172.16.{16 * i}.0/20")


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as f:
        new_project(f)
        yield f


@pytest.fixture
def compute(fake: FakeCompute) -> Any:
    return make_client(fake)


def negs(compute: Any) -> Any:
    return compute.networkEndpointGroups()


def reason_of(err: HttpError) -> str:
    return str(json.loads(err.content)["error"]["errors"][0]["reason"])


def raw(fake: FakeCompute, method: str, rel: str, body: Any = None) -> tuple[int, Any]:
    """Bypass the client, which validates query params and would refuse ours."""
    resp, content = httplib2.Http(timeout=5).request(
        fake.api_endpoint + rel, method,
        body=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {fake.issue_token()}"})
    return resp.status, json.loads(content)


def eps(*pairs: tuple[str, int]) -> dict[str, Any]:
    return {"networkEndpoints": [
        {"instance": f"vm-{ip.rsplit('.', 1)[1]}", "ipAddress": ip, "port": port}
        for ip, port in pairs]}


def place(fake: FakeCompute, body: dict[str, Any]) -> None:
    """Give each endpoint's VM its IP (as a /32 alias range), so attaching it is valid."""
    for ep in body.get("networkEndpoints") or []:
        if isinstance(ep, dict) and isinstance(ep.get("instance"), str) and isinstance(ep.get("ipAddress"), str):
            try:
                fake.provision(P, Z, ep["instance"], [ep["ipAddress"]])
            except ValueError:
                pass  # not an IP: the test is about the fake refusing it


def attach(compute: Any, body: dict[str, Any], neg: str = "neg-a", *, fake: FakeCompute | None = None,
           **kw: Any) -> Any:
    if fake is not None:
        place(fake, body)
    return negs(compute).attachNetworkEndpoints(
        project=P, zone=Z, networkEndpointGroup=neg, body=body, **kw).execute()


def detach(compute: Any, body: dict[str, Any], neg: str = "neg-a") -> Any:
    return negs(compute).detachNetworkEndpoints(
        project=P, zone=Z, networkEndpointGroup=neg, body=body).execute()


def list_endpoints(compute: Any, show: bool = True, neg: str = "neg-a") -> Any:
    return negs(compute).listNetworkEndpoints(
        project=P, zone=Z, networkEndpointGroup=neg,
        body={"healthStatus": "SHOW" if show else "SKIP"}).execute()


def test_client_must_be_given_the_service_path(fake: FakeCompute) -> None:
    # api_endpoint replaces rootUrl+servicePath, so the bare server root misses /compute/v1/.
    with pytest.raises(HttpError) as exc:
        negs(make_client(fake, endpoint=fake.url)).list(project=P, zone=Z).execute()
    assert exc.value.status_code == 404
    assert negs(make_client(fake)).list(project=P, zone=Z).execute()[
        "kind"] == "compute#networkEndpointGroupList"
    assert fake.calls[-1].path == f"/compute/v1/projects/{P}/zones/{Z}/networkEndpointGroups"


def test_neg_lifecycle(fake: FakeCompute, compute: Any) -> None:
    op = negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
    assert op["kind"] == "compute#operation"
    assert op["status"] == "DONE" and op["operationType"] == "insert"
    self_link = f"{fake.url}compute/v1/projects/{P}/zones/{Z}/networkEndpointGroups/neg-a"
    assert op["targetLink"] == self_link
    assert op["zone"].endswith(f"/projects/{P}/zones/{Z}")

    got = negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert got["selfLink"] == self_link
    assert got["kind"] == "compute#networkEndpointGroup"
    assert got["size"] == 0 and got["defaultPort"] == 8080 and got["id"]
    assert got["network"].endswith(f"projects/{P}/global/networks/default")

    with pytest.raises(HttpError) as exc:
        negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
    assert exc.value.status_code == 409 and reason_of(exc.value) == "alreadyExists"

    negs(compute).insert(project=P, zone="europe-west1-b",
                         body=NEG_BODY | {"name": "neg-b"}).execute()
    listed = negs(compute).list(project=P, zone=Z).execute()
    assert [n["name"] for n in listed["items"]] == ["neg-a"]
    agg = negs(compute).aggregatedList(project=P).execute()
    assert {k: [n["name"] for n in v["networkEndpointGroups"]]
            for k, v in agg["items"].items()} == {
        f"zones/{Z}": ["neg-a"], "zones/europe-west1-b": ["neg-b"]}

    assert negs(compute).delete(project=P, zone=Z, networkEndpointGroup="neg-a").execute()[
        "status"] == "DONE"
    with pytest.raises(HttpError) as exc:
        negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert exc.value.status_code == 404 and reason_of(exc.value) == "notFound"
    assert "items" not in negs(compute).list(project=P, zone=Z).execute()
    assert fake.negs() == [(P, "europe-west1-b", "neg-b")]


def test_insert_validation(fake: FakeCompute, compute: Any) -> None:
    for bad in ({"name": "Bad_Name"}, {"name": "a" * 64}, {"network": None},
                {"networkEndpointType": None}, {"networkEndpointType": "GCE_VM_IP"}):
        with pytest.raises(HttpError) as exc:
            negs(compute).insert(project=P, zone=Z, body=NEG_BODY | bad).execute()
        assert exc.value.status_code == 400, bad
    assert fake.negs() == []


def test_list_paging_and_filter(fake: FakeCompute, compute: Any) -> None:
    for i in range(5):
        fake.add_neg(P, Z, f"neg-{i}")
    names: list[str] = []
    req = negs(compute).list(project=P, zone=Z, maxResults=2)
    pages = 0
    while req is not None:
        resp = req.execute()
        names += [n["name"] for n in resp["items"]]
        pages += 1
        req = negs(compute).list_next(req, resp)
    assert pages == 3 and names == [f"neg-{i}" for i in range(5)]

    one = negs(compute).list(project=P, zone=Z, filter='name = "neg-3"').execute()
    assert [n["name"] for n in one["items"]] == ["neg-3"]
    rx = negs(compute).list(project=P, zone=Z, filter="name ne neg-[0-2]").execute()
    assert [n["name"] for n in rx["items"]] == ["neg-3", "neg-4"]
    with pytest.raises(HttpError) as exc:
        negs(compute).list(project=P, zone=Z, filter='name = "a" OR name = "b"').execute()
    assert exc.value.status_code == 400
    with pytest.raises(HttpError) as exc:
        negs(compute).list(project=P, zone=Z, pageToken="garbage").execute()
    assert exc.value.status_code == 400


def test_paging_follows_the_discovery_document(fake: FakeCompute, compute: Any) -> None:
    # compute.v1.json: maxResults 0-500 (default 500), nextPageToken absent on the last page.
    zones = ("us-central1-a", "us-central1-b")
    for i in range(503):
        fake.add_neg(P, zones[i % 2], f"neg-{i:03}")
    first = negs(compute).aggregatedList(project=P).execute()
    assert sum(len(s["networkEndpointGroups"]) for s in first["items"].values()) == 500
    assert first["nextPageToken"]
    request, names = negs(compute).aggregatedList(project=P, maxResults=0), []
    while request is not None:  # the library's own list_next, as the provider pages
        page = request.execute()
        names += [n["name"] for s in page["items"].values() for n in s["networkEndpointGroups"]]
        request = negs(compute).aggregatedList_next(request, page)
    assert sorted(names) == [f"neg-{i:03}" for i in range(503)]
    with pytest.raises(HttpError) as exc:  # "Acceptable values are 0 to 500, inclusive"
        negs(compute).aggregatedList(project=P, maxResults=501).execute()
    assert exc.value.status_code == 400 and "maxResults" in str(exc.value)
    # A token belongs to its listing: replayed with another filter (or elsewhere) it is refused.
    token = negs(compute).list(project=P, zone=zones[0], maxResults=2).execute()["nextPageToken"]
    for replay in (negs(compute).list(project=P, zone=zones[0], maxResults=2, filter='name = "neg-000"',
                                      pageToken=token),
                   negs(compute).list(project=P, zone=zones[1], maxResults=2, pageToken=token),
                   negs(compute).aggregatedList(project=P, maxResults=2, pageToken=token)):
        with pytest.raises(HttpError) as exc:
            replay.execute()
        assert exc.value.status_code == 400 and "pageToken" in str(exc.value)


def test_attach_detach_and_list_endpoints_with_health(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a", default_port=8080)
    op = attach(compute, fake=fake, body=eps(("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 9090)))
    assert op["operationType"] == "attachNetworkEndpoints" and op["status"] == "DONE"
    assert fake.endpoints(P, Z, "neg-a") == {
        ("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 9090)}
    assert fake.endpoint_instances(P, Z, "neg-a")[("10.0.0.1", 8080)] == "vm-1"
    # Re-attaching is a no-op by design (see module docstring).
    attach(compute, fake=fake, body=eps(("10.0.0.1", 8080)))
    assert negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()[
        "size"] == 3

    # Not behind a health-checked backend: no healths even with SHOW.
    listed = list_endpoints(compute)
    assert listed["kind"] == "compute#networkEndpointGroupsListNetworkEndpoints"
    assert all("healths" not in i for i in listed["items"])

    fake.set_backend(P, Z, "neg-a", health_check=True)
    fake.set_health(P, Z, "neg-a", "10.0.0.2", 8080, "HEALTHY")
    by_ip = {i["networkEndpoint"]["ipAddress"]: i for i in list_endpoints(compute)["items"]}
    assert by_ip["10.0.0.1"]["networkEndpoint"] == {
        "instance": "vm-1", "ipAddress": "10.0.0.1", "port": 8080}
    assert by_ip["10.0.0.1"]["healths"][0]["healthState"] == "UNKNOWN"
    assert by_ip["10.0.0.2"]["healths"][0]["healthState"] == "HEALTHY"
    assert by_ip["10.0.0.2"]["healths"][0]["backendService"]["backendService"]
    assert by_ip["10.0.0.2"]["healths"][0]["healthCheck"]["healthCheck"]
    assert all("healths" not in i for i in list_endpoints(compute, show=False)["items"])
    with pytest.raises(ValueError):
        fake.set_health(P, Z, "neg-a", "10.0.0.2", 8080, "SICK")

    page1 = negs(compute).listNetworkEndpoints(
        project=P, zone=Z, networkEndpointGroup="neg-a", maxResults=2, body={}).execute()
    assert len(page1["items"]) == 2 and page1["nextPageToken"]

    detach(compute, eps(("10.0.0.1", 8080)))
    assert fake.endpoints(P, Z, "neg-a") == {("10.0.0.2", 8080), ("10.0.0.3", 9090)}
    with pytest.raises(HttpError) as exc:
        detach(compute, eps(("10.0.0.1", 8080)))
    assert exc.value.status_code == 400 and "not found" in str(exc.value)
    fake.strict_detach = False
    detach(compute, eps(("10.0.0.1", 8080)))


def test_more_than_500_endpoints_rejected(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    many = [(f"10.0.{i // 250}.{i % 250}", 8080) for i in range(501)]
    with pytest.raises(HttpError) as exc:
        attach(compute, fake=fake, body=eps(*many))
    assert exc.value.status_code == 400
    assert fake.endpoints(P, Z, "neg-a") == set()
    attach(compute, fake=fake, body=eps(*many[:500]))
    assert len(fake.endpoints(P, Z, "neg-a")) == 500


def test_unknown_and_mistyped_body_fields_rejected(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    # The client does not validate bodies, so a typo reaches the server.
    with pytest.raises(HttpError) as exc:
        attach(compute, fake=fake, body={"networkEndpoints": [
            {"instance": "vm-1", "ipAdress": "10.0.0.1", "port": 80}]})
    assert exc.value.status_code == 400 and "ipAdress" in str(exc.value)
    assert "body.networkEndpoints[0]" in str(exc.value)

    status, err = raw(fake, "POST", f"projects/{P}/zones/{Z}/networkEndpointGroups",
                      NEG_BODY | {"nmae": "x"})
    assert status == 400 and '"nmae"' in err["error"]["message"]
    assert err["error"]["status"] == "INVALID_ARGUMENT"
    assert err["error"]["errors"][0] == {
        "message": err["error"]["message"], "domain": "global", "reason": "invalid"}

    for bad in ({"port": True}, {"port": "eighty"}, {"port": 1.5}, {"ipAddress": 10},
                {"annotations": {"k": 1}}):
        body = {"networkEndpoints": [{"instance": "vm-1", "ipAddress": "10.0.0.1"} | bad]}
        with pytest.raises(HttpError) as exc:
            attach(compute, fake=fake, body=body)
        assert exc.value.status_code == 400, bad
    with pytest.raises(HttpError) as exc:
        attach(compute, fake=fake, body={"networkEndpoints": {"instance": "vm-1"}})
    assert exc.value.status_code == 400
    with pytest.raises(HttpError) as exc:
        list_endpoints_body = {"healthStatus": "MAYBE"}
        negs(compute).listNetworkEndpoints(project=P, zone=Z, networkEndpointGroup="neg-a",
                                           body=list_endpoints_body).execute()
    assert exc.value.status_code == 400
    # proto3 JSON: integers may be strings, null means unset.
    attach(compute, fake=fake, body={"networkEndpoints": [
        {"instance": "vm-1", "ipAddress": "10.0.0.1", "port": "80", "fqdn": None}]})
    assert fake.endpoints(P, Z, "neg-a") == {("10.0.0.1", 80)}


def test_query_and_path_validation(fake: FakeCompute) -> None:
    base = f"projects/{P}/zones/{Z}/networkEndpointGroups"
    status, err = raw(fake, "GET", f"{base}?maxResult=3")
    assert status == 400 and '"maxResult"' in err["error"]["message"]
    for q in ("maxResults=abc", "maxResults=-1", "maxResults=1&maxResults=2",
              "prettyPrint=maybe", "$.xgafv=3", "alt=proto"):
        assert raw(fake, "GET", f"{base}?{q}")[0] == 400, q
    ok = "prettyPrint=false&fields=items&quotaUser=u&key=k&%24.xgafv=2&maxResults=0"
    assert raw(fake, "GET", f"{base}?{ok}")[0] == 200
    # returnPartialSuccess is not declared for compute v1 aggregatedList.
    assert raw(fake, "GET",
               f"projects/{P}/aggregated/networkEndpointGroups?returnPartialSuccess=true")[0] == 400
    assert raw(fake, "GET", f"projects/{P}/aggregated/networkEndpointGroups"
               "?includeAllScopes=true")[0] == 200
    assert raw(fake, "GET", f"projects/Bad_Project/zones/{Z}/networkEndpointGroups")[0] == 400
    assert raw(fake, "GET", f"projects/{P}/zones/{Z}/instances")[0] == 404
    assert raw(fake, "PUT", base, {})[0] == 404
    assert raw(fake, "POST", f"projects/{P}/zones/{Z}/networkEndpointGroups/n/"
               "testIamPermissions", {})[0] == 501
    status, err = raw(fake, "POST", base, "not-an-object")
    assert status == 400


def test_bad_endpoint_fails_whole_batch(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    fake.reject_endpoints({("10.0.0.5", 8080)})
    batch = eps(("10.0.0.4", 8080), ("10.0.0.5", 8080), ("10.0.0.6", 8080))
    with pytest.raises(HttpError) as exc:
        attach(compute, fake=fake, body=batch)
    assert exc.value.status_code == 400 and "networkEndpoints[1]" in str(exc.value)
    assert fake.endpoints(P, Z, "neg-a") == set()

    fake.reject_endpoints({("10.0.0.5", 8080)}, mode="operation")
    op = attach(compute, fake=fake, body=batch)
    assert op["status"] == "DONE" and op["error"]["errors"][0]["code"] == "INVALID_FIELD_VALUE"
    assert fake.endpoints(P, Z, "neg-a") == set()

    fake.clear_rejected_endpoints()
    attach(compute, fake=fake, body=batch)
    assert len(fake.endpoints(P, Z, "neg-a")) == 3


def test_injected_faults_surface_as_http_errors(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    fake.inject(ATTACH, 429, count=2)
    for _ in range(2):
        with pytest.raises(HttpError) as exc:
            attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
        assert exc.value.status_code == 429 and reason_of(exc.value) == "rateLimitExceeded"
        assert json.loads(exc.value.content)["error"]["status"] == "RESOURCE_EXHAUSTED"
    # Other methods are unaffected by a method-scoped fault.
    negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
    assert fake.count(ATTACH) == 3 and fake.count(ATTACH, status=429) == 2

    fake.inject(None, 503)
    with pytest.raises(HttpError) as exc:
        negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert exc.value.status_code == 503 and reason_of(exc.value) == "backendError"
    fake.inject("compute.networkEndpointGroups.get", 403)
    with pytest.raises(HttpError) as exc:
        negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert exc.value.status_code == 403 and reason_of(exc.value) == "rateLimitExceeded"
    with pytest.raises(ValueError):
        fake.inject("compute.networkEndpointGroups.typo", 500)


def test_operation_error_reported_in_operation(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    fake.fail_next_operation("RESOURCE_NOT_READY", "The resource is not ready",
                             http_status=400, method_id=ATTACH)
    op = attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
    assert op["status"] == "DONE"
    assert op["error"] == {"errors": [
        {"code": "RESOURCE_NOT_READY", "message": "The resource is not ready"}]}
    assert op["httpErrorStatusCode"] == 400 and op["httpErrorMessage"] == "BAD REQUEST"
    assert fake.endpoints(P, Z, "neg-a") == set()
    again = compute.zoneOperations().get(project=P, zone=Z, operation=op["name"]).execute()
    assert again["error"] == op["error"]
    assert "error" not in attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))


def test_operation_running_then_done_via_wait() -> None:
    with FakeCompute(operation_delay=0.4) as fake:
        new_project(fake)
        compute = make_client(fake)
        fake.add_neg(P, Z, "neg-a")
        op = attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
        assert op["status"] == "RUNNING" and "endTime" not in op
        assert fake.endpoints(P, Z, "neg-a") == set()
        ops = compute.zoneOperations()
        assert ops.get(project=P, zone=Z, operation=op["name"]).execute()["status"] == "RUNNING"
        t0 = time.monotonic()
        done = ops.wait(project=P, zone=Z, operation=op["name"]).execute()
        assert done["status"] == "DONE" and done["progress"] == 100
        assert time.monotonic() - t0 < 1.5
        assert fake.endpoints(P, Z, "neg-a") == {("10.0.0.1", 80)}
        with pytest.raises(HttpError) as exc:
            ops.get(project=P, zone=Z, operation="operation-nope").execute()
        assert exc.value.status_code == 404


def test_wait_returns_running_after_timeout_then_manual_completion() -> None:
    with FakeCompute(operation_delay=math.inf, wait_timeout=0.2) as fake:
        new_project(fake)
        compute = make_client(fake)
        op = negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
        ops = compute.zoneOperations()
        assert ops.wait(project=P, zone=Z, operation=op["name"]).execute()["status"] == "RUNNING"
        with pytest.raises(HttpError):
            negs(compute).get(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
        # A second insert of the same name while the first is in flight is a conflict.
        with pytest.raises(HttpError) as exc:
            negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
        assert exc.value.status_code == 409
        fake.complete_operations()
        assert ops.wait(project=P, zone=Z, operation=op["name"]).execute()["status"] == "DONE"
        assert fake.negs() == [(P, Z, "neg-a")]


def test_delete_of_in_use_neg_refused(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    fake.set_backend(P, Z, "neg-a", health_check=False, backend_service="web")
    with pytest.raises(HttpError) as exc:
        negs(compute).delete(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert exc.value.status_code == 400
    assert reason_of(exc.value) == "resourceInUseByAnotherResource"
    assert "backendServices/web" in str(exc.value)
    assert fake.negs() == [(P, Z, "neg-a")]
    fake.clear_backend(P, Z, "neg-a")
    negs(compute).delete(project=P, zone=Z, networkEndpointGroup="neg-a").execute()
    assert fake.negs() == []


def test_request_id_makes_retries_idempotent(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    rid = str(uuid.uuid4())
    first = attach(compute, fake=fake, body=eps(("10.0.0.1", 80)), requestId=rid)
    detach(compute, eps(("10.0.0.1", 80)))
    second = attach(compute, fake=fake, body=eps(("10.0.0.1", 80)), requestId=rid)
    assert second["name"] == first["name"]
    assert fake.endpoints(P, Z, "neg-a") == set()
    with pytest.raises(HttpError) as exc:
        attach(compute, fake=fake, body=eps(("10.0.0.1", 80)), requestId="not-a-uuid")
    assert exc.value.status_code == 400


def test_calls_are_recorded(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
    call = fake.calls[-1]
    assert call.method_id == ATTACH and call.status == 200 and call.http_method == "POST"
    assert call.path_params == {"project": P, "zone": Z, "networkEndpointGroup": "neg-a"}
    assert call.body == eps(("10.0.0.1", 80))
    assert fake.count(ATTACH) == 1
    fake.clear_calls()
    assert fake.calls == []


def test_latency_and_stop_never_hangs() -> None:
    fake = FakeCompute(operation_delay=math.inf, wait_timeout=60).start()
    new_project(fake)
    compute = make_client(fake)
    fake.set_latency(0.2)
    t0 = time.monotonic()
    op = negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
    assert time.monotonic() - t0 >= 0.2
    fake.set_latency(0)
    result: dict[str, Any] = {}

    def park() -> None:
        try:
            result["op"] = compute.zoneOperations().wait(
                project=P, zone=Z, operation=op["name"]).execute()
        except Exception as e:  # only timing matters here
            result["err"] = e

    waiter = threading.Thread(target=park)
    waiter.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    fake.stop()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and time.monotonic() - t0 < 3


# -- issue 13: as strict as GCE ------------------------------------------------------------------------
def call_status(fn: Any) -> tuple[int, str]:
    try:
        fn()
    except HttpError as exc:
        return exc.status_code, str(exc)
    return 200, ""


def one(ip: str, instance: str, port: int = 80) -> dict[str, Any]:
    return {"networkEndpoints": [{"instance": instance, "ipAddress": ip, "port": port}]}


def test_an_endpoint_ip_must_belong_to_its_instance_in_the_negs_zone_and_subnet(
    fake: FakeCompute, compute: Any
) -> None:
    fake.add_subnetwork(P, "us-central1", "other", cidr="192.168.0.0/16")
    negs(compute).insert(project=P, zone=Z, body={**NEG_BODY, "subnetwork": "default"}).execute()
    fake.add_instance(P, Z, "vm-1", ip="10.1.0.5", alias_ranges=["10.8.1.0/24"])
    fake.add_instance(P, "us-central1-b", "vm-b", alias_ranges=["10.8.2.0/24"])
    fake.add_instance(P, Z, "vm-other-subnet", subnetwork="other", alias_ranges=["192.168.1.0/24"])
    assert call_status(lambda: attach(compute, one("10.1.0.5", "vm-1")))[0] == 200  # primary IP
    assert call_status(lambda: attach(compute, one("10.8.1.7", "vm-1")))[0] == 200  # alias range
    status, text = call_status(lambda: attach(compute, one("10.8.9.9", "vm-1")))
    assert status == 400 and "doesn't belong to instance" in text
    status, text = call_status(lambda: attach(compute, one("10.8.9.9", "vm-missing")))
    assert status == 404 and "instances/vm-missing" in text
    status, text = call_status(lambda: attach(compute, one("10.8.2.1", "vm-b")))
    assert status == 400 and "us-central1-b" in text
    status, text = call_status(lambda: attach(compute, one("192.168.1.1", "vm-other-subnet")))
    assert status == 400 and "subnetwork" in text
    assert fake.endpoints(P, Z, "neg-a") == {("10.1.0.5", 80), ("10.8.1.7", 80)}


def test_a_neg_needs_an_existing_network_and_subnetwork(fake: FakeCompute, compute: Any) -> None:
    status, text = call_status(lambda: negs(compute).insert(
        project=P, zone=Z, body={**NEG_BODY, "network": "nope"}).execute())
    assert status == 404 and "global/networks/nope" in text
    status, text = call_status(lambda: negs(compute).insert(
        project=P, zone=Z, body={**NEG_BODY, "subnetwork": "nope"}).execute())
    assert status == 404 and "subnetworks/nope" in text
    op = negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
    assert op["status"] == "DONE" and "error" not in op
    assert fake.neg(P, Z, "neg-a")["subnetwork"].endswith("/regions/us-central1/subnetworks/default")


def test_stopping_or_deleting_a_vm_removes_its_endpoints(fake: FakeCompute, compute: Any) -> None:
    negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
    attach(compute, fake=fake, body=eps(("10.0.0.1", 80), ("10.0.0.2", 80)))
    fake.stop_instance(P, Z, "vm-1")
    assert fake.endpoints(P, Z, "neg-a") == {("10.0.0.2", 80)}
    assert call_status(lambda: attach(compute, eps(("10.0.0.1", 80))))[0] == 400  # not RUNNING
    fake.start_instance(P, Z, "vm-1")
    fake.delete_instance(P, Z, "vm-2")
    assert fake.endpoints(P, Z, "neg-a") == set()


def test_a_detached_endpoint_stays_draining_for_a_while() -> None:
    with FakeCompute(detach_drain_seconds=0.3) as fake:
        new_project(fake)
        compute = make_client(fake)
        fake.add_neg(P, Z, "neg-a")
        fake.set_backend(P, Z, "neg-a")
        attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
        detach(compute, eps(("10.0.0.1", 80)))
        assert fake.endpoints(P, Z, "neg-a") == set()

        def listed() -> list[Any]:
            return negs(compute).listNetworkEndpoints(project=P, zone=Z, networkEndpointGroup="neg-a",
                                                      body={"healthStatus": "SHOW"}).execute().get("items", [])

        items = listed()
        assert [i["healths"][0]["healthState"] for i in items] == ["DRAINING"]
        assert call_status(lambda: detach(compute, eps(("10.0.0.1", 80))))[0] == 400  # not attached
        time.sleep(0.35)
        assert listed() == []


def test_several_healths_entries_per_endpoint(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    attach(compute, fake=fake, body=eps(("10.0.0.1", 80)))
    fake.set_backend(P, Z, "neg-a", backend_service="external")
    fake.set_backend(P, Z, "neg-a", backend_service="internal")
    fake.add_forwarding_rule(P, Z, "neg-a", "ilb-rule")
    fake.set_health(P, Z, "neg-a", "10.0.0.1", 80, "HEALTHY")
    fake.set_health(P, Z, "neg-a", "10.0.0.1", 80, "UNHEALTHY", backend_service="internal")
    item, = negs(compute).listNetworkEndpoints(project=P, zone=Z, networkEndpointGroup="neg-a",
                                               body={"healthStatus": "SHOW"}).execute()["items"]
    by_service = {h["backendService"]["backendService"].rsplit("/", 1)[1]: h["healthState"]
                  for h in item["healths"] if "backendService" in h}
    assert by_service == {"external": "HEALTHY", "internal": "UNHEALTHY"}
    rules = [h for h in item["healths"] if "forwardingRule" in h]
    assert len(rules) == 1 and "backendService" not in rules[0]


def test_wait_may_return_before_the_operation_is_done() -> None:
    with FakeCompute(operation_delay=0.3, wait_returns_early=True) as fake:
        new_project(fake)
        compute = make_client(fake)
        op = negs(compute).insert(project=P, zone=Z, body=NEG_BODY).execute()
        waited = compute.zoneOperations().wait(project=P, zone=Z, operation=op["name"]).execute()
        assert waited["status"] == "RUNNING"  # the client must wait again
        time.sleep(0.35)
        assert compute.zoneOperations().wait(project=P, zone=Z, operation=op["name"]).execute()["status"] == "DONE"


def test_injections_resource_not_ready_quota_and_a_vanished_neg(fake: FakeCompute, compute: Any) -> None:
    fake.add_neg(P, Z, "neg-a")
    fake.inject(ATTACH, 400, reason="resourceNotReady")
    status, text = call_status(lambda: attach(compute, fake=fake, body=eps(("10.0.0.1", 80))))
    assert status == 400 and "resourceNotReady" in text
    fake.neg_quota = 1
    op = negs(compute).insert(project=P, zone=Z, body={**NEG_BODY, "name": "neg-b"}).execute()
    assert op["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED" and op["httpErrorStatusCode"] == 403
    fake.remove_neg(P, Z, "neg-a")
    assert call_status(lambda: attach(compute, eps(("10.0.0.1", 80))))[0] == 404


def test_the_token_endpoint_verifies_the_service_account_assertion(fake: FakeCompute) -> None:
    import google.oauth2.service_account
    from google.auth.transport.requests import Request

    key = fake.service_account_key()
    creds = google.oauth2.service_account.Credentials.from_service_account_info(
        key, scopes=["https://www.googleapis.com/auth/compute"])
    creds.refresh(Request())
    compute = make_client(fake, creds)
    assert negs(compute).list(project=P, zone=Z).execute()["kind"] == "compute#networkEndpointGroupList"
    # A key the fake never issued (another private key under the same id) is refused.
    with FakeCompute() as other:
        forged = {**key, "private_key": other.service_account_key()["private_key"]}
    bad = google.oauth2.service_account.Credentials.from_service_account_info(
        forged, scopes=["https://www.googleapis.com/auth/compute"])
    with pytest.raises(Exception, match="invalid_grant"):
        bad.refresh(Request())
