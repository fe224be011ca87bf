"""The AWS provider: keep an existing ELBv2 target group of type ``ip`` equal to a Service's endpoints.

This is negsync's counterpart of the AWS Load Balancer Controller's TargetGroupBinding.  A
binding names a target group by ARN; negsync never creates or deletes target groups, it only
registers and deregisters pod IPs in them.  One target group is one :class:`TargetRef`
``("aws", <region>, <arn>)``; the generic reconciler computes the diff, cuts it into batches of
:attr:`AwsProvider.max_batch_size` (200, the RegisterTargets limit) and calls :meth:`attach` /
:meth:`detach` per batch.

:class:`AwsProvider` is the :class:`~negsync.providers.base.TargetProvider` face of the package
and composes its parts (the design of each is in its docstring):

* :mod:`~negsync.providers.aws.calls` — the credential chain, clients, the account's shared
  throttle budget, paging and error mapping (with :mod:`~negsync.providers.aws.errors`);
* :mod:`~negsync.providers.aws.groups` — target-group resolution: description, VPC CIDRs, the
  own-zone rule;
* :mod:`~negsync.providers.aws.validation` — which endpoints a group can take (pure);
* :mod:`~negsync.providers.aws.registration` — RegisterTargets / DeregisterTargets;
* :mod:`~negsync.providers.aws.health` — members with health, and the poll budget of gates;
* :mod:`~negsync.providers.aws.claims` — which binding manages which group (``shared``);
* :mod:`~negsync.providers.aws.networking` — security-group rules of ``networking`` sections,
  kept through the same paced, error-mapped call (released in :meth:`AwsProvider.delete_target`).

Only this package imports boto3/botocore; everything above it sees :mod:`negsync.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import boto3

from negsync.core.bindings import AwsTargetGroupTarget, TargetSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import InvalidTarget
from negsync.providers.aws.calls import DEFAULT_RATE_LIMITS, AwsApi
from negsync.providers.aws.claims import CLAIMS, TargetGroupClaims
from negsync.providers.aws.groups import TargetGroupInfo, TargetGroups, check_ref, ref_of
from negsync.providers.aws.health import HealthPolls, ReportedTarget, read_target_health
from negsync.providers.aws.networking import SecurityGroupRules
from negsync.providers.aws.registration import MAX_TARGETS_PER_CALL, Registrations
from negsync.providers.aws.validation import canonical_ip, inside, networks
from negsync.providers.ratelimit import RateLimits

__all__ = ["AwsProvider"]


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
        self._clock: Clock = clock or RealClock()
        # User limits refine the defaults: overriding RegisterTargets keeps Describe* as it was.
        self.api = AwsApi(
            endpoint_url=endpoint_url,
            max_attempts=max_attempts,
            retry_mode=retry_mode,
            rate_limits={**DEFAULT_RATE_LIMITS, **(rate_limits or {})},
            clock=self._clock,
            session=session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self.endpoint_url = self.api.endpoint_url
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        self.rate_limits = self.api.rate_limits
        self._claims = claims if claims is not None else CLAIMS
        self.groups = TargetGroups(call=self.api.call, clock=self._clock)
        self.health_polls = HealthPolls(clock=self._clock)
        self._registrations = Registrations(call=self.api.call, groups=self.groups, list_members=self.list_endpoints)
        self._networking = SecurityGroupRules(call=self.api.call, clock=self._clock)

    # ----------------------------------------------------------------- clients, budget, descriptions

    def client(self, service: str, region: str) -> Any:
        """The cached boto3 client for ``service`` ("elbv2" or "ec2") in ``region``."""
        return self.api.client(service, region)

    def check_credentials(self) -> str:
        """Resolve botocore's default credential chain once, at start-up (see :meth:`AwsApi.check_credentials`)."""
        return self.api.check_credentials()

    def limits(self, region: str, service: str = "elbv2") -> RateLimits:
        """The throttle groups pacing ``service`` in ``region``: every client there shares them."""
        return self.api.limits(region, service)

    def health_poll_interval(self, ref: TargetRef) -> float:
        """Least seconds between two health polls of ``ref`` so that all polled groups fit the budget."""
        limit = self.limits(ref.location).limit_for("DescribeTargetHealth")
        return self.health_polls.interval(ref.name, describe_rate=limit[0] if limit is not None else None)

    def describe_group(self, ref: TargetRef) -> TargetGroupInfo:
        """DescribeTargetGroups once per ARN (a group's type, VPC and family cannot change)."""
        return self.groups.describe(ref)

    def vpc_cidrs(self, region: str, vpc_id: str) -> tuple[str, ...]:
        """IPv4 and IPv6 CIDRs associated with the VPC (DescribeVpcs, cached for a few minutes)."""
        return self.groups.vpc_cidrs(region, vpc_id)

    # ----------------------------------------------------------------- TargetProvider

    def targets_for(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> dict[TargetRef, set[TargetEndpoint]]:
        """One ref, the target group, holding every desired endpoint — even none (scale to zero).

        Also notes the zone of each endpoint that may lie outside the group's VPC (all of them
        until the VPC's CIDRs are known): a group with cross-zone load balancing off needs it.
        """
        ref = ref_of(spec)
        wanted: set[TargetEndpoint] = set()
        zones: dict[TargetEndpoint, str] = {}
        known = self.groups.known_cidrs(ref)
        vpc = networks(known) if known is not None else None
        for endpoint in endpoints:
            member = TargetEndpoint(canonical_ip(endpoint.ip), endpoint.port)
            wanted.add(member)
            if endpoint.zone and (vpc is None or not inside(member.ip, vpc)):
                zones[member] = endpoint.zone
        self._registrations.note_zones(ref, binding, zones)
        return {ref: wanted}

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        """The group named by the spec: negsync never creates groups, so there is nothing else."""
        return [ref_of(spec)]

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        """Check the group exists, is of type ``ip``, and claim it for ``binding``.

        Raises TargetNotFound, InvalidTarget (type not ``ip``) or OwnershipConflict (another
        binding holds the group and the two are not both ``shared``).
        """
        if ref_of(spec) != ref:
            raise InvalidTarget(f"{ref} is not the target group of {spec}")
        info = self.describe_group(ref)
        if info.target_type != "ip":
            raise InvalidTarget(
                f"target group {info.name or ref.name} has target type {info.target_type!r}; "
                "negsync registers pod IPs and needs a target group of type 'ip'"
            )
        assert isinstance(spec, AwsTargetGroupTarget)  # ref_of checked it
        self.claim(ref, binding=binding, shared=spec.shared)

    def claim(self, ref: TargetRef, *, binding: BindingKey, shared: bool) -> None:
        """Record that ``binding`` manages ``ref``; OwnershipConflict names the binding holding it."""
        self._claims.claim(check_ref(ref), binding, shared=shared)

    def release(self, binding: BindingKey) -> None:
        """Drop ``binding``'s claim (called when the binding is deleted)."""
        self._claims.release(binding)

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        """Members and health from one DescribeTargetHealth (botocore has no paginator for it).

        Each member's TargetDescription is kept as reported, for :meth:`detach`.
        """
        info = self.describe_group(ref)
        response = self.api.call("elbv2", ref.location, "DescribeTargetHealth", TargetGroupArn=ref.name)
        members, reported = read_target_health(
            response, default_port=info.port, health_check_enabled=info.health_check_enabled
        )
        self._registrations.listed(ref, reported)
        self.health_polls.polled(ref.name)
        return members

    def reported(self, ref: TargetRef) -> dict[TargetEndpoint, ReportedTarget]:
        """The members of ``ref`` as the last DescribeTargetHealth described them."""
        return self._registrations.reported(ref)

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """RegisterTargets, validated first and chunked to 200 (see :mod:`~negsync.providers.aws.registration`)."""
        self._registrations.attach(ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """DeregisterTargets as AWS reported the members, confirmed by a listing where needed."""
        self._registrations.detach(ref, endpoints)

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        """Revoke the binding's security-group rules and release the claim; the group stays (False)."""
        self._networking.release(binding)
        self.release(binding)
        self._registrations.drop_zones(ref, binding)
        return False

    def reconcile_networking(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> str | None:
        """Keep ``spec.networking``'s security-group rules; returns the group kept (None: no section).

        See :mod:`negsync.providers.aws.networking`.  No API call for a binding without the section.
        """
        if not isinstance(spec, AwsTargetGroupTarget):
            return None
        if spec.networking is None or not spec.networking.ingress:
            self._networking.release(binding)
            return None
        ref = ref_of(spec)
        info = self.describe_group(ref)
        members = [TargetEndpoint(canonical_ip(e.ip), e.port) for e in endpoints]
        return self._networking.reconcile(
            region=ref.location, vpc_id=info.vpc_id, binding=binding, networking=spec.networking, endpoints=members
        )
