"""The AWS provider: keep an existing ELBv2 target group of type ``ip`` equal to a Service's endpoints.

This is negsync's counterpart of the AWS Load Balancer Controller's TargetGroupBinding.  A
binding names a target group by ARN; negsync never creates or deletes target groups, it only
registers and deregisters pod IPs in them.  One target group is one :class:`TargetRef`
``("aws", <region>, <arn>)``; the generic reconciler computes the diff, cuts it into batches of
:attr:`AwsProvider.max_batch_size` (200, the RegisterTargets limit) and calls :meth:`attach` /
:meth:`detach` per batch.

Design decisions a reader must know:

* **Client.** boto3 ``elbv2`` (plus ``ec2`` for DescribeVpcs and security-group rules) with
  botocore's default credential chain — IRSA and EKS Pod Identity work without code here;
  :meth:`AwsProvider.check_credentials` resolves it once at start-up so that "no credentials at
  all" is a configuration error (CLI exit 2), not a condition on every binding.  One client per (service, region),
  created lazily under a lock because boto3 *sessions* are not thread-safe (clients are).  The
  region comes from the ARN.  Retries are botocore's own (``standard`` or ``adaptive`` mode,
  ``total_max_attempts``); negsync does not wrap a second retry loop around them — what escapes
  botocore becomes :class:`TransientError` and the reconciler's back-off takes over.  Timeouts
  are always on, so a hung connection cannot stall a worker thread.  The endpoint is botocore's
  to pick: ``endpoint_url`` overrides it, else ``AWS_ENDPOINT_URL`` /
  ``AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`` / ``AWS_ENDPOINT_URL_EC2`` (botocore's support).
* **Pacing: the account's shared budget.** AWS throttles ELBv2 per account and region with
  buckets every caller shares ("elb-api-throttling"): all ``Describe*`` actions together, the
  registration actions together, and every action together.  negsync keeps one
  :class:`~negsync.providers.ratelimit.TokenBucket` per such group and region
  (:data:`DEFAULT_RATE_LIMITS`, below AWS's refill rates, so other tools keep room), as the LB
  Controller's ``pkg/aws/throttle/defaults.go`` does; a call pays into every group it belongs to.
  Every HTTP attempt — retries included — takes its tokens in botocore's ``before-send`` hook, so
  a retry storm is paced like first attempts are.  Health polls for readiness gates share the
  Describe budget: :meth:`AwsProvider.health_poll_interval` spaces the polls of one target group
  so that all groups being polled fit in half of it.
* **Validation lives here.** The real API rejects target IDs that are not IPs of the group's
  family, ports outside 1-65535 and (IPv4) addresses outside the VPC, RFC 1918 and RFC 6598
  ranges; moto accepts anything.  :meth:`attach` checks before calling AWS and raises
  :class:`InvalidEndpoints` (a :class:`RejectedError` with ``.endpoints``) so the reconciler can
  drop exactly those instead of bisecting.
* **Availability zone.** For IPs inside the VPC's CIDRs (primary, secondary and IPv6
  associations from DescribeVpcs) AWS detects the zone.  IPs outside need one: ``all``, except on
  an ALB target group whose ``load_balancing.cross_zone.enabled`` attribute is ``false`` — there
  AWS refuses ``all`` and wants the endpoint's own zone (LBC issue #4477).  negsync reads the
  attribute (DescribeTargetGroupAttributes) the first time it registers an outside IP in a group,
  and a ValidationError about the zone switches the group to zones too; the choice is remembered
  per group.  VPC CIDRs are cached for a few minutes, because EKS custom networking adds
  secondary CIDRs to live VPCs; a rejected batch that named a zone drops the cache at once.
* **Deregister what AWS reported.** DescribeTargetHealth returns each target as AWS recorded it
  (Id, Port, AvailabilityZone).  negsync keeps that description per member, inside this provider,
  and deregisters with it: a recomputed zone that differs deregisters nothing (LBC PR #4544).
  DeregisterTargets succeeds for a target that is not registered, so success proves nothing;
  :meth:`AwsProvider.detach` lists the group afterwards and fails (transient) if a member is
  still registered and not draining.
* **Health.** DescribeTargetHealth is both the actual member set and the health:
  initial/healthy/unhealthy/unused/draining map one-to-one onto :class:`Health`; ``unavailable``
  is :attr:`Health.NO_HEALTH_CHECK` when the group has health checks disabled, else UNKNOWN.
  Draining members do not count as present, so a reused pod IP is registered again.
* **Ownership.** A binding owns its whole target group unless ``shared: true``; then the
  reconciler's OwnershipStore limits detaches to what this binding registered.  Two bindings on
  one group where either is not shared is a conflict: the process-wide :data:`CLAIMS` registry
  lets the first binding keep the group and raises :class:`OwnershipConflict` (naming the holder)
  for the second, from :meth:`ensure_target` — a condition, not a tug of war.

* **Security groups.** ``networking`` sections are kept by
  :class:`~negsync.providers.aws_networking.SecurityGroupRules` through this module's paced,
  error-mapped call (:meth:`AwsProvider.reconcile_networking`; released in :meth:`delete_target`).

Error codes map onto negsync's errors in :mod:`negsync.providers.aws_errors`.  Only the AWS
provider modules import boto3/botocore; everything above them sees :mod:`negsync.errors`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from negsync import __version__
from negsync.core.backoff import parse_retry_after
from negsync.core.batching import chunks
from negsync.core.bindings import AwsTargetGroupTarget, TargetSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import (
    ConfigError,
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.aws_errors import to_error
from negsync.providers.aws_networking import SecurityGroupRules
from negsync.providers.ratelimit import RateLimits

__all__ = [
    "ALL_ZONES",
    "AWS_THROTTLE_LIMITS",
    "CLAIMS",
    "DEFAULT_RATE_LIMITS",
    "EC2_RATE_LIMITS",
    "HEALTH_POLL_SHARE",
    "MAX_TARGETS_PER_CALL",
    "AwsProvider",
    "InvalidEndpoints",
    "ReportedTarget",
    "TargetGroupClaims",
    "TargetGroupInfo",
    "health_from_state",
    "invalid_endpoints",
]

log = logging.getLogger(__name__)

#: RegisterTargets / DeregisterTargets accept at most this many targets per call.
MAX_TARGETS_PER_CALL: Final = 200

#: AWS's own ELBv2 buckets per account and region: throttle group → (refill per second, capacity).
#: Describe* and Register/Deregister from the "elb-api-throttling" page of the ELB user guide;
#: the account-level bucket of all actions as in LBC ``pkg/aws/throttle/defaults.go`` (``.*``).
AWS_THROTTLE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {
    "RegisterTargets|DeregisterTargets": (4.0, 20),
    "Describe*": (10.0, 40),
    "*": (10.0, 40),
}

#: negsync's ELBv2 throttle groups → (tokens per second, burst): each below AWS's refill rate
#: (:data:`AWS_THROTTLE_LIMITS`), so the controller leaves room for other tools in the account.
DEFAULT_RATE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {
    "RegisterTargets|DeregisterTargets": (3.0, 10),
    "Describe*": (5.0, 20),
    "*": (8.0, 20),
}

#: EC2 calls (DescribeVpcs, security-group rules) in one group of their own: EC2 throttles apart
#: from ELBv2, and negsync makes few of them.
EC2_RATE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {"*": (5.0, 10)}

#: The share of the Describe budget that health polls for readiness gates may use.
HEALTH_POLL_SHARE: Final = 0.5
# A group counts as being polled for this long after its last DescribeTargetHealth.
_POLL_WINDOW: Final = 60.0

#: The zone value AWS takes for "every enabled zone of the load balancer".
ALL_ZONES: Final = "all"

RETRY_MODES: Final = ("standard", "adaptive")

# How long one HTTP attempt may wait for a token before giving up as transient.  Generous: at
# 4/s a full 200-call backlog drains in under a minute.
_PACING_TIMEOUT: Final = 60.0
# VPC CIDRs change (secondary CIDRs for pods), target group types do not: only the former expires.
_VPC_CACHE_SECONDS: Final = 300.0

# RFC 1918 and RFC 6598: the non-VPC IPv4 ranges an ``ip`` target group accepts (with AZ ``all``).
_PRIVATE_V4: Final = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

# Words of AWS's ValidationError when an outside-VPC IP needs a zone other than "all" (LBC #4477).
_ZONE_NEEDED: Final = ("cross-zone load balancing is disabled", "must specify an availability zone")

_HEALTH_STATES: Final[Mapping[str, Health]] = {
    "initial": Health.INITIAL,
    "healthy": Health.HEALTHY,
    "unhealthy": Health.UNHEALTHY,
    "unused": Health.UNUSED,
    "draining": Health.DRAINING,
    # "unhealthy.draining" is the NLB's state for a draining target that also fails its checks.
    "unhealthy.draining": Health.DRAINING,
}


class InvalidEndpoints(RejectedError):
    """A batch holds endpoints the API would refuse; found by negsync before calling AWS.

    ``endpoints`` lists exactly the bad members (the reconciler drops them without bisecting),
    ``reasons`` says why for each.
    """

    def __init__(self, message: str, *, reasons: Mapping[TargetEndpoint, str]) -> None:
        super().__init__(message)
        self.reasons: dict[TargetEndpoint, str] = dict(reasons)
        self.endpoints: tuple[TargetEndpoint, ...] = tuple(sorted(self.reasons))


class _PacingTimeout(Exception):
    """Raised from the before-send hook when no token arrives in time; becomes TransientError."""


@dataclass(frozen=True, slots=True)
class ReportedTarget:
    """A TargetDescription exactly as DescribeTargetHealth returned it: what DeregisterTargets needs."""

    id: str
    port: int
    zone: str | None = None

    def description(self) -> dict[str, Any]:
        target: dict[str, Any] = {"Id": self.id, "Port": self.port}
        if self.zone:
            target["AvailabilityZone"] = self.zone
        return target


@dataclass(frozen=True, slots=True)
class TargetGroupInfo:
    """What DescribeTargetGroups says about a group, cached per ARN."""

    arn: str
    name: str
    target_type: str
    vpc_id: str
    protocol: str
    port: int | None
    ip_family: str  # "ipv4" or "ipv6": the group's IpAddressType
    health_check_enabled: bool
    load_balancer_arns: tuple[str, ...] = ()


def health_from_state(state: str, *, health_check_enabled: bool = True) -> Health:
    """Map a DescribeTargetHealth state onto :class:`Health` (the readiness gate passes on HEALTHY)."""
    if state == "unavailable":
        # Reported when the group's health checks are disabled: the LB routes without checking.
        return Health.NO_HEALTH_CHECK if not health_check_enabled else Health.UNKNOWN
    return _HEALTH_STATES.get(state, Health.UNKNOWN)


def _canonical_ip(ip: str) -> str:
    """The compressed text form, so ``fd00:0::1`` from one side equals ``fd00::1`` from the other."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip  # left as is: attach reports it as invalid


def _networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def invalid_endpoints(
    endpoints: Iterable[TargetEndpoint], *, family: str, vpc_cidrs: Iterable[str] = ()
) -> dict[TargetEndpoint, str]:
    """Endpoints RegisterTargets would refuse for an ``ip`` group of ``family``, with the reason.

    Mirrors the documented rules: the ID is an IP address of the group's family; the port is
    1-65535; an IPv4 target lies in the VPC, RFC 1918 or RFC 6598 space (no public addresses);
    loopback, link-local, multicast and unspecified addresses are never targets.
    """
    networks = _networks(vpc_cidrs)
    bad: dict[TargetEndpoint, str] = {}
    want = 6 if family == "ipv6" else 4
    for endpoint in endpoints:
        port = endpoint.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            bad[endpoint] = f"port {port!r} is not in 1-65535"
            continue
        try:
            address = ipaddress.ip_address(endpoint.ip)
        except ValueError:
            bad[endpoint] = f"{endpoint.ip!r} is not an IP address"
            continue
        if address.version != want:
            bad[endpoint] = f"{endpoint.ip} is IPv{address.version}, the target group is {family}"
        elif address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            bad[endpoint] = f"{endpoint.ip} is a loopback, link-local, multicast or unspecified address"
        elif (
            isinstance(address, ipaddress.IPv4Address)
            and not any(address in n for n in networks)
            and not any(address in n for n in _PRIVATE_V4)
        ):
            bad[endpoint] = f"{endpoint.ip} is outside the VPC and the RFC 1918/6598 ranges"
    return bad


class TargetGroupClaims:
    """Process-wide record of which binding manages which target group.

    A binding holds at most one group (its spec names one ARN); claiming another drops the old
    claim, so a spec edit moves the claim.  Several bindings may hold one group only if every one
    of them is ``shared``; otherwise the first claimant keeps it and later ones get
    :class:`OwnershipConflict`.  Claims live in memory: after a restart the first binding to
    reconcile wins again (the kube layer can claim in creation order to make that deterministic).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_arn: dict[str, dict[BindingKey, bool]] = {}
        self._by_binding: dict[BindingKey, str] = {}

    def claim(self, arn: str, binding: BindingKey, *, shared: bool) -> None:
        with self._lock:
            holders = self._by_arn.get(arn, {})
            for other, other_shared in sorted(holders.items()):
                if other == binding or (shared and other_shared):
                    continue
                if not other_shared:
                    why = f"binding {other} manages it without shared: true"
                else:
                    why = f"binding {other} shares it, but this binding does not set shared: true"
                raise OwnershipConflict(
                    f"target group {arn} is already in use: {why}; "
                    "set spec.target.awsTargetGroup.shared: true on every binding of the group to share it"
                )
            previous = self._by_binding.get(binding)
            if previous is not None and previous != arn:
                self._drop(binding, previous)
            self._by_arn.setdefault(arn, {})[binding] = shared
            self._by_binding[binding] = arn

    def release(self, binding: BindingKey) -> None:
        """Forget the binding's claim (binding deleted, or moved to another provider)."""
        with self._lock:
            arn = self._by_binding.get(binding)
            if arn is not None:
                self._drop(binding, arn)

    def _drop(self, binding: BindingKey, arn: str) -> None:
        holders = self._by_arn.get(arn, {})
        holders.pop(binding, None)
        if not holders:
            self._by_arn.pop(arn, None)
        self._by_binding.pop(binding, None)

    def holders(self, arn: str) -> dict[BindingKey, bool]:
        """Bindings holding ``arn`` → whether each one shares it."""
        with self._lock:
            return dict(self._by_arn.get(arn, {}))

    def clear(self) -> None:
        with self._lock:
            self._by_arn.clear()
            self._by_binding.clear()


#: The registry every :class:`AwsProvider` in this process uses unless given its own.
CLAIMS: Final = TargetGroupClaims()


@dataclass(frozen=True, slots=True)
class _VpcCidrs:
    cidrs: tuple[str, ...]
    expires: float


class AwsProvider:
    """:class:`~negsync.providers.base.TargetProvider` for ELBv2 target groups of type ``ip``."""

    name: Final = "aws"
    max_batch_size: Final = MAX_TARGETS_PER_CALL

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 10,
        retry_mode: str = "standard",
        rate_limits: Mapping[str, tuple[float, int]] | None = None,
        clock: Clock | None = None,
        session: boto3.Session | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 20,
        claims: TargetGroupClaims | None = None,
    ) -> None:
        if retry_mode not in RETRY_MODES:
            raise ConfigError("aws.retryMode", f"must be one of {', '.join(RETRY_MODES)}, got {retry_mode!r}")
        if max_attempts < 1:
            raise ConfigError("aws.maxAttempts", f"must be >= 1, got {max_attempts}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigError("aws.timeouts", "connect and read timeouts must be positive")
        self.endpoint_url = endpoint_url or None
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        # User limits refine the defaults: overriding RegisterTargets keeps Describe* as it was.
        self.rate_limits: dict[str, tuple[float, int]] = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        RateLimits(self.rate_limits)  # validate now, not on the first call
        self._clock: Clock = clock or RealClock()
        self._session = session
        self._claims = claims if claims is not None else CLAIMS
        self._config = Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Worker threads share one client per region; the default pool of 10 would discard
            # connections under load.
            max_pool_connections=32,
            user_agent_extra=f"negsync/{__version__}",
        )
        # Two locks: creating a client takes ~0.1 s and must not stall readers of the caches.
        self._client_lock = threading.Lock()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._limits: dict[tuple[str, str], RateLimits] = {}
        self._groups: dict[str, TargetGroupInfo] = {}
        self._vpcs: dict[tuple[str, str], _VpcCidrs] = {}
        # Per target group: each member as DescribeTargetHealth last reported it (item: deregister
        # with exactly that), the zones of the desired endpoints outside the VPC, and whether the
        # group wants those registered in their own zone rather than "all".
        self._reported: dict[str, dict[TargetEndpoint, ReportedTarget]] = {}
        # Per binding, since several (shared) bindings may feed one group.
        self._endpoint_zones: dict[str, dict[BindingKey, dict[TargetEndpoint, str]]] = {}
        self._own_zone: dict[str, bool] = {}
        self._polled: dict[str, float] = {}  # target group → when its health was last polled
        self._networking = SecurityGroupRules(call=self._call, clock=self._clock)

    # ----------------------------------------------------------------- clients and calls

    def client(self, service: str, region: str) -> Any:
        """The cached boto3 client for ``service`` ("elbv2" or "ec2") in ``region``."""
        key = (service, region)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._client_lock:  # boto3 sessions are not thread-safe; clients are
            client = self._clients.get(key)
            if client is None:
                if self._session is None:
                    self._session = boto3.Session()
                client = self._session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=self._config
                )
                client.meta.events.register(
                    "before-send", functools.partial(_pace, self._region_limits(region, service))
                )
                self._clients[key] = client
        return client

    def check_credentials(self) -> str:
        """Resolve botocore's default credential chain once, at start-up; returns the method found.

        The chain is botocore's own, in its order: environment keys, web identity (IRSA:
        ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), shared files, the container provider
        (EKS Pod Identity: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``),
        instance metadata.  Finding none is a configuration error (CLI exit 2) rather than a
        condition on every binding; a provider that is found but fails to answer is reported per
        call later (it may be a passing outage of the Pod Identity agent).
        """
        with self._client_lock:
            if self._session is None:
                self._session = boto3.Session()
            session = self._session
        try:
            credentials = session.get_credentials()
        except (BotoCoreError, ValueError) as err:
            log.warning("AWS credentials could not be loaded yet: %s", err)
            return "unavailable"
        if credentials is None:
            raise ConfigError(
                "AWS credentials",
                "none found: give the ServiceAccount an IAM role (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), "
                "an EKS Pod Identity association (AWS_CONTAINER_CREDENTIALS_FULL_URI), or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY; see docs/aws.md",
            )
        return str(getattr(credentials, "method", "") or "unknown")

    def limits(self, region: str, service: str = "elbv2") -> RateLimits:
        """The throttle groups pacing ``service`` in ``region``: every client there shares them."""
        with self._client_lock:
            return self._region_limits(region, service)

    def _region_limits(self, region: str, service: str) -> RateLimits:
        # Called with the lock held.  Per region because AWS throttles per account and region.
        limits = self._limits.get((region, service))
        if limits is None:
            table = self.rate_limits if service == "elbv2" else EC2_RATE_LIMITS
            limits = self._limits[(region, service)] = RateLimits(table, clock=self._clock)
        return limits

    def health_poll_interval(self, ref: TargetRef) -> float:
        """Least seconds between two health polls of ``ref`` so that all polled groups fit the budget.

        Every target group polled in the last minute takes one DescribeTargetHealth per interval;
        together they may use :data:`HEALTH_POLL_SHARE` of the tightest group DescribeTargetHealth
        pays into (Describe* or the account-wide one), leaving the rest for DescribeTargetGroups,
        attribute reads and other tools.  30 gated groups at 5/s × 0.5 → one poll per group
        every 12 s.
        """
        limit = self.limits(ref.location).limit_for("DescribeTargetHealth")
        if limit is None:
            return 0.0
        now = self._clock.now()
        with self._lock:
            for arn in [a for a, at in self._polled.items() if now - at > _POLL_WINDOW]:
                del self._polled[arn]
            polled = len(self._polled | {ref.name: now})
        return polled / (limit[0] * HEALTH_POLL_SHARE)

    def _call(self, service: str, region: str, operation: str, **params: Any) -> dict[str, Any]:
        client = self.client(service, region)
        what = f"{operation} in {region}"
        try:
            response: dict[str, Any] = getattr(client, xform_name(operation))(**params)
            return response
        except ClientError as err:
            raise _translate(err, service=service, operation=operation, region=region) from err
        except _PacingTimeout as err:
            raise TransientError(f"{what}: no rate-limit token within {_PACING_TIMEOUT:g}s") from err
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise ProviderError(
                f"{what}: no usable AWS credentials (IRSA or Pod Identity set up?): {err}"
            ) from err
        except (BotoConnectionError, HTTPClientError) as err:  # refused, reset, connect/read time-outs
            # botocore already retried these; what is left is an outage worth backing off from.
            raise TransientError(f"{what}: {err}") from err
        except BotoCoreError as err:
            raise ProviderError(f"{what}: {err}") from err

    # ----------------------------------------------------------------- cached descriptions

    def describe_group(self, ref: TargetRef) -> TargetGroupInfo:
        """DescribeTargetGroups once per ARN (a group's type, VPC and family cannot change)."""
        arn = _check_ref(ref)
        with self._lock:
            cached = self._groups.get(arn)
        if cached is not None:
            return cached
        try:
            response = self._call("elbv2", ref.location, "DescribeTargetGroups", TargetGroupArns=[arn])
        except TargetNotFound:
            raise TargetNotFound(f"target group {arn} does not exist") from None
        groups = response.get("TargetGroups") or []
        if not groups:
            raise TargetNotFound(f"target group {arn} does not exist")
        raw = groups[0]
        port = raw.get("Port")
        info = TargetGroupInfo(
            arn=arn,
            name=str(raw.get("TargetGroupName", "")),
            target_type=str(raw.get("TargetType", "instance")),
            vpc_id=str(raw.get("VpcId", "")),
            protocol=str(raw.get("Protocol", "")),
            port=int(port) if port is not None else None,
            ip_family="ipv6" if raw.get("IpAddressType") == "ipv6" else "ipv4",
            health_check_enabled=bool(raw.get("HealthCheckEnabled", True)),
            load_balancer_arns=tuple(raw.get("LoadBalancerArns") or ()),
        )
        with self._lock:
            self._groups[arn] = info
        return info

    def vpc_cidrs(self, region: str, vpc_id: str) -> tuple[str, ...]:
        """IPv4 and IPv6 CIDRs associated with the VPC (DescribeVpcs, cached for a few minutes)."""
        key = (region, vpc_id)
        now = self._clock.now()
        with self._lock:
            cached = self._vpcs.get(key)
        if cached is not None and cached.expires > now:
            return cached.cidrs
        response = self._call("ec2", region, "DescribeVpcs", VpcIds=[vpc_id])
        vpcs = response.get("Vpcs") or []
        if not vpcs:
            raise InvalidTarget(f"VPC {vpc_id} of the target group does not exist")
        vpc = vpcs[0]
        live = ("associated", "associating")
        cidrs = {vpc["CidrBlock"]} if vpc.get("CidrBlock") else set()
        for assoc in vpc.get("CidrBlockAssociationSet") or ():
            if assoc.get("CidrBlockState", {}).get("State", "associated") in live:
                cidrs.add(assoc["CidrBlock"])
        for assoc in vpc.get("Ipv6CidrBlockAssociationSet") or ():
            if assoc.get("Ipv6CidrBlockState", {}).get("State", "associated") in live:
                cidrs.add(assoc["Ipv6CidrBlock"])
        result = tuple(sorted(cidrs))
        with self._lock:
            self._vpcs[key] = _VpcCidrs(result, now + _VPC_CACHE_SECONDS)
        return result

    def _forget_vpc(self, region: str, vpc_id: str) -> None:
        with self._lock:
            self._vpcs.pop((region, vpc_id), None)

    # ----------------------------------------------------------------- TargetProvider

    def targets_for(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> dict[TargetRef, set[TargetEndpoint]]:
        """One ref, the target group, holding every desired endpoint — even none (scale to zero).

        Also notes the zone of each endpoint that may lie outside the group's VPC (all of them
        until the VPC's CIDRs are known): a group with cross-zone load balancing off needs it.
        """
        ref = self._ref(spec)
        wanted: set[TargetEndpoint] = set()
        zones: dict[TargetEndpoint, str] = {}
        with self._lock:
            info = self._groups.get(ref.name)
            known = self._vpcs.get((ref.location, info.vpc_id)) if info is not None else None
        networks = _networks(known.cidrs) if known is not None else None
        for endpoint in endpoints:
            member = TargetEndpoint(_canonical_ip(endpoint.ip), endpoint.port)
            wanted.add(member)
            if endpoint.zone and (networks is None or not _inside(member.ip, networks)):
                zones[member] = endpoint.zone
        with self._lock:
            self._endpoint_zones.setdefault(ref.name, {})[binding] = zones
        return {ref: wanted}

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        """The group named by the spec: negsync never creates groups, so there is nothing else."""
        return [self._ref(spec)]

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        """Check the group exists, is of type ``ip``, and claim it for ``binding``.

        Raises TargetNotFound, InvalidTarget (type not ``ip``) or OwnershipConflict (another
        binding holds the group and the two are not both ``shared``).
        """
        if self._ref(spec) != ref:
            raise InvalidTarget(f"{ref} is not the target group of {spec}")
        info = self.describe_group(ref)
        if info.target_type != "ip":
            raise InvalidTarget(
                f"target group {info.name or ref.name} has target type {info.target_type!r}; "
                "negsync registers pod IPs and needs a target group of type 'ip'"
            )
        assert isinstance(spec, AwsTargetGroupTarget)  # _ref checked it
        self.claim(ref, binding=binding, shared=spec.shared)

    def claim(self, ref: TargetRef, *, binding: BindingKey, shared: bool) -> None:
        """Record that ``binding`` manages ``ref``; OwnershipConflict names the binding holding it."""
        self._claims.claim(_check_ref(ref), binding, shared=shared)

    def release(self, binding: BindingKey) -> None:
        """Drop ``binding``'s claim (called when the binding is deleted)."""
        self._claims.release(binding)

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        """Members and health from DescribeTargetHealth (one call: the API does not paginate it).

        Each member's TargetDescription is kept as reported, for :meth:`detach`.
        """
        info = self.describe_group(ref)
        response = self._call("elbv2", ref.location, "DescribeTargetHealth", TargetGroupArn=ref.name)
        members: dict[TargetEndpoint, Health] = {}
        reported: dict[TargetEndpoint, ReportedTarget] = {}
        for description in response.get("TargetHealthDescriptions") or ():
            target = description.get("Target") or {}
            port = target.get("Port", info.port)
            if "Id" not in target or port is None:
                continue
            state = (description.get("TargetHealth") or {}).get("State", "")
            member = TargetEndpoint(_canonical_ip(str(target["Id"])), int(port))
            members[member] = health_from_state(state, health_check_enabled=info.health_check_enabled)
            zone = target.get("AvailabilityZone")
            reported[member] = ReportedTarget(str(target["Id"]), int(port), str(zone) if zone else None)
        with self._lock:
            self._reported[ref.name] = reported
            self._polled[ref.name] = self._clock.now()
        return members

    def reported(self, ref: TargetRef) -> dict[TargetEndpoint, ReportedTarget]:
        """The members of ``ref`` as the last DescribeTargetHealth described them."""
        with self._lock:
            return dict(self._reported.get(ref.name, {}))

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """RegisterTargets, validated first and chunked to 200 (the reconciler chunks too)."""
        if not endpoints:
            return
        info, cidrs = self._usable(ref)
        networks = _networks(cidrs)
        bad = invalid_endpoints(endpoints, family=info.ip_family, vpc_cidrs=cidrs)
        outside = [e for e in endpoints if e not in bad and not _inside(e.ip, networks)]
        own_zone = self._wants_own_zone(ref, info) if outside else False
        if own_zone:
            with self._lock:
                zones = self._zones_of(ref)
            for endpoint in outside:
                if not zones.get(endpoint):
                    bad[endpoint] = (
                        f"{endpoint.ip} is outside the VPC and cross-zone load balancing is off on the target "
                        "group, so AWS needs the endpoint's zone, which is unknown (no topology.kubernetes.io/zone "
                        "on its node)"
                    )
        if bad:
            sample = "; ".join(f"{e}: {why}" for e, why in sorted(bad.items())[:5])
            group = info.name or ref.name
            raise InvalidEndpoints(
                f"{len(bad)} of {len(endpoints)} endpoints cannot be targets of {group}: {sample}",
                reasons=bad,
            )
        for batch in chunks(set(endpoints), limit=MAX_TARGETS_PER_CALL):
            try:
                self._register(ref, batch, networks)
            except RejectedError as err:
                if own_zone or not _needs_own_zone(err) or not any(not _inside(e.ip, networks) for e in batch):
                    if any(not _inside(e.ip, networks) for e in batch):
                        # Perhaps the VPC gained a CIDR since we cached it and the zone was wrong.
                        log.info("RegisterTargets rejected on %s; re-reading the CIDRs of %s", ref, info.vpc_id)
                        self._forget_vpc(ref.location, info.vpc_id)
                    raise
                # AWS says what the attribute did not (or could not be read): remember it and retry.
                log.info("%s wants zones for IPs outside its VPC (cross-zone off); registering with them", ref)
                with self._lock:
                    self._own_zone[ref.name] = True
                self.attach(ref, batch)
                own_zone = True

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """DeregisterTargets with the descriptions AWS reported, in chunks of 200; then confirm by listing.

        AWS answers success for a target that is not registered — and for one named with a zone
        other than the one it recorded, which it then leaves in place.  So success alone proves
        nothing for a member whose description negsync had to compute (never listed, not registered
        by this process): then the group is listed afterwards, a member still registered (and not
        draining) is deregistered once more with the description that listing reported, and if it
        is still there the call fails as transient (the reconciler retries it later).  A member
        named exactly as AWS reported it, or as this process registered it, needs no confirmation.
        """
        if not endpoints:
            return
        _, cidrs = self._usable(ref)
        networks = _networks(cidrs)
        with self._lock:
            known = set(self._reported.get(ref.name, {}))
        for batch in chunks(set(endpoints), limit=MAX_TARGETS_PER_CALL):
            self._deregister(ref, batch, networks)
        if all(e in known for e in endpoints):
            # Every description was one AWS reported or one negsync registered and AWS accepted:
            # AWS matches it exactly, so success is proof and no confirming listing is spent.
            with self._lock:
                kept = dict(self._reported.get(ref.name, {}))
                for e in endpoints:
                    kept.pop(e, None)
                self._reported[ref.name] = kept
            return
        stuck = self._still_registered(ref, endpoints)
        if stuck:
            log.info("%d targets still registered in %s after DeregisterTargets; retrying as reported", len(stuck), ref)
            for batch in chunks(stuck, limit=MAX_TARGETS_PER_CALL):
                self._deregister(ref, batch, networks)
            stuck = self._still_registered(ref, endpoints)
        if stuck:
            sample = ", ".join(str(e) for e in sorted(stuck)[:5])
            raise TransientError(
                f"DeregisterTargets on {ref.name} succeeded, but {len(stuck)} targets are still registered: {sample}"
            )

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        """Revoke the binding's security-group rules and release the claim; the group stays (False)."""
        self._networking.release(binding)
        self.release(binding)
        with self._lock:
            self._endpoint_zones.get(ref.name, {}).pop(binding, None)
        return False

    def reconcile_networking(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> str | None:
        """Keep ``spec.networking``'s security-group rules; returns the group kept (None: no section).

        See :mod:`negsync.providers.aws_networking`.  No API call for a binding without the section.
        """
        if not isinstance(spec, AwsTargetGroupTarget):
            return None
        if spec.networking is None or not spec.networking.ingress:
            self._networking.release(binding)
            return None
        ref = self._ref(spec)
        info = self.describe_group(ref)
        members = [TargetEndpoint(_canonical_ip(e.ip), e.port) for e in endpoints]
        return self._networking.reconcile(
            region=ref.location, vpc_id=info.vpc_id, binding=binding, networking=spec.networking, endpoints=members
        )

    # ----------------------------------------------------------------- helpers

    def _ref(self, spec: TargetSpec) -> TargetRef:
        if not isinstance(spec, AwsTargetGroupTarget):
            raise InvalidTarget(f"the aws provider cannot manage a {spec.kind!r} target")
        if not spec.region:
            raise InvalidTarget(f"{spec.arn!r} is not an ELBv2 target group ARN")
        return TargetRef("aws", spec.region, spec.arn)

    def _usable(self, ref: TargetRef) -> tuple[TargetGroupInfo, tuple[str, ...]]:
        info = self.describe_group(ref)
        if info.target_type != "ip":
            raise InvalidTarget(f"target group {info.name or ref.name} has target type {info.target_type!r}")
        return info, self.vpc_cidrs(ref.location, info.vpc_id)

    def _zones_of(self, ref: TargetRef) -> dict[TargetEndpoint, str]:
        # Called with the lock held or not (a plain read of dicts replaced, never mutated in place).
        merged: dict[TargetEndpoint, str] = {}
        for zones in list(self._endpoint_zones.get(ref.name, {}).values()):
            merged.update(zones)
        return merged

    def _wants_own_zone(self, ref: TargetRef, info: TargetGroupInfo) -> bool:
        """Whether IPs outside the VPC must name their own zone in ``ref`` (remembered per group).

        Only an ALB target group with cross-zone load balancing off refuses ``all`` (ELBv2 API
        reference, TargetDescription; LBC PR #4496 "this does not apply to NLB"); the group
        attribute says so.  ``use_load_balancer_configuration`` (the default) follows the ALB,
        where cross-zone is on.  If the attribute cannot be read, ``all`` is tried and AWS's
        ValidationError corrects it (see :meth:`attach`).
        """
        with self._lock:
            known = self._own_zone.get(ref.name)
        if known is not None:
            return known
        own = False
        if info.protocol in ("HTTP", "HTTPS"):
            try:
                response = self._call(
                    "elbv2", ref.location, "DescribeTargetGroupAttributes", TargetGroupArn=ref.name
                )
            except (InvalidTarget, TransientError) as err:
                log.info("cannot read the attributes of %s (%s); trying zone 'all' first", ref, err)
                return False
            attributes = {a.get("Key"): a.get("Value") for a in response.get("Attributes") or ()}
            own = attributes.get("load_balancing.cross_zone.enabled") == "false"
        with self._lock:
            self._own_zone[ref.name] = own
        return own

    def _own_zones(self, ref: TargetRef) -> dict[TargetEndpoint, str] | None:
        """The endpoints' zones if ``ref`` registers outside IPs in their own zone, else None ("all")."""
        with self._lock:
            return self._zones_of(ref) if self._own_zone.get(ref.name, False) else None

    def _register(
        self, ref: TargetRef, batch: Sequence[TargetEndpoint], networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        zones = self._own_zones(ref)
        targets = [_description(e, networks, zones) for e in batch]
        self._call("elbv2", ref.location, "RegisterTargets", TargetGroupArn=ref.name, Targets=targets)
        # AWS now holds exactly these descriptions: a later DeregisterTargets names them as sent,
        # without a listing in between (issue 18: own writes cost no read).
        with self._lock:
            known = dict(self._reported.get(ref.name, {}))
            for member, target in zip(batch, targets, strict=True):
                zone = target.get("AvailabilityZone")
                known[member] = ReportedTarget(str(target["Id"]), int(target["Port"]), str(zone) if zone else None)
            self._reported[ref.name] = known

    def _deregister(
        self,
        ref: TargetRef,
        batch: Sequence[TargetEndpoint],
        networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    ) -> None:
        # What AWS reported for the member, exactly; a computed description only for members
        # never listed (e.g. an attach whose response was lost, detached before the next list).
        reported = self.reported(ref)
        zones = self._own_zones(ref)
        targets = [reported[e].description() if e in reported else _description(e, networks, zones) for e in batch]
        self._call("elbv2", ref.location, "DeregisterTargets", TargetGroupArn=ref.name, Targets=targets)

    def _still_registered(self, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> list[TargetEndpoint]:
        present = self.list_endpoints(ref)
        return [e for e in endpoints if e in present and present[e] is not Health.DRAINING]


def _pace(limits: RateLimits, event_name: str = "", **_: Any) -> None:
    """botocore ``before-send`` hook: take the operation's token before each HTTP attempt."""
    operation = event_name.rsplit(".", 1)[-1]
    if not limits.acquire(operation, timeout=_PACING_TIMEOUT):
        raise _PacingTimeout(operation)


def _description(
    endpoint: TargetEndpoint,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    zones: Mapping[TargetEndpoint, str] | None,
) -> dict[str, Any]:
    """The TargetDescription to register ``endpoint`` with (``zones`` None: ``all`` outside the VPC)."""
    target: dict[str, Any] = {"Id": endpoint.ip, "Port": endpoint.port}
    if not _inside(endpoint.ip, networks):
        # Required outside the VPC (peered VPCs, on-premises).  Inside, AWS detects the zone.
        target["AvailabilityZone"] = (zones or {}).get(endpoint) or ALL_ZONES
    return target


def _inside(ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True  # not an address: validation reports it, no zone to pick
    return any(address.version == n.version and address in n for n in networks)


def _needs_own_zone(err: BaseException) -> bool:
    """Whether a rejection is AWS asking for a zone other than ``all`` (LBC issue #4477)."""
    text = str(err).lower()
    return _code(err) == "ValidationError" and any(words in text for words in _ZONE_NEEDED)


def _check_ref(ref: TargetRef) -> str:
    if ref.kind != "aws":
        raise InvalidTarget(f"the aws provider cannot manage {ref}")
    if AwsTargetGroupTarget(arn=ref.name).region != ref.location:
        raise InvalidTarget(f"{ref}: the location must be the region of the target group ARN")
    return ref.name


def _code(err: BaseException) -> str:
    cause = err.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _translate(err: ClientError, *, service: str, operation: str, region: str) -> ProviderError:
    """A botocore ClientError (after botocore's own retries) as negsync's error (see aws_errors)."""
    error = err.response.get("Error", {})
    metadata = err.response.get("ResponseMetadata", {})
    retry_after = parse_retry_after((metadata.get("HTTPHeaders") or {}).get("retry-after"))
    return to_error(
        service=service,
        operation=operation,
        code=str(error.get("Code", "")),
        message=str(error.get("Message", "")),
        status=int(metadata.get("HTTPStatusCode") or 0),
        where=region,
        retry_after=retry_after,
    )
