"""Fake Google Compute Engine API (compute v1) for zonal network endpoint groups.

Design
------
A ``ThreadingHTTPServer`` bound to 127.0.0.1 on an ephemeral port.  The real
``google-api-python-client`` talks to it unchanged; nothing in the client is
patched.  Request routing and request validation are driven by the compute v1
discovery document that ships inside google-api-python-client
(``googleapiclient/discovery_cache/documents/compute.v1.json``), so the fake
accepts exactly what that client version can send and rejects what the
discovery surface does not declare.

Control surface (all thread-safe)
---------------------------------
``FakeCompute(operation_delay=0.0, wait_timeout=2.0, strict_detach=True,
default_health="UNKNOWN", max_endpoints_per_call=500, require_auth=True,
detach_drain_seconds=2.0, wait_returns_early=False, neg_quota=None)``;
``start()``/``stop()`` or ``with``; ``url``, ``api_endpoint``, ``token_uri``;
credentials: ``issue_token``, ``credentials()``, ``service_account_key()``,
``revoke_tokens``; topology: ``add_network``, ``add_subnetwork``,
``add_instance``, ``provision``, ``stop_instance``, ``start_instance``,
``delete_instance``; NEGs: ``add_neg``, ``remove_neg``, ``set_backend`` (one per
backend service), ``clear_backend``, ``add_forwarding_rule``, ``set_health``;
faults: ``reject_endpoints``, ``clear_rejected_endpoints``,
``fail_next_operation``, ``inject``, ``set_latency``, ``complete_operations``;
inspection via ``calls``, ``count``, ``clear_calls``, ``endpoints``,
``endpoint_instances``, ``negs``, ``neg``.  ``operation_delay=math.inf`` keeps
operations RUNNING until ``complete_operations()``.  The metadata server fake
(Workload Identity) is :mod:`tests.emulators.gce_metadata`.

Building a client against it
----------------------------
``client_options.api_endpoint`` *replaces* ``rootUrl + servicePath`` wholesale
(googleapiclient 2.202.0, ``discovery.build_from_document``); it is not a new
``rootUrl``.  Verified by experiment: with ``api_endpoint="http://127.0.0.1:P/"``
requests go to ``/projects/...`` (no ``compute/v1``), with
``api_endpoint="http://127.0.0.1:P/compute/v1/"`` (trailing slash optional)
they go to ``/compute/v1/projects/...``.  The fake only serves the latter, like
the real API, so build the client with ``fake.api_endpoint``
(== ``fake.url + "compute/v1/"``)::

    creds = google.auth.credentials.AnonymousCredentials()
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=5))
    compute = googleapiclient.discovery.build(
        "compute", "v1", static_discovery=True, http=http,
        client_options={"api_endpoint": fake.api_endpoint})

(``credentials=`` and ``http=`` are mutually exclusive in ``build``.)  Every
Compute call needs ``Authorization: Bearer <token>`` with a token this fake
issued (``credentials()`` for tests, the ``/token`` endpoint for a key file, the
metadata fake for Workload Identity): 401 without, 403 without a Compute scope.

What is validated (from the discovery document)
-----------------------------------------------
* path + HTTP verb against the methods of ``networkEndpointGroups`` and
  ``zoneOperations``; anything else is 404.  Declared but unimplemented
  methods (testIamPermissions, zoneOperations.list/delete) are 501.
* path parameters: required, non-empty, and the declared ``pattern``.
* query parameters: must be declared by the method or in the document's
  top-level ``parameters`` (alt, fields, prettyPrint, quotaUser, ...);
  integer (format range, ``minimum``/``maximum``), boolean and enum types;
  a non-repeated parameter given twice is rejected.  ``alt`` must be json.
* the JSON body against the method's ``request`` schema, recursively through
  ``$ref``, arrays and ``additionalProperties``: unknown field -> 400 naming the
  field and where it is, wrong JSON type -> 400, enum membership.  ``null`` is
  accepted anywhere (proto3 JSON treats it as "unset"); integers may be JSON
  numbers or numeric strings (also proto3 JSON).  Body on a method without a
  ``request`` schema is rejected.

Behaviour copied from the real API
----------------------------------
* NEGs per project/zone; insert/get/list/aggregatedList/delete; 404 notFound,
  409 alreadyExists, 400 resourceInUseByAnotherResource on delete of a NEG used
  by a backend service (``set_backend``).  Name must be RFC1035, <= 63 chars.
* Every mutation returns a ``compute#operation``; the change is applied only
  when the operation becomes DONE (``operation_delay`` seconds later; DONE
  immediately by default).  zoneOperations.get reports progress,
  zoneOperations.wait blocks server-side up to ``wait_timeout`` (real: 2
  minutes) and then returns the current state, DONE or not.
* ``requestId`` (must be a non-zero UUID) makes mutations idempotent: a retry
  with the same id returns the original operation and changes nothing.
* Operation failures (``fail_next_operation``): the operation ends DONE with
  ``error.errors[{code, message}]``, ``httpErrorStatusCode`` and
  ``httpErrorMessage``; the change is not applied.
* attach/detach: at most 500 endpoints per call; one rejected endpoint
  (``reject_endpoints``) fails the whole call and nothing is applied.  Detaching
  an absent endpoint is a 400 (``strict_detach``).
* attach: each endpoint's instance exists in the NEG's zone (404 naming it
  otherwise; 400 if it is in another zone), is RUNNING, has an interface in the
  NEG's subnetwork, and owns the IP as primary IP or inside an alias range (NEG
  concepts: "the IP address must belong to a VM … primary IP or … aliased IP
  range"); see ``_check_endpoint``.  NEG insert: network and subnetwork exist
  (404), subnetwork of that network and in the zone's region (``_check_network``).
* stopping or deleting an instance removes its endpoints from every NEG
  (kubernetes/kubernetes#110641).
* a detached endpoint stays listed DRAINING for ``detach_drain_seconds`` when a
  health-checked backend service uses the NEG (belief; stricter for clients).
* ``healths``: one entry per backend service (several services per NEG), plus
  forwarding-rule-only entries without a backend service.
* ``zoneOperations.wait`` may return before DONE: after ``wait_timeout``, or at
  once with ``wait_returns_early`` (the reference: "not guaranteed to wait").
* ``neg_quota``: inserts beyond it end with operation error ``QUOTA_EXCEEDED``.
* listNetworkEndpoints (POST): ``healthStatus`` SHOW/SKIP; ``healths`` only
  with SHOW and a health-checked backend service; paging via
  maxResults/pageToken; empty repeated fields are omitted, like Google does.
* Paging for list/aggregatedList/listNetworkEndpoints as the compute v1
  discovery document shipped in google-api-python-client declares it
  (``googleapiclient/discovery_cache/documents/compute.v1.json``, each method's
  ``maxResults``: "If the number of available results is larger than
  `maxResults`, Compute Engine returns a `nextPageToken` ... Acceptable values
  are `0` to `500`, inclusive. (Default: `500`)"; ``pageToken``: "Set
  `pageToken` to the `nextPageToken` returned by a previous list request"; the
  response's ``nextPageToken`` is absent on the last page).  0 means the
  default; above 500 is a 400 (stricter: whether GCE clamps or refuses is not
  verified).  The token is opaque and bound to the listing it came from (the
  method, the NEG, ``filter`` and ``orderBy``): a garbled token, or one replayed
  against another listing, is a 400 (stricter: GCE's behaviour for a replayed
  token is not documented).  Clients page with the library's ``list_next``.
* Errors use Google's JSON error shape; status strings follow google.rpc.Code.

Deliberate choices / honest gaps
--------------------------------
* Attaching an endpoint that is already attached to the same instance is a
  no-op (idempotent) rather than an error; attaching the same ip:port for a
  *different* instance, or listing one ip:port twice in one call, is a 400.
  Whether the real API errors on re-attach was not verified.
* Endpoint identity is (ipAddress, port).  ``instance`` and ``ipAddress`` are
  required (stricter: the real API can derive ipAddress from the instance's
  primary NIC).  ``port`` falls back to the NEG's defaultPort.
* Only ``networkEndpointType=GCE_VM_IP_PORT`` is supported; ``network`` is
  required.  Alias ranges of different instances are not checked for overlap.
* Rejected endpoints apply to attach only; ``reject_endpoints(mode="operation")``
  reports the rejection as an operation error instead of a synchronous 400.
* Error *messages* imitate Google's wording but are not byte-identical; match
  on status and ``reason``, not on text.
* Operation completion is evaluated lazily on each request (no timers), in
  creation order; state changed between request and completion (e.g. NEG
  deleted) turns the later operation into an error.  Checks such as
  strict_detach run against applied state at request time.
* aggregatedList only lists zones that hold NEGs (the real one lists every
  zone, with NO_RESULTS_ON_PAGE warnings); ``includeAllScopes`` and
  ``serviceProjectNumber`` are accepted and ignored.  ``returnPartialSuccess``
  is not declared for this method in compute v1 and is therefore a 400.
* ``filter``: only ``field = "v"``, ``field != "v"``, ``field eq regex``,
  ``field ne regex`` (dotted fields allowed), combined with AND / parentheses;
  anything else is a 400 saying the fake does not support it (never silently
  ignored).  ``orderBy``: one field, optional ``asc``/``desc``.
* ``fields`` (partial responses) and ``prettyPrint`` are accepted and ignored.
  Output-only body fields (``id``, ``selfLink``, ``size``...) pass validation
  and are ignored, as the real API does.
* Health states are validated against the discovery doc's
  HealthStatusForNetworkEndpoint.healthState enum (DRAINING, HEALTHY,
  UNHEALTHY, UNKNOWN); compute v1 has no TIMEOUT there.
* No IAM permissions (only token and scope), no quotas other than ``neg_quota``
  and injected faults, no project/zone existence checks.
"""

from __future__ import annotations

import base64
import datetime
import functools
import http
import ipaddress
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import google.auth.crypt
import google.auth.exceptions
import google.auth.jwt
import googleapiclient

from tests.support.loopback import LoopbackServer

JSON = dict[str, Any]

SERVICE_PATH = "compute/v1/"
IMPLEMENTED_RESOURCES = ("networkEndpointGroups", "zoneOperations")
# compute.v1.json, maxResults of every list method: "Acceptable values are `0` to `500`, inclusive. (Default: `500`)".
MAX_PAGE = 500
_NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ONE_HOUR = 3600.0
# Scopes that grant the Compute API (https://developers.google.com/identity/protocols/oauth2/scopes#compute).
COMPUTE_SCOPES = frozenset({
    "https://www.googleapis.com/auth/compute",
    "https://www.googleapis.com/auth/cloud-platform",
})
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_REASONS = {
    400: "invalid",
    403: "rateLimitExceeded",
    404: "notFound",
    409: "alreadyExists",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
# Operation error codes are UPPER_SNAKE, unlike the camelCase HTTP error reasons.
_OP_ERROR_CODES = {
    "notFound": "RESOURCE_NOT_FOUND",
    "alreadyExists": "RESOURCE_ALREADY_EXISTS",
    "resourceInUseByAnotherResource": "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
    "invalid": "INVALID_FIELD_VALUE",
}
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def discovery_document_path() -> Path:
    return (
        Path(googleapiclient.__file__).parent
        / "discovery_cache"
        / "documents"
        / "compute.v1.json"
    )


@functools.lru_cache(maxsize=1)
def _discovery() -> JSON:
    # Cached per process: the document is several MB and immutable, and every
    # test starts a fresh server.
    with discovery_document_path().open(encoding="utf-8") as fh:
        doc: JSON = json.load(fh)
    return doc


def _ts() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else zone


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or _DEFAULT_REASONS.get(status, "invalid")

    def to_json(self) -> JSON:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [
                    {"message": self.message, "domain": "global", "reason": self.reason}
                ],
                "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
            }
        }


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, "invalid")


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it (method_id is None when unroutable)."""

    method_id: str | None
    http_method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    status: int


@dataclass
class _Route:
    method_id: str
    http_method: str
    regex: re.Pattern[str]
    param_names: list[str]
    desc: JSON


@dataclass
class _Fault:
    method_id: str | None
    status: int
    remaining: int
    reason: str
    message: str


@dataclass
class _OpFailure:
    code: str
    message: str
    http_status: int
    method_id: str | None


@dataclass
class _Backend:
    backend_service: str
    health_check: str | None


@dataclass
class _Subnetwork:
    project: str
    region: str
    name: str
    network: str  # network URL
    cidr: ipaddress.IPv4Network
    url: str


@dataclass
class _Nic:
    subnetwork: _Subnetwork
    ip: ipaddress.IPv4Address
    aliases: list[ipaddress.IPv4Network]


@dataclass
class _Instance:
    project: str
    zone: str
    name: str
    nics: list[_Nic]
    status: str = "RUNNING"


@dataclass
class _Neg:
    project: str
    zone: str
    name: str
    id: str
    created: str
    network: str
    subnetwork: str | None
    default_port: int | None
    description: str | None
    # (ip, port) -> instance name; a dict keeps attach order stable.
    endpoints: dict[tuple[str, int], str] = field(default_factory=dict)
    health: dict[tuple[str, int], str] = field(default_factory=dict)
    # Per backend service overrides of ``health``: (ip, port, backend service name) -> state.
    health_by_service: dict[tuple[str, int, str], str] = field(default_factory=dict)
    backends: dict[str, _Backend] = field(default_factory=dict)  # backend service name -> backend
    # Entries without a backend service (e.g. a passthrough forwarding rule): rule URLs.
    forwarding_rules: list[str] = field(default_factory=list)
    # Detached endpoints still listed as DRAINING: (ip, port) -> (instance, until monotonic time).
    draining: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)

    @property
    def backend(self) -> _Backend | None:
        return next(iter(self.backends.values()), None)


@dataclass
class _Operation:
    project: str
    zone: str
    name: str
    id: str
    operation_type: str
    target_link: str
    target_id: str
    insert_time: str
    done_at: float
    # Returns None on success, or an ApiError that becomes the operation error.
    apply: Callable[[], ApiError | None]
    failure: _OpFailure | None = None
    status: str = "RUNNING"
    end_time: str | None = None


class FakeCompute(LoopbackServer):
    """Loopback fake of compute v1 NEG + zone operation endpoints.

    Thread-safe: all state sits behind one lock, which the HTTP handler
    threads and the test's control calls share.
    """

    thread_name = "fake-compute"

    def __init__(
        self,
        *,
        operation_delay: float = 0.0,
        wait_timeout: float = 2.0,
        strict_detach: bool = True,
        default_health: str | None = "UNKNOWN",
        max_endpoints_per_call: int = 500,
        host: str = "127.0.0.1",
        require_auth: bool = True,
        detach_drain_seconds: float = 2.0,
        wait_returns_early: bool = False,
        neg_quota: int | None = None,
    ) -> None:
        self.require_auth = require_auth
        self.detach_drain_seconds = detach_drain_seconds
        self.wait_returns_early = wait_returns_early
        self.neg_quota = neg_quota
        self._tokens: dict[str, frozenset[str]] = {}
        self._sa_keys: dict[str, tuple[str, str]] = {}  # key id -> (client email, public key PEM)
        self._networks: dict[tuple[str, str], str] = {}  # (project, name) -> URL
        self._subnets: dict[tuple[str, str, str], _Subnetwork] = {}  # (project, region, name)
        self._instances: dict[tuple[str, str, str], _Instance] = {}
        self._primary_ips = itertools.count(1)
        self.operation_delay = operation_delay
        self.wait_timeout = wait_timeout
        self.strict_detach = strict_detach
        self.default_health = default_health
        self.max_endpoints_per_call = max_endpoints_per_call
        self._host = host
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._doc: JSON = {}
        self._routes: list[_Route] = []
        self._negs: dict[tuple[str, str, str], _Neg] = {}
        self._ops: dict[tuple[str, str, str], _Operation] = {}
        self._pending: list[_Operation] = []
        self._request_ids: dict[tuple[str, str], tuple[float, _Operation]] = {}
        self._faults: list[_Fault] = []
        self._op_failures: list[_OpFailure] = []
        self._rejected: dict[tuple[str, int], str] = {}
        self._latency = 0.0
        self._calls: list[Call] = []
        self._ids = itertools.count(4_000_000_000_000_000_001)
        self._handlers: dict[str, Callable[[dict[str, str], dict[str, list[str]], JSON], JSON]] = {
            "compute.networkEndpointGroups.insert": self._neg_insert,
            "compute.networkEndpointGroups.get": self._neg_get,
            "compute.networkEndpointGroups.delete": self._neg_delete,
            "compute.networkEndpointGroups.list": self._neg_list,
            "compute.networkEndpointGroups.aggregatedList": self._neg_aggregated_list,
            "compute.networkEndpointGroups.attachNetworkEndpoints": self._neg_attach,
            "compute.networkEndpointGroups.detachNetworkEndpoints": self._neg_detach,
            "compute.networkEndpointGroups.listNetworkEndpoints": self._neg_list_endpoints,
            "compute.zoneOperations.get": self._op_get,
            "compute.zoneOperations.wait": self._op_wait,
        }

    # ------------------------------------------------------------------ lifecycle

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def start(self) -> Self:
        self._doc = _discovery()
        self._routes = self._build_routes()
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        # Wake handlers parked in zoneOperations.wait or injected latency first,
        # so shutdown never waits on them.
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        super().stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT/``."""
        return f"http://{self._host}:{self.port}/"

    @property
    def api_endpoint(self) -> str:
        """What to pass as ``client_options={"api_endpoint": ...}``."""
        return self.url + SERVICE_PATH

    def _link(self, rel: str) -> str:
        return f"{self.url}{SERVICE_PATH}{rel}"

    # ------------------------------------------------------------ control API

    def inject(
        self,
        method_id: str | None,
        status: int,
        count: int = 1,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next ``count`` requests to ``method_id`` (None: any method)."""
        if method_id is not None and method_id not in self._known_method_ids():
            raise ValueError(f"unknown discovery method id {method_id!r}")
        reason = reason or _DEFAULT_REASONS.get(status, "backendError")
        text = message or {
            "rateLimitExceeded": "Rate Limit Exceeded",
            "backendError": "Internal error. Please try again.",
        }.get(reason, http.HTTPStatus(status).phrase)
        with self._lock:
            self._faults.append(_Fault(method_id, status, count, reason, text))

    def set_latency(self, seconds: float) -> None:
        self._latency = seconds

    def fail_next_operation(
        self,
        error_code: str = "INTERNAL_ERROR",
        message: str = "Internal error.",
        *,
        http_status: int = 400,
        method_id: str | None = None,
    ) -> None:
        """The next mutation (optionally only of ``method_id``) ends DONE with an error."""
        with self._lock:
            self._op_failures.append(_OpFailure(error_code, message, http_status, method_id))

    def reject_endpoints(
        self, endpoints: Iterable[tuple[str, int]], *, mode: str = "request"
    ) -> None:
        """Attach calls naming any of these (ip, port) fail as a whole.

        mode "request": synchronous HTTP 400; mode "operation": the returned
        operation ends DONE with an error.  Nothing of the batch is applied.
        """
        if mode not in ("request", "operation"):
            raise ValueError(mode)
        with self._lock:
            for ip, port in endpoints:
                self._rejected[(ip, int(port))] = mode

    def clear_rejected_endpoints(self) -> None:
        with self._lock:
            self._rejected.clear()

    # -- credentials ------------------------------------------------------------------------

    @property
    def token_uri(self) -> str:
        """The OAuth 2.0 token endpoint (a key file's ``token_uri``)."""
        return self.url + "token"

    def issue_token(self, scopes: Iterable[str] = COMPUTE_SCOPES) -> str:
        """A bearer token the Compute API will accept (as Google's token endpoint would issue)."""
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = frozenset(scopes)
        return token

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def credentials(self) -> Any:
        """google-auth credentials holding a freshly issued token (for tests that build a client)."""
        import google.oauth2.credentials

        return google.oauth2.credentials.Credentials(token=self.issue_token())

    def service_account_key(
        self, *, email: str = "negsync@proj-negsync.iam.gserviceaccount.com", project: str = "proj-negsync"
    ) -> JSON:
        """A service-account key file (the JSON ``gcloud iam service-accounts keys create`` writes).

        Its ``token_uri`` is this fake's token endpoint; the public half is registered here, so a
        JWT assertion signed with the private key is verified like Google verifies it.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        key_id = secrets.token_hex(20)
        with self._lock:
            self._sa_keys[key_id] = (email, public)
        return {
            "type": "service_account", "project_id": project, "private_key_id": key_id,
            "private_key": private, "client_email": email, "client_id": "10" + secrets.token_hex(8),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        }

    # -- topology: networks, subnetworks, instances -----------------------------------------

    def add_network(self, project: str, name: str = "default") -> str:
        with self._lock:
            url = self._link(f"projects/{project}/global/networks/{name}")
            self._networks[(project, name)] = url
            return url

    def add_subnetwork(
        self, project: str, region: str, name: str, *, cidr: str, network: str = "default"
    ) -> None:
        with self._lock:
            net = self._networks.get((project, network)) or self.add_network(project, network)
            self._subnets[(project, region, name)] = _Subnetwork(
                project, region, name, net, ipaddress.IPv4Network(cidr),
                self._link(f"projects/{project}/regions/{region}/subnetworks/{name}"))

    def add_instance(
        self,
        project: str,
        zone: str,
        name: str,
        *,
        subnetwork: str = "default",
        ip: str | None = None,
        alias_ranges: Iterable[str] = (),
    ) -> None:
        """A running VM with one network interface in ``subnetwork`` of the zone's region."""
        with self._lock:
            sub = self._subnets[(project, _region_of(zone), subnetwork)]
            primary = ipaddress.IPv4Address(ip) if ip else self._free_primary(sub)
            self._instances[(project, zone, name)] = _Instance(
                project, zone, name,
                [_Nic(sub, primary, [ipaddress.IPv4Network(r) for r in alias_ranges])])

    def provision(
        self,
        project: str,
        zone: str,
        instance: str,
        ips: Iterable[str] = (),
        *,
        subnetwork: str = "default",
        cidr: str = "10.0.0.0/8",
        network: str = "default",
    ) -> None:
        """Create what an endpoint needs: network, subnetwork, instance, and each IP as a /32 alias."""
        with self._lock:
            region = _region_of(zone)
            if (project, region, subnetwork) not in self._subnets:
                self.add_subnetwork(project, region, subnetwork, cidr=cidr, network=network)
            if (project, zone, instance) not in self._instances:
                self.add_instance(project, zone, instance, subnetwork=subnetwork)
            nic = self._instances[(project, zone, instance)].nics[0]
            nic.aliases.extend(ipaddress.IPv4Network(f"{ip}/32") for ip in ips)

    def _free_primary(self, sub: _Subnetwork) -> ipaddress.IPv4Address:
        # Primary IPs from the top of the range, well away from the low pod ranges tests use.
        return sub.cidr.broadcast_address - 1 - next(self._primary_ips)

    def stop_instance(self, project: str, zone: str, name: str) -> None:
        """Stop (or preempt) a VM: GCE removes its endpoints from every NEG.

        kubernetes/kubernetes#110641 and the NEG docs ("if the VM is stopped or deleted, its
        endpoints are removed from the NEG"): the NEG does not get them back when it restarts.
        """
        with self._lock:
            self._advance()
            self._instances[(project, zone, name)].status = "TERMINATED"
            self._drop_endpoints_of(project, zone, name)

    def start_instance(self, project: str, zone: str, name: str) -> None:
        with self._lock:
            self._instances[(project, zone, name)].status = "RUNNING"

    def delete_instance(self, project: str, zone: str, name: str) -> None:
        with self._lock:
            self._advance()
            del self._instances[(project, zone, name)]
            self._drop_endpoints_of(project, zone, name)

    def _drop_endpoints_of(self, project: str, zone: str, instance: str) -> None:
        for neg in self._negs.values():
            if (neg.project, neg.zone) != (project, zone):
                continue
            for key in [k for k, v in neg.endpoints.items() if v == instance]:
                del neg.endpoints[key]
                neg.health.pop(key, None)

    def remove_neg(self, project: str, zone: str, name: str) -> None:
        """Delete a NEG behind the controller's back (another tool, a person, a project clean-up)."""
        with self._lock:
            self._advance()
            del self._negs[(project, zone, name)]

    def add_neg(
        self,
        project: str,
        zone: str,
        name: str,
        *,
        network: str = "default",
        subnetwork: str | None = None,
        default_port: int | None = None,
        endpoints: Iterable[tuple[str, str, int]] = (),
    ) -> None:
        """Seed a NEG directly; endpoints are (instance, ip, port)."""
        with self._lock:
            neg = _Neg(
                project, zone, name, self._next_id(), _ts(),
                self._network_url(project, network),
                self._subnetwork_url(project, zone, subnetwork) if subnetwork else None,
                default_port, None,
            )
            for instance, ip, port in endpoints:
                self.provision(project, zone, instance, [ip], network=_last(network),
                               subnetwork=_last(subnetwork or "default"))
                neg.endpoints[(ip, port)] = instance
            self._negs[(project, zone, name)] = neg

    def set_backend(
        self,
        project: str,
        zone: str,
        neg: str,
        *,
        health_check: bool = True,
        backend_service: str | None = None,
    ) -> None:
        """Add a backend service using the NEG (blocks delete; one ``healths`` entry per service).

        Several backend services may use one NEG (e.g. an external and an internal LB); each
        reports its own health for every endpoint (compute v1 NetworkEndpointWithHealthStatus).
        """
        with self._lock:
            n = self._require_neg(project, zone, neg)
            bs = backend_service or f"bs-{neg}"
            n.backends[bs] = _Backend(
                self._link(f"projects/{project}/global/backendServices/{bs}"),
                self._link(f"projects/{project}/global/healthChecks/hc-{bs}")
                if health_check else None,
            )

    def clear_backend(self, project: str, zone: str, neg: str, backend_service: str | None = None) -> None:
        with self._lock:
            n = self._require_neg(project, zone, neg)
            if backend_service is None:
                n.backends.clear()
            else:
                n.backends.pop(backend_service, None)

    def add_forwarding_rule(self, project: str, zone: str, neg: str, rule: str) -> None:
        """A ``healths`` entry that names a forwarding rule and no backend service.

        compute v1 HealthStatusForNetworkEndpoint has ``forwardingRule`` beside ``backendService``;
        ingress-gce's poller ignores entries without a backend service.
        """
        with self._lock:
            self._require_neg(project, zone, neg).forwarding_rules.append(
                self._link(f"projects/{project}/regions/{_region_of(zone)}/forwardingRules/{rule}"))

    def set_health(
        self, project: str, zone: str, neg: str, ip: str, port: int, state: str,
        *, backend_service: str | None = None,
    ) -> None:
        """An endpoint's health in every backend service, or in ``backend_service`` only."""
        allowed = self._doc["schemas"]["HealthStatusForNetworkEndpoint"]["properties"][
            "healthState"]["enum"]
        if state not in allowed:
            raise ValueError(f"{state!r} not in compute v1 healthState enum {allowed}")
        with self._lock:
            n = self._require_neg(project, zone, neg)
            if backend_service is None:
                n.health[(ip, port)] = state
            else:
                n.health_by_service[(ip, port, backend_service)] = state

    def complete_operations(self) -> None:
        """Finish every pending operation now (for ``operation_delay=math.inf``)."""
        with self._cond:
            for op in self._pending:
                op.done_at = 0.0
            self._advance()
            self._cond.notify_all()

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def count(self, method_id: str | None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for c in self._calls
                if (method_id is None or c.method_id == method_id)
                and (status is None or c.status == status)
            )

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def endpoints(self, project: str, zone: str, neg: str) -> set[tuple[str, int]]:
        with self._lock:
            self._advance()
            return set(self._require_neg(project, zone, neg).endpoints)

    def endpoint_instances(
        self, project: str, zone: str, neg: str
    ) -> dict[tuple[str, int], str]:
        with self._lock:
            self._advance()
            return dict(self._require_neg(project, zone, neg).endpoints)

    def negs(self, project: str | None = None) -> list[tuple[str, str, str]]:
        """Sorted (project, zone, name) of every NEG that exists (applied state)."""
        with self._lock:
            self._advance()
            return sorted(k for k in self._negs if project is None or k[0] == project)

    def neg(self, project: str, zone: str, name: str) -> JSON:
        with self._lock:
            self._advance()
            return self._neg_json(self._require_neg(project, zone, name))

    def _require_neg(self, project: str, zone: str, name: str) -> _Neg:
        try:
            return self._negs[(project, zone, name)]
        except KeyError:
            raise KeyError(f"no NEG {project}/{zone}/{name}") from None

    # ------------------------------------------------------------- routing

    def _known_method_ids(self) -> set[str]:
        doc = self._doc or _discovery()
        return {
            m["id"]
            for r in IMPLEMENTED_RESOURCES
            for m in doc["resources"][r]["methods"].values()
        }

    def _build_routes(self) -> list[_Route]:
        routes = []
        for res in IMPLEMENTED_RESOURCES:
            for desc in self._doc["resources"][res]["methods"].values():
                names: list[str] = []
                pattern = ""
                for part in re.split(r"(\{\+?[^}]+\})", desc["path"]):
                    if part.startswith("{"):
                        names.append(part.strip("{}+"))
                        pattern += "(.+)" if part.startswith("{+") else "([^/]*)"
                    else:
                        pattern += re.escape(part)
                routes.append(
                    _Route(desc["id"], desc["httpMethod"], re.compile(pattern), names, desc)
                )
        return routes

    def _handle(self, req: _Handler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw_body = req.rfile.read(length) if length else b""
        if self._latency:
            self._stopping.wait(self._latency)
        split = urllib.parse.urlsplit(req.path)
        if split.path == "/token":
            self._token_endpoint(req, raw_body)
            return
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        route: _Route | None = None
        path_params: dict[str, str] = {}
        body: Any = None
        try:
            self._check_auth(req.headers.get("Authorization"))
            route, path_params = self._route(req.command, split.path)
            with self._lock:
                self._advance()
                self._take_fault(route.method_id)
            self._check_query(route, query)
            self._check_path_params(route, path_params)
            body = self._parse_body(route, raw_body)
            handler = self._handlers.get(route.method_id)
            if handler is None:
                raise ApiError(501, f"{route.method_id} is not implemented by the fake",
                               "notImplemented")
            status, payload = 200, handler(path_params, query, body)
        except ApiError as e:
            status, payload = e.status, e.to_json()
        except Exception as e:
            # A bug in the fake must reach the client as a 500, not a dropped connection.
            status = 500
            payload = ApiError(500, f"fake internal error: {e!r}", "backendError").to_json()
        with self._lock:
            self._calls.append(Call(
                route.method_id if route else None, req.command, split.path,
                path_params, query, body, status,
            ))
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=UTF-8")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _check_auth(self, header: str | None) -> None:
        """401 without a bearer token this fake issued; 403 when its scopes exclude Compute.

        Google's answers (wording from the live API): a request without credentials is 401
        UNAUTHENTICATED "Request is missing required authentication credential..."; an unknown or
        expired token is 401 "Request had invalid authentication credentials..."; a token without
        a Compute scope is 403 "Request had insufficient authentication scopes."
        """
        if not self.require_auth:
            return
        kind, _, token = (header or "").partition(" ")
        if kind.lower() != "bearer" or not token:
            raise ApiError(401, "Request is missing required authentication credential. Expected OAuth 2 "
                           "access token, login cookie or other valid authentication credential.", "required")
        with self._lock:
            scopes = self._tokens.get(token.strip())
        if scopes is None:
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                           "token, login cookie or other valid authentication credential.", "authError")
        if not scopes & COMPUTE_SCOPES:
            raise ApiError(403, "Request had insufficient authentication scopes.", "insufficientPermissions")

    def _token_endpoint(self, req: _Handler, raw_body: bytes) -> None:
        """Google's OAuth 2.0 token endpoint for the JWT-bearer grant of a service account.

        https://developers.google.com/identity/protocols/oauth2/service-account#httprest: POST
        form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``; the JWT is
        RS256-signed by the key ``kid`` names, ``iss`` is the service account, ``aud`` Google's token
        URI, ``scope`` space-separated.  Answer ``{access_token, expires_in, token_type}``, or 400
        ``invalid_grant``.
        """
        status, payload = 200, {}
        form = urllib.parse.parse_qs(raw_body.decode("utf-8", "replace"))
        try:
            if req.command != "POST" or form.get("grant_type", [""])[0] != JWT_BEARER:
                raise ValueError("unsupported grant type")
            assertion = form.get("assertion", [""])[0]
            with self._lock:
                certs = {kid: pem for kid, (_, pem) in self._sa_keys.items()}
                emails = {kid: email for kid, (email, _) in self._sa_keys.items()}
            header = google.auth.jwt.decode_header(assertion)
            # "aud: always https://oauth2.googleapis.com/token" (the same page), whatever URI the
            # assertion is posted to — google-auth sends exactly that.
            claims = google.auth.jwt.decode(assertion, certs=certs, audience=GOOGLE_TOKEN_AUDIENCE)
            if claims.get("iss") != emails.get(header.get("kid")):
                raise ValueError("iss is not the key's service account")
            scopes = str(claims.get("scope") or "").split()
            if not scopes:
                raise ValueError("no scope requested")
            payload = {"access_token": self.issue_token(scopes), "expires_in": 3599, "token_type": "Bearer"}
        except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
            status, payload = 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
        with self._lock:
            self._calls.append(Call("oauth2.token", req.command, "/token", {}, {}, None, status))
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _route(self, verb: str, path: str) -> tuple[_Route, dict[str, str]]:
        prefix = "/" + SERVICE_PATH
        if not path.startswith(prefix):
            raise ApiError(404, f"Not found: {path} (expected the {prefix} service path; "
                           "build the client with fake.api_endpoint)", "notFound")
        rel = path[len(prefix):]
        path_matched = False
        for route in self._routes:
            m = route.regex.fullmatch(rel)
            if not m:
                continue
            path_matched = True
            if route.http_method != verb:
                continue
            params = {
                n: urllib.parse.unquote(v) for n, v in zip(route.param_names, m.groups(), strict=True)
            }
            return route, params
        what = f"HTTP method {verb} not allowed on" if path_matched else "Not found:"
        raise ApiError(404, f"{what} {path}", "notFound")

    def _take_fault(self, method_id: str) -> None:
        for fault in self._faults:
            if fault.method_id in (None, method_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                raise ApiError(fault.status, fault.message, fault.reason)

    # ------------------------------------------------------------ validation

    def _check_query(self, route: _Route, query: dict[str, list[str]]) -> None:
        declared = self._doc["parameters"] | {
            n: p for n, p in route.desc.get("parameters", {}).items()
            if p.get("location") == "query"
        }
        for name, values in query.items():
            spec = declared.get(name)
            if spec is None:
                raise _invalid(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind '
                    f"query parameter. Field '{name}' could not be found in request message."
                )
            if len(values) > 1 and not spec.get("repeated"):
                raise _invalid(f"Query parameter '{name}' given {len(values)} times")
            for value in values:
                self._check_scalar(value, spec, name, from_query=True)
        alt = query.get("alt", ["json"])[0]
        if alt != "json":
            raise _invalid(f"alt={alt} is not supported by the fake (json only)")

    def _check_path_params(self, route: _Route, params: dict[str, str]) -> None:
        for name, spec in route.desc.get("parameters", {}).items():
            if spec.get("location") != "path":
                continue
            value = params.get(name, "")
            if not value:
                if spec.get("required"):
                    raise _invalid(f"Required path parameter '{name}' is empty")
                continue
            pattern = spec.get("pattern")
            if pattern and not re.fullmatch(pattern, value):
                raise _invalid(
                    f"Invalid value for field '{name}': '{value}'. "
                    f"Must be a match of regex '{pattern}'"
                )

    def _parse_body(self, route: _Route, raw: bytes) -> Any:
        ref = route.desc.get("request", {}).get("$ref")
        if not raw.strip():
            return {} if ref else None
        if ref is None:
            raise _invalid(f"{route.method_id} does not take a request body")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise _invalid(f"Invalid JSON payload received. {e}") from None
        self._check_value(body, {"$ref": ref}, "body")
        return body

    def _check_value(self, value: Any, spec: JSON, where: str) -> None:
        if value is None:
            return
        if "$ref" in spec:
            spec = self._doc["schemas"][spec["$ref"]]
        kind = spec.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                raise _invalid(f"Invalid value at '{where}' (type.googleapis.com/"
                               f"{spec.get('id', 'object')}), {json.dumps(value)}: "
                               "expected a JSON object")
            props = spec.get("properties", {})
            extra = spec.get("additionalProperties")
            for key, sub in value.items():
                if key in props:
                    self._check_value(sub, props[key], f"{where}.{key}")
                elif extra is not None:
                    self._check_value(sub, extra, f"{where}[{key!r}]")
                else:
                    raise _invalid(
                        f'Invalid JSON payload received. Unknown name "{key}" at '
                        f"'{where}': Cannot find field."
                    )
        elif kind == "array":
            if not isinstance(value, list):
                raise _invalid(f"Invalid value at '{where}': expected a JSON array, "
                               f"got {json.dumps(value)}")
            for i, item in enumerate(value):
                self._check_value(item, spec.get("items", {}), f"{where}[{i}]")
        elif kind == "any" or kind is None:
            return
        else:
            self._check_scalar(value, spec, where, from_query=False)

    def _check_scalar(self, value: Any, spec: JSON, where: str, *, from_query: bool) -> None:
        kind = spec.get("type")
        fmt = spec.get("format", "")

        def bad(expect: str) -> ApiError:
            shown = value if from_query else json.dumps(value)
            tname = f"TYPE_{fmt.upper()}" if fmt else f"TYPE_{str(kind).upper()}"
            return _invalid(f"Invalid value at '{where}' ({tname}), {shown}: expected {expect}")

        if kind == "string":
            if not isinstance(value, str):
                raise bad("a string")
            if "enum" in spec and value not in spec["enum"]:
                raise bad(f"one of {spec['enum']}")
            if fmt in _INT_RANGES:
                self._check_int(value, fmt, spec, bad)
        elif kind == "integer":
            self._check_int(value, fmt or "int32", spec, bad)
        elif kind == "number":
            if from_query:
                try:
                    float(value)
                except ValueError:
                    raise bad("a number") from None
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("a number")
        elif kind == "boolean":
            ok = value in ("true", "false") if from_query else isinstance(value, bool)
            if not ok:
                raise bad("a boolean")

    @staticmethod
    def _check_int(value: Any, fmt: str, spec: JSON, bad: Callable[[str], ApiError]) -> None:
        # proto3 JSON accepts integers as numbers or as decimal strings.
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            if not re.fullmatch(r"-?\d+", value.strip()):
                raise bad("an integer")
            value = int(value)
        if not isinstance(value, int):
            raise bad("an integer")
        lo, hi = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
        if "minimum" in spec:
            lo = max(lo, int(spec["minimum"]))
        if "maximum" in spec:
            hi = min(hi, int(spec["maximum"]))
        if not lo <= value <= hi:
            raise bad(f"an integer in [{lo}, {hi}]")

    # ------------------------------------------------------------ operations

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _advance(self) -> None:
        now = time.monotonic()
        done = [op for op in self._pending if op.done_at <= now]
        if not done:
            return
        for op in done:
            self._pending.remove(op)
            err: ApiError | None
            if op.failure is not None:
                err = ApiError(op.failure.http_status, op.failure.message, op.failure.code)
            else:
                err = op.apply()
            if err is not None and op.failure is None:
                code = _OP_ERROR_CODES.get(err.reason, err.reason.upper())
                op.failure = _OpFailure(code, err.message, err.status, None)
            op.status = "DONE"
            op.end_time = _ts()
        self._cond.notify_all()

    def _new_operation(
        self,
        method_id: str,
        params: dict[str, str],
        query: dict[str, list[str]],
        op_type: str,
        neg_name: str,
        target_id: str,
        apply: Callable[[], ApiError | None],
        failure: _OpFailure | None = None,
    ) -> JSON:
        project, zone = params["project"], params["zone"]
        request_id = query.get("requestId", [""])[0]
        if request_id:
            try:
                parsed = uuid.UUID(request_id)
            except ValueError:
                parsed = None
            if parsed is None or parsed.int == 0:
                raise _invalid(f"Invalid value for field 'requestId': '{request_id}'. "
                               "Must be a valid non-zero UUID.")
            seen = self._request_ids.get((project, request_id))
            if seen and time.monotonic() - seen[0] < _ONE_HOUR:
                return self._op_json(seen[1])
        if failure is None:
            for f in self._op_failures:
                if f.method_id in (None, method_id):
                    self._op_failures.remove(f)
                    failure = f
                    break
        now = time.monotonic()
        op = _Operation(
            project=project, zone=zone,
            name=f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}",
            id=self._next_id(), operation_type=op_type,
            target_link=self._link(
                f"projects/{project}/zones/{zone}/networkEndpointGroups/{neg_name}"),
            target_id=target_id, insert_time=_ts(),
            done_at=now + self.operation_delay, apply=apply, failure=failure,
        )
        self._ops[(project, zone, op.name)] = op
        self._pending.append(op)
        if request_id:
            self._request_ids[(project, request_id)] = (now, op)
        self._advance()
        return self._op_json(op)

    def _op_json(self, op: _Operation) -> JSON:
        out: JSON = {
            "kind": "compute#operation",
            "id": op.id,
            "name": op.name,
            "zone": self._link(f"projects/{op.project}/zones/{op.zone}"),
            "operationType": op.operation_type,
            "targetLink": op.target_link,
            "targetId": op.target_id,
            "status": op.status,
            "user": "fake-user@example.com",
            "progress": 100 if op.status == "DONE" else 0,
            "insertTime": op.insert_time,
            "startTime": op.insert_time,
            "selfLink": self._link(
                f"projects/{op.project}/zones/{op.zone}/operations/{op.name}"),
        }
        if op.end_time:
            out["endTime"] = op.end_time
        if op.status == "DONE" and op.failure is not None:
            out["error"] = {"errors": [{"code": op.failure.code, "message": op.failure.message}]}
            out["httpErrorStatusCode"] = op.failure.http_status
            out["httpErrorMessage"] = http.HTTPStatus(op.failure.http_status).phrase.upper()
        return out

    def _find_op(self, params: dict[str, str]) -> _Operation:
        op = self._ops.get((params["project"], params["zone"], params["operation"]))
        if op is None:
            raise ApiError(404, f"The resource 'projects/{params['project']}/zones/"
                           f"{params['zone']}/operations/{params['operation']}' was not found")
        return op

    def _op_get(self, params: dict[str, str], query: dict[str, list[str]], body: JSON) -> JSON:
        with self._lock:
            return self._op_json(self._find_op(params))

    def _op_wait(self, params: dict[str, str], query: dict[str, list[str]], body: Any) -> JSON:
        deadline = time.monotonic() + self.wait_timeout
        with self._cond:
            op = self._find_op(params)
            while True:
                self._advance()
                now = time.monotonic()
                # The reference: "not guaranteed to wait" and "might be DONE or still in
                # progress"; wait_returns_early makes every wait return at once, so a client
                # must loop (stricter than the real one, which usually waits).
                if (op.status == "DONE" or self._stopping.is_set() or now >= deadline
                        or self.wait_returns_early):
                    return self._op_json(op)
                self._cond.wait(min(deadline, op.done_at) - now + 0.001)

    # ------------------------------------------------------------------ NEGs

    def _network_url(self, project: str, network: str) -> str:
        if network.startswith(("http://", "https://")):
            return network
        if "/" in network:
            return self._link(network.lstrip("/"))
        return self._link(f"projects/{project}/global/networks/{network}")

    def _subnetwork_url(self, project: str, zone: str, sub: str) -> str:
        if sub.startswith(("http://", "https://")):
            return sub
        if "/" in sub:
            return self._link(sub.lstrip("/"))
        return self._link(f"projects/{project}/regions/{_region_of(zone)}/subnetworks/{sub}")

    def _neg_json(self, neg: _Neg) -> JSON:
        out: JSON = {
            "kind": "compute#networkEndpointGroup",
            "id": neg.id,
            "creationTimestamp": neg.created,
            "selfLink": self._link(
                f"projects/{neg.project}/zones/{neg.zone}/networkEndpointGroups/{neg.name}"),
            "name": neg.name,
            "networkEndpointType": "GCE_VM_IP_PORT",
            "network": neg.network,
            "zone": self._link(f"projects/{neg.project}/zones/{neg.zone}"),
            "size": len(neg.endpoints),
        }
        if neg.subnetwork:
            out["subnetwork"] = neg.subnetwork
        if neg.default_port is not None:
            out["defaultPort"] = neg.default_port
        if neg.description:
            out["description"] = neg.description
        return out

    def _get_neg(self, params: dict[str, str]) -> _Neg:
        key = (params["project"], params["zone"], params["networkEndpointGroup"])
        neg = self._negs.get(key)
        if neg is None:
            raise ApiError(404, f"The resource 'projects/{key[0]}/zones/{key[1]}/"
                           f"networkEndpointGroups/{key[2]}' was not found")
        return neg

    def _neg_insert(self, params: dict[str, str], query: dict[str, list[str]], body: JSON) -> JSON:
        project, zone = params["project"], params["zone"]
        name = body.get("name") or ""
        if len(name) > 63 or not _NAME_RE.fullmatch(name):
            raise _invalid(f"Invalid value for field 'resource.name': '{name}'. Must be a "
                           "match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        net_type = body.get("networkEndpointType")
        if not net_type:
            raise _invalid("Required field 'resource.networkEndpointType' not specified")
        if net_type != "GCE_VM_IP_PORT":
            raise _invalid(f"networkEndpointType {net_type} is not supported by the fake "
                           "(GCE_VM_IP_PORT only)")
        if not body.get("network"):
            raise _invalid("Required field 'resource.network' not specified")
        port = body.get("defaultPort")
        if port is not None and not 1 <= int(port) <= 65535:
            raise _invalid(f"Invalid value for field 'resource.defaultPort': '{port}'. "
                           "Must be between 1 and 65535.")
        with self._lock:
            subnet_url = self._check_network(project, zone, body["network"], body.get("subnetwork"))
            key = (project, zone, name)
            pending_insert = any(
                op.operation_type == "insert" and op.target_link.endswith(f"/{name}")
                and (op.project, op.zone) == (project, zone) for op in self._pending)
            if key in self._negs or pending_insert:
                raise ApiError(409, f"The resource 'projects/{project}/zones/{zone}/"
                               f"networkEndpointGroups/{name}' already exists")
            neg = _Neg(
                project, zone, name, self._next_id(), _ts(),
                self._network_url(project, body["network"]),
                subnet_url,
                int(port) if port is not None else None,
                body.get("description"),
            )
            failure: _OpFailure | None = None
            used = sum(1 for p, _, _ in self._negs if p == project)
            if self.neg_quota is not None and used >= self.neg_quota:
                # Resource quotas fail the operation with QUOTA_EXCEEDED (as instance inserts do,
                # compute docs "Resource quotas"); the synchronous 403 quotaExceeded form is covered
                # by inject().  Which form NEG inserts use is not documented: both are handled.
                failure = _OpFailure(
                    "QUOTA_EXCEEDED",
                    f"Quota 'NETWORK_ENDPOINT_GROUPS' exceeded.  Limit: {float(self.neg_quota)} globally.",
                    403, "compute.networkEndpointGroups.insert")

            def apply() -> ApiError | None:
                if key in self._negs:
                    return ApiError(409, f"The resource '{name}' already exists")
                self._negs[key] = neg
                return None

            return self._new_operation("compute.networkEndpointGroups.insert", params, query,
                                       "insert", name, neg.id, apply, failure)

    def _check_network(self, project: str, zone: str, network: str, subnetwork: str | None) -> str | None:
        """The NEG's network and subnetwork must exist; returns the subnetwork URL.

        A missing network or subnetwork is a 404 naming it (the answer GCE gives for any missing
        referenced resource).  The subnetwork must be of that network and in the zone's region.
        Without ``subnetwork`` GCE picks the network's subnetwork in the region (the NEG API
        reference: "Optional URL of the subnetwork to which all network endpoints in the NEG
        belong"): the fake takes the only one, or the auto-mode one named like the network; with
        none or several others it answers 400 — stricter, since what GCE does then is not
        documented.
        """
        net_url = self._network_url(project, network)
        net_key = _resource_key(net_url, "networks")
        if net_key is None or net_key not in self._networks:
            raise ApiError(404, f"The resource '{_rel(net_url)}' was not found")
        region = _region_of(zone)
        if subnetwork:
            sub_url = self._subnetwork_url(project, zone, subnetwork)
            match = re.search(r"projects/([^/]+)/regions/([^/]+)/subnetworks/([^/]+)$", sub_url)
            sub = self._subnets.get((match[1], match[2], match[3])) if match else None
            if sub is None:
                raise ApiError(404, f"The resource '{_rel(sub_url)}' was not found")
            if sub.region != region:
                raise _invalid(f"Invalid value for field 'resource.subnetwork': '{subnetwork}'. "
                               f"Subnetwork must be in region {region}.")
            if sub.network != net_url:
                raise _invalid(f"Invalid value for field 'resource.subnetwork': '{subnetwork}'. "
                               "Subnetwork does not belong to the network.")
            return sub.url
        candidates = [s for s in self._subnets.values() if s.network == net_url and s.region == region]
        # An auto-mode network's subnetwork in each region carries the network's name; taken as the
        # one GCE picks (belief).  Otherwise exactly one candidate, else 400 (stricter).
        auto = [s for s in candidates if s.name == net_key[1]]
        if len(candidates) > 1 and len(auto) == 1:
            return auto[0].url
        if len(candidates) != 1:
            raise _invalid("Invalid value for field 'resource.subnetwork': ''. The network has "
                           f"{len(candidates)} subnetworks in {region}; the fake requires one, or "
                           "an explicit subnetwork.")
        return candidates[0].url

    def _check_endpoint(self, neg: _Neg, where: str, ip: str, instance: str) -> None:
        """An endpoint's VM exists in the NEG's zone and owns the IP in the NEG's subnetwork.

        The NEG reference (GCE_VM_IP_PORT): "the IP address must belong to a VM in Compute
        Engine (either the primary IP or as part of an aliased IP range)" and the instance must be
        in the NEG's zone; the VM's interface must be in the NEG's subnetwork.  A missing instance
        is a 404 naming it (belief: the shape of GCE's other missing-reference errors); an IP
        outside the instance is a 400.  A stopped VM is refused (stricter: not documented).
        """
        vm = self._instances.get((neg.project, neg.zone, instance))
        if vm is None:
            elsewhere = [z for (p, z, n) in self._instances if p == neg.project and n == instance]
            if elsewhere:
                raise _invalid(f"Invalid value for field '{where}.instance': '{instance}'. The instance "
                               f"is in zone {elsewhere[0]}, not in the NEG's zone {neg.zone}.")
            raise ApiError(404, f"The resource 'projects/{neg.project}/zones/{neg.zone}/instances/"
                           f"{instance}' was not found")
        if vm.status != "RUNNING":
            raise _invalid(f"Invalid value for field '{where}.instance': '{instance}'. The instance "
                           f"is {vm.status}.")
        nics = [n for n in vm.nics
                if (n.subnetwork.url == neg.subnetwork if neg.subnetwork else n.subnetwork.network == neg.network)]
        if not nics:
            raise _invalid(f"Invalid value for field '{where}.instance': '{instance}'. The instance has "
                           "no network interface in the network endpoint group's subnetwork.")
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            raise _invalid(f"Invalid value for field '{where}.ipAddress': '{ip}'. Must be an IPv4 "
                           "address (the fake supports IPv4 only).") from None
        if not any(address == n.ip or any(address in r for r in n.aliases) for n in nics):
            raise _invalid(f"Invalid value for field '{where}.ipAddress': '{ip}'. Specified IP address "
                           f"{ip} doesn't belong to instance {instance} in the network endpoint "
                           "group's subnetwork.")

    def _neg_get(self, params: dict[str, str], query: dict[str, list[str]], body: Any) -> JSON:
        with self._lock:
            return self._neg_json(self._get_neg(params))

    def _neg_delete(self, params: dict[str, str], query: dict[str, list[str]], body: Any) -> JSON:
        with self._lock:
            neg = self._get_neg(params)
            if neg.backend is not None:
                raise ApiError(
                    400,
                    f"The network_endpoint_group resource 'projects/{neg.project}/zones/"
                    f"{neg.zone}/networkEndpointGroups/{neg.name}' is already being used "
                    f"by '{neg.backend.backend_service}'",
                    "resourceInUseByAnotherResource",
                )
            key = (neg.project, neg.zone, neg.name)

            def apply() -> ApiError | None:
                current = self._negs.get(key)
                if current is not neg:
                    return ApiError(404, f"The resource '{neg.name}' was not found")
                if current.backend is not None:
                    return ApiError(400, f"'{neg.name}' is in use",
                                    "resourceInUseByAnotherResource")
                del self._negs[key]
                return None

            return self._new_operation("compute.networkEndpointGroups.delete", params, query,
                                       "delete", neg.name, neg.id, apply)

    def _neg_list(self, params: dict[str, str], query: dict[str, list[str]], body: Any) -> JSON:
        project, zone = params["project"], params["zone"]
        with self._lock:
            items = [self._neg_json(n) for (p, z, _), n in sorted(self._negs.items())
                     if (p, z) == (project, zone)]
        page, token = _paginate(_filter_sort(items, query), query, f"list {project}/{zone}")
        out: JSON = {
            "kind": "compute#networkEndpointGroupList",
            "id": f"projects/{project}/zones/{zone}/networkEndpointGroups",
            "selfLink": self._link(f"projects/{project}/zones/{zone}/networkEndpointGroups"),
        }
        if page:
            out["items"] = page
        if token:
            out["nextPageToken"] = token
        return out

    def _neg_aggregated_list(
        self, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> JSON:
        project = params["project"]
        with self._lock:
            items = [self._neg_json(n) for (p, _, _), n in sorted(self._negs.items())
                     if p == project]
        page, token = _paginate(_filter_sort(items, query), query, f"aggregated {project}")
        grouped: dict[str, JSON] = {}
        for item in page:
            zone = item["zone"].rsplit("/", 1)[1]
            grouped.setdefault(f"zones/{zone}", {"networkEndpointGroups": []})[
                "networkEndpointGroups"].append(item)
        out: JSON = {
            "kind": "compute#networkEndpointGroupAggregatedList",
            "id": f"projects/{project}/aggregated/networkEndpointGroups",
            "selfLink": self._link(f"projects/{project}/aggregated/networkEndpointGroups"),
            "items": grouped,
        }
        if token:
            out["nextPageToken"] = token
        return out

    def _parse_endpoints(self, neg: _Neg, body: JSON) -> list[tuple[str, int, str]]:
        raw = body.get("networkEndpoints") or []
        if len(raw) > self.max_endpoints_per_call:
            raise _invalid(
                f"Invalid value for field 'resource.networkEndpoints': exceeded the maximum "
                f"of {self.max_endpoints_per_call} network endpoints per request "
                f"(got {len(raw)})."
            )
        out: list[tuple[str, int, str]] = []
        seen: set[tuple[str, int]] = set()
        for i, ep in enumerate(raw):
            where = f"resource.networkEndpoints[{i}]"
            ip = (ep or {}).get("ipAddress")
            instance = ((ep or {}).get("instance") or "").rsplit("/", 1)[-1]
            port = (ep or {}).get("port")
            port = neg.default_port if port is None else int(port)
            if not ip:
                raise _invalid(f"Invalid value for field '{where}.ipAddress': ''. The fake "
                               "requires ipAddress (it cannot resolve instance IPs).")
            if not instance:
                raise _invalid(f"Invalid value for field '{where}.instance': ''. Instance is "
                               "required for GCE_VM_IP_PORT network endpoints.")
            if port is None:
                raise _invalid(f"Invalid value for field '{where}.port': ''. Port must be set "
                               "when the network endpoint group has no defaultPort.")
            if not 1 <= port <= 65535:
                raise _invalid(f"Invalid value for field '{where}.port': '{port}'.")
            if (ip, port) in seen:
                raise _invalid(f"Invalid value for field '{where}': duplicate network "
                               f"endpoint {ip}:{port} in request.")
            seen.add((ip, port))
            out.append((ip, port, instance))
        return out

    def _neg_attach(self, params: dict[str, str], query: dict[str, list[str]], body: JSON) -> JSON:
        mid = "compute.networkEndpointGroups.attachNetworkEndpoints"
        with self._lock:
            neg = self._get_neg(params)
            eps = self._parse_endpoints(neg, body)
            failure: _OpFailure | None = None
            for i, (ip, port, instance) in enumerate(eps):
                self._check_endpoint(neg, f"resource.networkEndpoints[{i}]", ip, instance)
                have = neg.endpoints.get((ip, port))
                if have is not None and have != instance:
                    raise _invalid(f"Network endpoint {ip}:{port} is already attached for "
                                   f"instance '{have}', not '{instance}'.")
                mode = self._rejected.get((ip, port))
                if mode is None:
                    continue
                msg = (f"Invalid value for field 'resource.networkEndpoints[{i}]': "
                       f"'{ip}:{port}'. Network endpoint is invalid.")
                if mode == "request":
                    raise _invalid(msg)
                failure = failure or _OpFailure("INVALID_FIELD_VALUE", msg, 400, mid)

            def apply() -> ApiError | None:
                if self._negs.get((neg.project, neg.zone, neg.name)) is not neg:
                    return ApiError(404, f"The resource '{neg.name}' was not found")
                for ip, port, instance in eps:
                    neg.draining.pop((ip, port), None)
                    if (ip, port) not in neg.endpoints:
                        neg.endpoints[(ip, port)] = instance
                        if self.default_health is not None:
                            neg.health.setdefault((ip, port), self.default_health)
                return None

            return self._new_operation(mid, params, query, "attachNetworkEndpoints",
                                       neg.name, neg.id, apply, failure)

    def _neg_detach(self, params: dict[str, str], query: dict[str, list[str]], body: JSON) -> JSON:
        with self._lock:
            neg = self._get_neg(params)
            eps = self._parse_endpoints(neg, body)
            if self.strict_detach:
                for i, (ip, port, _) in enumerate(eps):
                    if (ip, port) not in neg.endpoints:
                        raise _invalid(
                            f"Invalid value for field 'resource.networkEndpoints[{i}]': "
                            f"'{ip}:{port}'. Network endpoint not found.")

            def apply() -> ApiError | None:
                if self._negs.get((neg.project, neg.zone, neg.name)) is not neg:
                    return ApiError(404, f"The resource '{neg.name}' was not found")
                for ip, port, _ in eps:
                    instance = neg.endpoints.pop((ip, port), None)
                    neg.health.pop((ip, port), None)
                    if (instance is not None and self.detach_drain_seconds > 0
                            and any(b.health_check for b in neg.backends.values())):
                        # Connection draining: the backend services report a detached endpoint
                        # DRAINING for a while (the issue's reading; stricter for a client, which
                        # must neither re-attach nor re-detach it).
                        neg.draining[(ip, port)] = (instance, time.monotonic() + self.detach_drain_seconds)
                return None

            return self._new_operation("compute.networkEndpointGroups.detachNetworkEndpoints",
                                       params, query, "detachNetworkEndpoints",
                                       neg.name, neg.id, apply)

    def _neg_list_endpoints(
        self, params: dict[str, str], query: dict[str, list[str]], body: JSON
    ) -> JSON:
        show = (body or {}).get("healthStatus") == "SHOW"
        with self._lock:
            neg = self._get_neg(params)
            now = time.monotonic()
            for key in [k for k, (_, until) in neg.draining.items() if until <= now]:
                del neg.draining[key]
            listed = {**{k: (v, None) for k, (v, _) in neg.draining.items()},
                      **{k: (v, neg.health.get(k)) for k, v in neg.endpoints.items()}}
            items: list[JSON] = []
            for (ip, port), (instance, state) in sorted(listed.items()):
                item: JSON = {"networkEndpoint": {
                    "instance": instance, "ipAddress": ip, "port": port}}
                draining = (ip, port) not in neg.endpoints
                healths: list[JSON] = []
                for name, backend in neg.backends.items():
                    got = "DRAINING" if draining else neg.health_by_service.get((ip, port, name), state)
                    if backend.health_check and got:
                        healths.append({
                            "healthState": got,
                            "backendService": {"backendService": backend.backend_service},
                            "healthCheck": {"healthCheck": backend.health_check},
                        })
                for rule in neg.forwarding_rules:
                    healths.append({"healthState": state or "UNKNOWN",
                                    "forwardingRule": {"forwardingRule": rule}})
                if show and healths:
                    item["healths"] = healths
                items.append(item)
        # The body's healthStatus is part of the listing too: list_next resends the body as it was.
        scope = f"endpoints {neg.project}/{neg.zone}/{neg.name} {'SHOW' if show else 'SKIP'}"
        page, token = _paginate(_filter_sort(items, query), query, scope)
        out: JSON = {"kind": "compute#networkEndpointGroupsListNetworkEndpoints"}
        if page:
            out["items"] = page
        if token:
            out["nextPageToken"] = token
        return out


def _last(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _rel(url: str) -> str:
    """``projects/...`` part of a resource URL, as Google's error messages quote it."""
    index = url.find("projects/")
    return url[index:] if index >= 0 else url


def _resource_key(url: str, collection: str) -> tuple[str, str] | None:
    match = re.search(rf"projects/([^/]+)/global/{collection}/([^/]+)$", url)
    return (match[1], match[2]) if match else None


# ---------------------------------------------------------------- list helpers

_TERM = re.compile(
    r'\s*(?:AND\s+)?\(?\s*([A-Za-z_][\w.]*)\s*(!=|=|\beq\b|\bne\b)\s*'
    r'("(?:[^"\\]|\\.)*"|[^\s()"]+)\s*\)?\s*'
)


def _lookup(item: JSON, dotted: str) -> str | None:
    cur: Any = item
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return None if isinstance(cur, (dict, list)) else str(cur)


def _filter_sort(items: list[JSON], query: dict[str, list[str]]) -> list[JSON]:
    expr = query.get("filter", [""])[0].strip()
    if expr:
        terms: list[tuple[str, str, str]] = []
        pos = 0
        while pos < len(expr):
            m = _TERM.match(expr, pos)
            if not m or m.end() == pos:
                raise _invalid(f"Invalid value for field 'filter': '{expr}'. The fake only "
                               "supports 'field (=|!=|eq|ne) value' terms joined by AND.")
            value = m.group(3)
            if value.startswith('"'):
                value = json.loads(value)
            terms.append((m.group(1), m.group(2), value))
            pos = m.end()

        def keep(item: JSON) -> bool:
            for name, op, value in terms:
                got = _lookup(item, name)
                exact = op in ("=", "!=")
                hit = got == value if exact else got is not None and re.fullmatch(value, got) is not None
                if hit != (op in ("=", "eq")):
                    return False
            return True

        items = [i for i in items if keep(i)]
    order = query.get("orderBy", [""])[0].split()
    if order:
        if len(order) > 2 or (len(order) == 2 and order[1] not in ("asc", "desc")):
            raise _invalid(f"Invalid value for field 'orderBy': '{' '.join(order)}'.")
        items = sorted(items, key=lambda i: _lookup(i, order[0]) or "",
                       reverse=len(order) == 2 and order[1] == "desc")
    return items


def _paginate(
    items: list[JSON], query: dict[str, list[str]], scope: str
) -> tuple[list[JSON], str | None]:
    """One page of ``items`` and the token of the next (None on the last page); see the module docstring."""
    size = int(query.get("maxResults", ["0"])[0] or 0)
    if size > MAX_PAGE:
        raise _invalid(f"Invalid value for field 'maxResults': '{size}'. Must be less than or equal to {MAX_PAGE}.")
    size = MAX_PAGE if size <= 0 else size
    # The token names the listing it belongs to: the scope plus what selects and orders the items.
    listing = json.dumps([scope, query.get("filter", [""])[0], query.get("orderBy", [""])[0]])
    token = query.get("pageToken", [""])[0]
    start = 0
    if token:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if decoded["s"] != listing:
                raise ValueError(scope)
            start = int(decoded["o"])
        except (ValueError, KeyError, TypeError):
            raise _invalid(f"Invalid value for field 'pageToken': '{token}'.") from None
    page = items[start:start + size]
    nxt = None
    if start + size < len(items):
        nxt = base64.urlsafe_b64encode(
            json.dumps({"s": listing, "o": start + size}).encode()).decode()
    return page, nxt


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes the connection after each response, so no keep-alive
    # handler thread can outlive stop().
    protocol_version = "HTTP/1.0"
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # Keeps pytest output clean; fake.calls is the request log.
        pass
