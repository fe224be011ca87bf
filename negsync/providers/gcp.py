"""The GCP provider: one zonal ``GCE_VM_IP_PORT`` network endpoint group (NEG) per zone.

This is negsync's counterpart of the GKE NEG controller, usable on self-managed clusters on GCE
too.  A TargetBinding with ``spec.target.gcpNeg`` owns one NEG per zone that has endpoints (plus
every zone listed in ``zones``, created even while empty so a backend service can reference it
from day one).  All NEGs of a binding carry the *same* name, one per zone, as GKE's do.  The
generic reconciler (:mod:`negsync.core.reconciling`) computes diffs, cuts them into batches of
:data:`MAX_ENDPOINTS_PER_CALL` and bisects rejected batches; this module only speaks the Compute
API.

Design decisions a reader must know:

* **Target references.** ``TargetRef("gcp", "<project>/<zone>", "<neg name>")``: the project is
  encoded in the location, so a ref is self-describing — attach, detach and list need nothing
  but the ref, a restart loses no state, and the same binding moved to another project yields
  distinct refs instead of silently re-pointing an old one.  Network and subnetwork are only
  needed to create a NEG, and :meth:`GcpProvider.ensure_target` gets the spec.
* **Client.** ``googleapiclient.discovery.build("compute", "v1", static_discovery=True)`` once
  per provider (the static document ships with the library; no network at start-up).  Credentials
  are application default credentials (Workload Identity on GKE, ``GOOGLE_APPLICATION_CREDENTIALS``
  elsewhere) unless given.  ``httplib2.Http`` is not thread-safe, so every worker thread gets its
  own ``AuthorizedHttp`` (per project, see pacing) and passes it to ``execute(http=...)``, the
  pattern the client library documents for threads.  ``compute_endpoint`` replaces the client's
  ``rootUrl + servicePath`` (``https://compute.googleapis.com/compute/v1/``) for private endpoints
  and tests.  No credentials at all is a :class:`ConfigError` naming ``gcp.credentials`` (the CLI
  exits 2 with one line).
* **Retries are the client's.** ``execute(num_retries=...)`` already retries 429, 5xx, 403
  ``rateLimitExceeded``/``userRateLimitExceeded``, socket time-outs and connection resets with
  randomized exponential back-off (``rand() * 2**n`` seconds).  negsync does not wrap a second
  loop around it; only the client's sleep is routed through the injected :class:`Clock` (so a
  test can skip it).  What still fails becomes :class:`TransientError` (with the server's
  ``Retry-After`` if any) and the reconciler's per-target back-off takes over.  Mutations carry a
  ``requestId`` (one UUID per logical call, reused by the client's retries), so a retried attach
  whose first response was lost is not applied twice.
* **Operations.** Every mutation returns a zonal operation; the call is only done when
  ``zoneOperations.wait`` reports it DONE, bounded by ``operation_timeout`` (past it:
  :class:`TransientError` — the next reconcile re-lists and diffs, so nothing is lost).  A DONE
  operation with an error maps by its error code / HTTP status: invalid → :class:`RejectedError`
  (bisected by the reconciler), rate/internal/not-ready → :class:`TransientError`.
* **Errors as GCE means them** (terraform-provider-google error_retry_predicates.go, ingress-gce
  syncers): 400 ``resourceNotReady`` is transient, never a rejection; a 403 quota error on a
  per-minute metric is a rate limit, any other quota error is :class:`QuotaExceeded` (slow retry,
  condition Degraded/QuotaExceeded); a 404 during attach/detach is told apart by re-reading the
  NEG — gone → :class:`TargetNotFound` (the reconciler re-creates it), present → the batch
  referenced a missing instance → :class:`RejectedError`.
* **Pacing.** A :class:`~negsync.providers.ratelimit.TokenBucket` per project (``rate_limit`` =
  (requests per second, burst)) is taken before *every* HTTP attempt — retries and operation
  waits included — by wrapping the per-thread http object, so a retry storm is paced like first
  attempts and a large cluster cannot exhaust the project's Compute API quota.
* **Ownership.** The NEG ``description`` holds JSON ``{"managed-by": "negsync", "cluster-uid",
  "namespace", "binding"}``.  It is checked before every change — create-or-adopt in
  :meth:`~GcpProvider.ensure_target`, re-read before an attach/detach once the last check is
  ``ownership_ttl`` old (default 300 s, the controller's resync period) or a change on the NEG
  failed, always before delete — and a NEG that is not ours raises
  :class:`OwnershipConflict`; negsync never attaches to, detaches from or deletes such a NEG.
  NEGs have no update method, so the description can only change by delete-and-recreate; the
  check also compares the NEG's numeric id to catch exactly that.
* **Names.** ``<prefix>-<uid8>-<namespace>-<binding>-<hash8>`` at most 63 characters (RFC 1035);
  namespace and binding are trimmed *fairly* (a short field gives its unused budget to the long
  one), and the hash over the untrimmed (cluster uid, namespace, binding) keeps trimmed names
  unique.  The Service port is deliberately not part of the name: a binding selects exactly one
  Service port, and the provider sees only ``spec.target``, while a deletion (no endpoints left)
  must still find the NEG by name.
* **Subnetworks.** One NEG per (zone, subnetwork): endpoints on nodes labelled with another
  subnetwork (``subnet_for_node``; ingress-gce's ``cloud.google.com/gke-node-pool-subnet``) go to
  a NEG named with a subnet hash before the binding hash (ingress-gce ``NonDefaultSubnetNEG``),
  created in that subnetwork.  Every NEG name of a binding ends with the binding hash, which is
  how :meth:`GcpProvider.existing_targets` finds them all.
* **Instances.** A ``GCE_VM_IP_PORT`` endpoint names its VM.  The instance is
  ``instance_for_node(node)`` when the kube layer passes such a lookup (it derives it from the
  Node's ``spec.providerID`` = ``gce://<project>/<zone>/<instance>``), else the node name, which
  equals the instance name on GCE in practice (GKE and kubeadm-on-GCE both name nodes after the
  VM's hostname).  Endpoints without a zone or node cannot be placed and are skipped.
* **Health**, read as GKE reads it (ingress-gce pkg/neg/readiness/poller.go).
  ``listNetworkEndpoints`` with ``healthStatus: SHOW`` is both the actual member set and its
  health.  Every listed endpoint is a member whatever its state (``draining_is_member``); only
  ``healths`` entries naming a backend service count; HEALTHY in any of them wins, then DRAINING,
  UNHEALTHY, UNKNOWN.  No counted entry means no backend service health-checks the NEG →
  :attr:`Health.NO_HEALTH_CHECK` (the gate passes with reason NoHealthCheck) — unless other
  endpoints of the same NEG have one, or ``health_check_known(ref)`` says a health-checked backend
  uses it; then the endpoint has not been probed yet → :attr:`Health.INITIAL`.
* **Deletion.** :meth:`~GcpProvider.delete_target` runs only once the reconciler has detached
  every member.  A NEG still referenced by a backend service (``resourceInUseByAnotherResource``)
  is left in place and ``False`` is returned, which the reconciler reports as *retained*.

Only this module imports googleapiclient, google.auth and httplib2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google_auth_httplib2
import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from negsync.core.backoff import parse_retry_after
from negsync.core.bindings import GcpNegTarget, TargetSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import (
    ConfigError,
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    QuotaExceeded,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.ratelimit import TokenBucket

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "MAX_ENDPOINTS_PER_CALL",
    "MAX_NAME_LENGTH",
    "GcpProvider",
    "NegOwner",
    "health_from_item",
    "neg_name",
    "parse_location",
]

log = logging.getLogger(__name__)

#: attachNetworkEndpoints / detachNetworkEndpoints accept at most this many endpoints per call.
MAX_ENDPOINTS_PER_CALL: Final = 500
#: GCE resource names: RFC 1035, at most 63 characters.
MAX_NAME_LENGTH: Final = 63
#: (requests per second, burst) per project; the Compute API's default NEG quotas are per minute
#: and per project, shared by every controller in it, so negsync stays well below them.
DEFAULT_RATE_LIMIT: Final = (10.0, 20)

SCOPES: Final = ("https://www.googleapis.com/auth/compute",)
MANAGED_BY: Final = "negsync"

_HASH_LEN: Final = 8
_SUBNET_HASH_LEN: Final = 6
_UID_LEN: Final = 8
#: How long one aggregated listing of the cluster's NEGs serves start-up adoption (seconds).
_LISTING_TTL: Final = 60.0
# How long one HTTP attempt may wait for a pacing token before giving up as transient.
_PACING_TIMEOUT: Final = 60.0
# zoneOperations.wait returns after at most 2 minutes server-side; the socket must outlast that.
_SERVER_WAIT_CAP: Final = 120.0

_RATE_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# terraform-provider-google google/transport/error_retry_predicates.go, is403QuotaExceededPerMinuteError:
# GCE answers a per-minute *rate* quota with 403 quotaExceeded (it should be a 429); that one clears
# by itself.  Any other quotaExceeded (e.g. "Quota 'NETWORK_ENDPOINT_GROUPS' exceeded") does not.
_PER_MINUTE_QUOTA: Final = re.compile(r"Quota exceeded for quota metric '.*' and limit '.* per minute'")
# The same file, is403ConcurrentOperationsQuotaError: clears once operations in flight complete.
_CONCURRENT_OPS_QUOTA: Final = "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED"
# A resource quota does not clear by waiting: the reconciler's slow retry (capped by its retry_max).
QUOTA_RETRY_AFTER: Final = 600.0
# Operation error codes that say "try again", not "your request is wrong".  RESOURCE_NOT_READY:
# terraform's isSubnetworkUnreadyError / isNetworkUnreadyError retry the synchronous form (HTTP 400
# resourceNotReady); ingress-gce's syncer retries every failed transaction with back-off.
_TRANSIENT_OP_CODES: Final = frozenset(
    {
        "INTERNAL_ERROR",
        "RESOURCE_NOT_READY",
        "RATE_LIMIT_EXCEEDED",
        "RESOURCE_OPERATION_RATE_EXCEEDED",
        "OPERATION_CANCELED",
        "SERVICE_UNAVAILABLE",
        "TIMEOUT",
        "BACKEND_ERROR",
    }
)
_IN_USE: Final = frozenset({"resourceInUseByAnotherResource", "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"})

_HEALTH_STATES: Final[Mapping[str, Health]] = {
    "HEALTHY": Health.HEALTHY,
    "UNHEALTHY": Health.UNHEALTHY,
    "DRAINING": Health.DRAINING,
    "UNKNOWN": Health.UNKNOWN,
}
_INVALID_NAME_CHARS: Final = re.compile(r"[^a-z0-9-]+")
_PROJECT_IN_URI: Final = re.compile(r"/projects/([^/?]+)/")


# -- names, locations and ownership (pure) ---------------------------------------------------------
def _clean(text: str) -> str:
    """Lower-case, and anything outside [a-z0-9-] (a '.' in a binding name) becomes '-'."""
    return _INVALID_NAME_CHARS.sub("-", text.lower()).strip("-")


def _trim_evenly(fields: Sequence[str], budget: int) -> list[str]:
    """Shorten ``fields`` to fit ``budget`` characters in total, fairly.

    Each field gets an equal share; a field shorter than its share keeps its length and hands the
    rest to the others (water-filling), so a short namespace never costs the binding name.
    """
    lengths = [len(f) for f in fields]
    if sum(lengths) <= budget:
        return list(fields)
    allotted = [0] * len(fields)
    remaining = budget
    open_fields = sorted(range(len(fields)), key=lambda i: lengths[i])
    while open_fields:
        share = remaining // len(open_fields)
        index = open_fields[0]
        if lengths[index] <= share:
            allotted[index] = lengths[index]
            remaining -= lengths[index]
            open_fields.pop(0)
            continue
        # Every open field is longer than the share: split what is left, earlier fields first.
        extra = remaining - share * len(open_fields)
        for position, i in enumerate(sorted(open_fields)):
            allotted[i] = share + (1 if position < extra else 0)
        break
    return [f[:n] for f, n in zip(fields, allotted, strict=True)]


def binding_hash(*, cluster_uid: str, binding: BindingKey) -> str:
    """The suffix every NEG name of a binding ends with (default and non-default subnetworks)."""
    return hashlib.sha256(f"{cluster_uid}\0{binding.namespace}\0{binding.name}".encode()).hexdigest()[:_HASH_LEN]


def neg_name(*, prefix: str, cluster_uid: str, binding: BindingKey, subnet: str = "") -> str:
    """The NEG name of a binding: the same in every zone, deterministic, at most 63 characters.

    ``<prefix>-<uid8>-<namespace>-<binding>-<hash8>``; the hash covers the untrimmed inputs.  A NEG
    for nodes of a non-default subnetwork gets ``-<subnet6>`` before the hash, as ingress-gce's
    ``Namer.NonDefaultSubnetNEG`` (pkg/utils/namer) adds a 6-character subnet hash: a NEG holds
    endpoints of one subnetwork only.
    """
    digest = binding_hash(cluster_uid=cluster_uid, binding=binding)
    uid = (_clean(cluster_uid).replace("-", "") or "0")[:_UID_LEN]
    head = _clean(prefix) or "k8s"
    if not head[0].isalpha():
        head = "k" + head
    subnet_part = f"-{hashlib.sha256(subnet.encode()).hexdigest()[:_SUBNET_HASH_LEN]}" if subnet else ""
    fixed = len(head) + 1 + len(uid) + 1 + 1 + 1 + len(subnet_part) + _HASH_LEN  # separators and hashes
    namespace, name = _trim_evenly(
        [_clean(binding.namespace) or "ns", _clean(binding.name) or "b"], MAX_NAME_LENGTH - fixed
    )
    # Trimming can leave a trailing '-' inside the name; RFC 1035 allows inner hyphens.
    return f"{head}-{uid}-{namespace}-{name}{subnet_part}-{digest}"


def location(project: str, zone: str) -> str:
    return f"{project}/{zone}"


def parse_location(ref: TargetRef) -> tuple[str, str]:
    """``(project, zone)`` from a GCP ref's ``location`` (``"<project>/<zone>"``)."""
    project, sep, zone = ref.location.partition("/")
    if ref.kind != "gcp" or not sep or not project or not zone or "/" in zone:
        raise InvalidTarget(f"{ref} is not a GCP NEG reference (location must be <project>/<zone>)")
    return project, zone


@dataclass(frozen=True, slots=True)
class NegOwner:
    """Who a NEG belongs to, as recorded in its ``description``."""

    cluster_uid: str
    namespace: str
    binding: str

    def description(self) -> str:
        return json.dumps(
            {
                "managed-by": MANAGED_BY,
                "cluster-uid": self.cluster_uid,
                "namespace": self.namespace,
                "binding": self.binding,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, description: str | None) -> NegOwner | None:
        """The owner recorded in a description; None when it is not a negsync description."""
        try:
            data = json.loads(description or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("managed-by") != MANAGED_BY:
            return None
        fields = [data.get(k) for k in ("cluster-uid", "namespace", "binding")]
        if not all(isinstance(f, str) and f for f in fields):
            return None
        return cls(str(fields[0]), str(fields[1]), str(fields[2]))

    def __str__(self) -> str:
        return f"binding {self.namespace}/{self.binding} of cluster {self.cluster_uid}"


def _counted(entry: Mapping[str, Any]) -> bool:
    """Whether a ``healths`` entry is a backend service's health check.

    ingress-gce pkg/neg/readiness/poller.go (hasSupportedHealthStatus, getHealthyBackendService)
    counts only entries naming a backend service; others (e.g. forwarding-rule-only entries of a
    passthrough load balancer) neither pass the gate nor prove the NEG is health-checked.
    """
    service = entry.get("backendService")
    return isinstance(service, Mapping) and bool(service.get("backendService"))


def is_health_checked(item: Mapping[str, Any]) -> bool:
    return any(_counted(h) for h in item.get("healths") or () if isinstance(h, Mapping))


def health_from_item(item: Mapping[str, Any], *, health_checked: bool) -> Health:
    """One ``listNetworkEndpoints`` item's health, read as GKE reads it.

    ingress-gce pkg/neg/readiness/poller.go: the gate passes when the endpoint is HEALTHY in *any*
    backend service (getHealthyBackendService), so HEALTHY wins over every other state; otherwise
    DRAINING, UNHEALTHY, then UNKNOWN.  No counted entry means nothing health-checks the NEG,
    unless ``health_checked`` says it is just not probed yet (the poller's healthChecked flag).
    """
    states = {str(h.get("healthState") or "UNKNOWN") for h in item.get("healths") or ()
              if isinstance(h, Mapping) and _counted(h)}
    if not states:
        return Health.INITIAL if health_checked else Health.NO_HEALTH_CHECK
    for state in ("HEALTHY", "DRAINING", "UNHEALTHY"):
        if state in states:
            return _HEALTH_STATES[state]
    return Health.UNKNOWN


def _network_path(project: str, network: str) -> str:
    # The API takes full URLs and partial paths; a bare name is a network of the NEG's project.
    return network if "/" in network else f"projects/{project}/global/networks/{network}"


def _subnetwork_path(project: str, zone: str, subnetwork: str) -> str:
    region = zone.rsplit("-", 1)[0]
    return subnetwork if "/" in subnetwork else f"projects/{project}/regions/{region}/subnetworks/{subnetwork}"


def _last(url: str | None) -> str:
    return (url or "").rstrip("/").rsplit("/", 1)[-1]


# -- transport ------------------------------------------------------------------------------------
class _PacingTimeout(Exception):
    """No pacing token arrived in time; becomes a TransientError."""


class _PacedHttp:
    """An ``AuthorizedHttp`` that takes a token from the project's bucket before every attempt.

    googleapiclient retries by calling ``http.request`` again, so wrapping the http object (and
    not ``execute``) paces retries exactly like first attempts.
    """

    def __init__(self, inner: google_auth_httplib2.AuthorizedHttp, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    def request(self, uri: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        if not self._bucket.acquire(timeout=_PACING_TIMEOUT):
            raise _PacingTimeout(f"no API token within {_PACING_TIMEOUT:g}s (client-side rate limit)")
        return self._inner.request(uri, method, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass(slots=True)
class _Verified:
    """The last ownership check of one NEG."""

    neg_id: str
    checked_at: float


class GcpProvider:
    """A :class:`~negsync.providers.base.TargetProvider` for zonal GCE_VM_IP_PORT NEGs."""

    def __init__(
        self,
        *,
        cluster_uid: str,
        compute_endpoint: str | None = None,
        credentials: Any = None,
        num_retries: int = 5,
        operation_timeout: float = 120.0,
        rate_limit: tuple[float, int] = DEFAULT_RATE_LIMIT,
        clock: Clock | None = None,
        http_timeout: float = 30.0,
        instance_for_node: Callable[[str], str | None] | None = None,
        health_check_known: Callable[[TargetRef], bool] | None = None,
        ownership_ttl: float = 300.0,
        anonymous: bool = False,
        subnet_for_node: Callable[[str], str | None] | None = None,
    ) -> None:
        """``credentials=None`` uses application default credentials (fails fast with ConfigError).

        ``anonymous`` sends no credentials at all: only for a private or test ``compute_endpoint``.

        ``compute_endpoint`` replaces ``https://compute.googleapis.com/compute/v1/`` whole (the
        client's ``api_endpoint`` semantics), e.g. ``https://compute-p.example/compute/v1/``.
        """
        if not cluster_uid:
            raise ConfigError("gcp.cluster-uid", "is required (the kube-system namespace UID)")
        if num_retries < 0:
            raise ConfigError("gcp.num-retries", f"must be >= 0, got {num_retries}")
        if not operation_timeout > 0:
            raise ConfigError("gcp.operation-timeout", f"must be > 0, got {operation_timeout}")
        try:
            TokenBucket(rate_limit[0], rate_limit[1], clock=RealClock())
        except (ValueError, TypeError, IndexError) as exc:
            raise ConfigError("gcp.rate-limit", str(exc)) from None
        self._cluster_uid = cluster_uid
        self._num_retries = num_retries
        self._operation_timeout = float(operation_timeout)
        self._rate_limit = (float(rate_limit[0]), int(rate_limit[1]))
        self._clock: Clock = clock or RealClock()
        self._http_timeout = float(http_timeout)
        # The wait socket must outlast the server-side wait, capped by our own deadline.
        self._wait_timeout = min(self._operation_timeout, _SERVER_WAIT_CAP) + self._http_timeout
        self._instance_for_node = instance_for_node
        self._subnet_for_node = subnet_for_node
        self._health_check_known = health_check_known
        self._ownership_ttl = ownership_ttl
        if anonymous:
            if not compute_endpoint:
                raise ConfigError("gcp.anonymous", "only allowed with a private or test compute endpoint")
            credentials = google.auth.credentials.AnonymousCredentials()
        if credentials is None:
            try:
                credentials, _ = google.auth.default(scopes=list(SCOPES))
            except google.auth.exceptions.DefaultCredentialsError as exc:
                detail = " ".join(str(exc).split())
                raise ConfigError(
                    "gcp.credentials",
                    "no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
                    "file, or run on GKE with Workload Identity (the metadata server); see docs/gcp.md "
                    f"({detail})",
                ) from None
        self._credentials = credentials
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._local = threading.local()
        self._owners: dict[TargetRef, BindingKey] = {}
        self._verified: dict[TargetRef, _Verified] = {}
        self._subnets: dict[TargetRef, str] = {}  # NEGs of a non-default subnetwork: its name
        self._listings: dict[str, tuple[float, dict[str, list[tuple[str, str, str]]]]] = {}
        self._listing_lock = threading.Lock()
        options = {"api_endpoint": compute_endpoint} if compute_endpoint else None
        service = discovery.build(
            "compute",
            "v1",
            static_discovery=True,
            cache_discovery=False,
            # Only a default: every execute() passes the calling thread's own http object.
            http=google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=self._http_timeout)),
            client_options=options,
            requestBuilder=self._request_builder,
        )
        # Resource objects only build requests and hold no per-request state: safe to share.
        self._negs = service.networkEndpointGroups()
        self._ops = service.zoneOperations()

    # -- the provider protocol ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return "gcp"

    @property
    def max_batch_size(self) -> int:
        return MAX_ENDPOINTS_PER_CALL

    @property
    def draining_is_member(self) -> bool:
        """Every listed endpoint is a NEG member, DRAINING included: never attach it again.

        ingress-gce pkg/neg/syncers/utils.go (retrieveExistingZoneNetworkEndpointMap) takes every
        endpoint listNetworkEndpoints returns as present, whatever its health.
        """
        return True

    def neg_name(self, binding: BindingKey, spec: GcpNegTarget, subnet: str = "") -> str:
        return neg_name(prefix=spec.name_prefix, cluster_uid=self._cluster_uid, binding=binding, subnet=subnet)

    def ref(self, binding: BindingKey, spec: GcpNegTarget, zone: str, subnet: str = "") -> TargetRef:
        return TargetRef("gcp", location(spec.project, zone), self.neg_name(binding, spec, subnet))

    def subnet_of(self, endpoint: Endpoint, spec: GcpNegTarget) -> str:
        """The non-default subnetwork of the endpoint's node, "" for the default (the binding's NEG).

        One NEG per (zone, subnetwork): GCE takes only endpoint IPs of the NEG's subnetwork.  Nodes
        carry their subnetwork as the label ingress-gce reads (``cloud.google.com/gke-node-pool-subnet``,
        absent on the default subnetwork).  A binding pinning ``subnetwork`` has the others skipped
        by the kube layer; its own subnetwork is the default NEG's.
        """
        if not endpoint.node or self._subnet_for_node is None:
            return ""
        subnet = self._subnet_for_node(endpoint.node) or ""
        return "" if subnet == _last(spec.subnetwork) else subnet

    def instance_of(self, endpoint: Endpoint) -> str:
        """The VM an endpoint runs on: the providerID lookup when given, else the node name."""
        if not endpoint.node:
            return ""
        if self._instance_for_node is not None:
            return self._instance_for_node(endpoint.node) or ""
        return endpoint.node

    def targets_for(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> dict[TargetRef, set[TargetEndpoint]]:
        gcp = self._spec(spec)
        groups: dict[TargetRef, set[TargetEndpoint]] = {self.ref(binding, gcp, zone): set() for zone in gcp.zones}
        subnets: dict[TargetRef, str] = {}
        skipped = 0
        for endpoint in endpoints:
            instance = self.instance_of(endpoint)
            if not endpoint.zone or not instance:
                skipped += 1  # a NEG endpoint needs its VM and the VM's zone
                continue
            subnet = self.subnet_of(endpoint, gcp)
            ref = self.ref(binding, gcp, endpoint.zone, subnet)
            if subnet:
                subnets[ref] = subnet
            groups.setdefault(ref, set()).add(TargetEndpoint(endpoint.ip, endpoint.port, instance))
        if skipped:
            log.warning("binding %s: %d endpoint(s) without zone or instance skipped", binding, skipped)
        with self._lock:
            self._subnets.update(subnets)
            for ref in groups:
                self._owners[ref] = binding
        return groups

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        gcp = self._spec(spec)
        name = self.neg_name(binding, gcp)
        suffix = binding_hash(cluster_uid=self._cluster_uid, binding=binding)
        mine = NegOwner(self._cluster_uid, binding.namespace, binding.name)
        refs: list[TargetRef] = []
        for found, negs in self._cluster_negs(gcp.project).items():
            # Every NEG of the binding ends with its hash, whatever its subnetwork; the description
            # decides (someone else's NEG under our name is not adopted; ensure_target reports it).
            if not found.endswith(f"-{suffix}"):
                continue
            for zone, description, subnetwork in negs:
                if NegOwner.parse(description) != mine:
                    continue
                found_ref = TargetRef("gcp", location(gcp.project, zone), found)
                refs.append(found_ref)
                if found != name and subnetwork:
                    with self._lock:
                        self._subnets[found_ref] = subnetwork
        with self._lock:
            for ref in refs:
                self._owners[ref] = binding
        return sorted(refs)

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        gcp = self._spec(spec)
        project, zone = parse_location(ref)
        with self._lock:
            self._owners[ref] = binding
        neg = self._get_neg(project, zone, ref.name, missing_ok=True)
        if neg is None:
            self._insert(ref, project, zone, binding, gcp)
            neg = self._get_neg(project, zone, ref.name, missing_ok=False)
            assert neg is not None
        self._check_owner(ref, neg, binding)
        if neg.get("networkEndpointType", "GCE_VM_IP_PORT") != "GCE_VM_IP_PORT":
            raise InvalidTarget(f"{ref} is of type {neg.get('networkEndpointType')}, not GCE_VM_IP_PORT")
        if _last(neg.get("network")) != _last(gcp.network):
            # A NEG's network is immutable: the binding must be deleted to move it.
            raise InvalidTarget(
                f"{ref} is in network {_last(neg.get('network'))!r}, the binding asks for {_last(gcp.network)!r}"
            )

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        project, zone = parse_location(ref)
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "project": project,
                "zone": zone,
                "networkEndpointGroup": ref.name,
                "body": {"healthStatus": "SHOW"},
                "maxResults": 500,
            }
            if token:
                kwargs["pageToken"] = token
            page = self._execute(project, self._negs.listNetworkEndpoints(**kwargs), what=f"listing {ref}")
            items.extend(page.get("items") or ())
            token = page.get("nextPageToken")
            if not token:
                break
        # One endpoint reporting health proves a health-checked backend uses the NEG: the others
        # are merely not probed yet, and must not pass the readiness gate as NoHealthCheck.
        checked = any(is_health_checked(item) for item in items) or bool(
            self._health_check_known and self._health_check_known(ref)
        )
        members: dict[TargetEndpoint, Health] = {}
        for item in items:
            raw = item.get("networkEndpoint") or {}
            if not raw.get("ipAddress") or raw.get("port") is None:
                continue
            member = TargetEndpoint(str(raw["ipAddress"]), int(raw["port"]), _last(raw.get("instance")))
            members[member] = health_from_item(item, health_checked=checked)
        return members

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._mutate_endpoints("attachNetworkEndpoints", ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        try:
            self._mutate_endpoints("detachNetworkEndpoints", ref, endpoints)
        except RejectedError:
            # Detaching an endpoint that is already gone is a 400 for the whole batch.  Re-read
            # the NEG and detach only what is still there, rather than bisecting for nothing.
            # A DRAINING entry is already on its way out; detaching it again would fail the same way.
            present = {self._key(m) for m, h in self.list_endpoints(ref).items() if h is not Health.DRAINING}
            still = [m for m in endpoints if self._key(m) in present]
            if len(still) == len(endpoints):
                raise
            if still:
                self._mutate_endpoints("detachNetworkEndpoints", ref, still)

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        project, zone = parse_location(ref)
        neg = self._get_neg(project, zone, ref.name, missing_ok=True)
        if neg is None:
            self._forget(ref)
            return True
        self._check_owner(ref, neg, binding)
        request = self._negs.delete(project=project, zone=zone, networkEndpointGroup=ref.name, requestId=self._rid())
        try:
            operation = self._execute(project, request, what=f"deleting {ref}")
            self._wait(project, zone, operation, what=f"deleting {ref}", op_kind="delete")
        except _InUse as exc:
            log.warning("%s is still used by a backend service; left in place: %s", ref, exc)
            return False
        except TargetNotFound:
            pass
        self._forget(ref)
        return True

    # -- test and metrics seams ---------------------------------------------------------------
    def bucket(self, project: str) -> TokenBucket:
        """The pacing bucket of ``project`` (created on first use)."""
        with self._lock:
            bucket = self._buckets.get(project)
            if bucket is None:
                bucket = TokenBucket(*self._rate_limit, clock=self._clock)
                self._buckets[project] = bucket
            return bucket

    # -- internals: NEG lifecycle -------------------------------------------------------------
    def _cluster_negs(self, project: str) -> dict[str, list[tuple[str, str, str]]]:
        """name → [(zone, description, subnetwork)] of every NEG in ``project`` named like this cluster's.

        One aggregated listing (paged by 500) serves every binding's start-up adoption instead of
        one listing per binding (issue 18: 5,000 bindings were 5,000 calls at 10/s).  It is reused
        for ``_LISTING_TTL`` seconds and kept current with our own inserts and deletes, so only a
        NEG another process creates in that window can be missed.
        """
        with self._listing_lock:  # the workers starting together wait for one listing, not one each
            now = self._clock.now()
            with self._lock:
                cached = self._listings.get(project)
            if cached is not None and 0 <= now - cached[0] < _LISTING_TTL:
                return cached[1]
            return self._list_cluster_negs(project, now)

    def _list_cluster_negs(self, project: str, now: float) -> dict[str, list[tuple[str, str, str]]]:
        uid = (_clean(self._cluster_uid).replace("-", "") or "0")[:_UID_LEN]
        found: dict[str, list[tuple[str, str, str]]] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"project": project, "filter": f'name eq ".*-{uid}-.*"', "maxResults": 500}
            if token:
                kwargs["pageToken"] = token
            page = self._execute(project, self._negs.aggregatedList(**kwargs), what=f"listing NEGs in {project}")
            for scope in (page.get("items") or {}).values():
                for neg in scope.get("networkEndpointGroups") or ():
                    found.setdefault(str(neg.get("name")), []).append(
                        (_last(neg.get("zone")), str(neg.get("description") or ""), _last(neg.get("subnetwork"))))
            token = page.get("nextPageToken")
            if not token:
                break
        with self._lock:
            self._listings[project] = (now, found)
        return found

    def _listed(self, ref: TargetRef, description: str | None, subnetwork: str = "") -> None:
        """Keep the start-up listing current with our own insert (a description) or delete (None)."""
        project, zone = parse_location(ref)
        with self._lock:
            cached = self._listings.get(project)
            if cached is None:
                return
            negs = [n for n in cached[1].get(ref.name, []) if n[0] != zone]
            if description is not None:
                negs.append((zone, description, subnetwork))
            cached[1][ref.name] = negs

    @staticmethod
    def _spec(spec: TargetSpec) -> GcpNegTarget:
        if not isinstance(spec, GcpNegTarget):
            raise InvalidTarget(f"the GCP provider cannot manage a {type(spec).__name__}")
        return spec

    def _get_neg(self, project: str, zone: str, name: str, *, missing_ok: bool) -> dict[str, Any] | None:
        request = self._negs.get(project=project, zone=zone, networkEndpointGroup=name)
        try:
            neg: dict[str, Any] = self._execute(project, request, what=f"reading NEG {project}/{zone}/{name}")
            return neg
        except TargetNotFound:
            if missing_ok:
                return None
            raise

    def _insert(self, ref: TargetRef, project: str, zone: str, binding: BindingKey, spec: GcpNegTarget) -> None:
        body: dict[str, Any] = {
            "name": ref.name,
            "networkEndpointType": "GCE_VM_IP_PORT",
            "network": _network_path(project, spec.network),
            "description": NegOwner(self._cluster_uid, binding.namespace, binding.name).description(),
        }
        with self._lock:
            subnetwork = self._subnets.get(ref) or spec.subnetwork
        if subnetwork:
            body["subnetwork"] = _subnetwork_path(project, zone, subnetwork)
        request = self._negs.insert(project=project, zone=zone, body=body, requestId=self._rid())
        try:
            operation = self._execute(project, request, what=f"creating {ref}", conflict_ok=True)
            self._wait(project, zone, operation, what=f"creating {ref}", op_kind="insert")
            self._listed(ref, body["description"], _last(body.get("subnetwork")))
            log.info("created NEG %s for binding %s", ref, binding)
        except _AlreadyExists:
            pass  # created concurrently (another replica, or a lost response): the GET decides

    def _check_owner(self, ref: TargetRef, neg: Mapping[str, Any], binding: BindingKey | None) -> None:
        owner = NegOwner.parse(neg.get("description"))
        if owner is None:
            raise OwnershipConflict(f"{ref} exists and is not managed by negsync; it is left untouched")
        expected = (self._cluster_uid, binding.namespace, binding.name) if binding else None
        if owner.cluster_uid != self._cluster_uid or (
            expected is not None and (owner.cluster_uid, owner.namespace, owner.binding) != expected
        ):
            raise OwnershipConflict(f"{ref} belongs to {owner}; it is left untouched")
        with self._lock:
            self._verified[ref] = _Verified(str(neg.get("id", "")), self._clock.now())

    def _verify_before_change(self, ref: TargetRef, project: str, zone: str) -> None:
        with self._lock:
            last = self._verified.get(ref)
            binding = self._owners.get(ref)
        if last is not None and self._clock.now() - last.checked_at < self._ownership_ttl:
            return
        neg = self._get_neg(project, zone, ref.name, missing_ok=False)
        assert neg is not None
        if last is not None and last.neg_id and str(neg.get("id", "")) != last.neg_id:
            # Deleted and re-created behind our back: whatever it is now, re-check from scratch.
            with self._lock:
                self._verified.pop(ref, None)
        self._check_owner(ref, neg, binding)

    def _forget(self, ref: TargetRef) -> None:
        self._listed(ref, None)
        with self._lock:
            self._verified.pop(ref, None)
            self._owners.pop(ref, None)

    # -- internals: endpoints ------------------------------------------------------------------
    @staticmethod
    def _key(member: TargetEndpoint) -> tuple[str, int]:
        return (member.ip, member.port)

    def _mutate_endpoints(self, method: str, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        if not endpoints:
            return
        if len(endpoints) > MAX_ENDPOINTS_PER_CALL:
            raise RejectedError(f"{len(endpoints)} endpoints in one call; the limit is {MAX_ENDPOINTS_PER_CALL}")
        project, zone = parse_location(ref)
        self._verify_before_change(ref, project, zone)
        body = {
            "networkEndpoints": [
                {"ipAddress": m.ip, "port": m.port, **({"instance": m.instance} if m.instance else {})}
                for m in endpoints
            ]
        }
        request = getattr(self._negs, method)(
            project=project, zone=zone, networkEndpointGroup=ref.name, body=body, requestId=self._rid()
        )
        what = f"{method} ({len(endpoints)}) on {ref}"
        try:
            operation = self._execute(project, request, what=what)
            self._wait(project, zone, operation, what=what, op_kind="endpoints")
        except TargetNotFound as exc:
            # A 404 names either the NEG or something the batch references (an instance that was
            # deleted).  Only reading the NEG tells them apart: the NEG is there → the batch is at
            # fault (bisect it); gone → TargetNotFound, and the reconciler re-creates it.
            if self._get_neg(project, zone, ref.name, missing_ok=True) is not None:
                raise RejectedError(f"{exc} (the NEG exists: a referenced instance is missing)") from exc
            with self._lock:
                self._verified.pop(ref, None)
            raise
        except ProviderError as exc:
            if not isinstance(exc, RejectedError):  # a rejected member says nothing about the NEG
                # The NEG may have been deleted or replaced: the next change re-reads its owner first.
                with self._lock:
                    self._verified.pop(ref, None)
            raise

    # -- internals: calls, operations, errors ----------------------------------------------------
    def _request_builder(self, *args: Any, **kwargs: Any) -> HttpRequest:
        request = HttpRequest(*args, **kwargs)
        # The client's back-off sleeps through ``_sleep`` (a documented test stub in the library);
        # routing it through our clock keeps its retries, and lets tests skip the waiting.
        request._sleep = self._clock.sleep
        return request

    def _http(self, project: str, *, long: bool = False) -> _PacedHttp:
        """This thread's http object for ``project`` (httplib2 is not thread-safe)."""
        cache: dict[tuple[str, bool], _PacedHttp] | None = getattr(self._local, "http", None)
        if cache is None:
            cache = self._local.http = {}
        http = cache.get((project, long))
        if http is None:
            timeout = self._wait_timeout if long else self._http_timeout
            inner = google_auth_httplib2.AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=timeout))
            http = cache[(project, long)] = _PacedHttp(inner, self.bucket(project))
        return http

    @staticmethod
    def _rid() -> str:
        # One id per logical call; the client's own retries resend the same URI, hence the same id.
        return str(uuid.uuid4())

    def _execute(
        self, project: str, request: HttpRequest, *, what: str, long: bool = False, conflict_ok: bool = False
    ) -> Any:
        try:
            return request.execute(http=self._http(project, long=long), num_retries=self._num_retries)
        except HttpError as exc:
            raise _from_http_error(exc, what=what, conflict_ok=conflict_ok) from exc
        except _PacingTimeout as exc:
            raise TransientError(f"{what}: {exc}", retry_after=1.0) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(f"{what}: credentials transport error: {exc}") from exc
        except google.auth.exceptions.RefreshError as exc:
            raise ProviderError(f"{what}: cannot refresh credentials: {exc}") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            # e.g. InvalidOperation: a 401 with credentials that cannot be refreshed (anonymous ones).
            # An error of the call, not a crash of the reconcile.
            raise ProviderError(f"{what}: credentials: {type(exc).__name__}: {exc}") from exc
        except (httplib2.HttpLib2Error, OSError) as exc:  # socket time-outs, resets, refused
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _wait(self, project: str, zone: str, operation: Mapping[str, Any], *, what: str, op_kind: str) -> None:
        deadline = self._clock.now() + self._operation_timeout
        name = str(operation.get("name", ""))
        while operation.get("status") != "DONE":
            if self._clock.now() >= deadline:
                raise TransientError(f"{what}: operation {name} not done after {self._operation_timeout:g}s")
            request = self._ops.wait(project=project, zone=zone, operation=name)
            operation = self._execute(project, request, what=f"{what}: waiting for {name}", long=True)
        error = operation.get("error")
        if error:
            raise _from_operation_error(operation, what=what, op_kind=op_kind)


class _AlreadyExists(ProviderError):
    """409 on insert: somebody created the NEG first."""


class _InUse(ProviderError):
    """The NEG is referenced by a backend service and cannot be deleted."""


def _error_reason(exc: HttpError) -> str:
    try:
        data = json.loads(exc.content.decode("utf-8"))
        errors = data["error"].get("errors") or [{}]
        return str(errors[0].get("reason") or "")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""


def _retry_after(exc: HttpError) -> float | None:
    return parse_retry_after(exc.resp.get("retry-after") if exc.resp is not None else None)


def _error_text(exc: HttpError) -> str:
    try:
        return exc.content.decode("utf-8", "replace")
    except AttributeError:
        return ""


def _from_http_error(exc: HttpError, *, what: str, conflict_ok: bool) -> ProviderError:
    status = int(exc.resp.status)
    reason = _error_reason(exc)
    message = f"{what}: HTTP {status} {reason}: {exc.reason}".rstrip()
    if status == 429 or status >= 500 or (status == 403 and reason in _RATE_REASONS):
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 403 and (_PER_MINUTE_QUOTA.search(_error_text(exc)) or _CONCURRENT_OPS_QUOTA in _error_text(exc)):
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 403 and reason == "quotaExceeded":
        return QuotaExceeded(message, retry_after=QUOTA_RETRY_AFTER)
    if status == 400 and reason == "resourceNotReady":
        # A network, subnetwork or the NEG itself is being changed: the batch is fine, retry it.
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 404:
        return TargetNotFound(message)
    if status == 409 and conflict_ok:
        return _AlreadyExists(message)
    if reason in _IN_USE:
        return _InUse(message)
    if status == 400:
        return RejectedError(message)
    if status in (401, 403):
        return ProviderError(f"{message} (check the IAM permissions in docs/gcp.md)")
    return ProviderError(message)


def _from_operation_error(operation: Mapping[str, Any], *, what: str, op_kind: str) -> ProviderError:
    errors = (operation.get("error") or {}).get("errors") or [{}]
    code = str(errors[0].get("code") or "")
    detail = "; ".join(str(e.get("message") or e.get("code") or "") for e in errors)
    status = int(operation.get("httpErrorStatusCode") or 0)
    message = f"{what}: operation {operation.get('name', '')} failed: {code}: {detail}"
    if code in _IN_USE:
        return _InUse(message)
    if code == "QUOTA_EXCEEDED":
        return QuotaExceeded(message, retry_after=QUOTA_RETRY_AFTER)
    if code in _TRANSIENT_OP_CODES or status == 429 or status >= 500:
        return TransientError(message)
    if status == 404 or code in ("RESOURCE_NOT_FOUND", "NOT_FOUND"):
        return TargetNotFound(message)
    if code in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS") and op_kind == "insert":
        return _AlreadyExists(message)
    if op_kind == "endpoints" and (status == 400 or code.startswith("INVALID")):
        return RejectedError(message)
    if status in (401, 403):
        return ProviderError(f"{message} (check the IAM permissions in docs/gcp.md)")
    return ProviderError(message)
