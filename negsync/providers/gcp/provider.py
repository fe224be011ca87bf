"""The GCP provider: one zonal ``GCE_VM_IP_PORT`` network endpoint group (NEG) per zone and subnetwork.

This is negsync's counterpart of the GKE NEG controller, usable on self-managed clusters on GCE
too.  A TargetBinding with ``spec.target.gcpNeg`` owns one NEG per zone that has endpoints (plus
every zone listed in ``zones``, created even while empty so a backend service can reference it
from day one).  The generic reconciler (:mod:`negsync.core.reconciling`) computes diffs, cuts
them into batches of :data:`MAX_ENDPOINTS_PER_CALL` and bisects rejected batches;
:class:`GcpProvider` maps endpoints to NEGs and composes the package's parts:

* :mod:`~negsync.providers.gcp.naming` — NEG names and ``TargetRef("gcp", "<project>/<zone>",
  "<name>")`` (pure);
* :mod:`~negsync.providers.gcp.client` — credentials, the paced per-thread client, operation
  waits, paging with ``*_next``;
* :mod:`~negsync.providers.gcp.errors` — HTTP and operation errors as GCE means them;
* :mod:`~negsync.providers.gcp.ownership` — the ownership description and when it was checked;
* :mod:`~negsync.providers.gcp.negs` — get / insert / delete / the aggregated start-up listing;
* :mod:`~negsync.providers.gcp.endpoints` and :mod:`~negsync.providers.gcp.health` — members with
  health, attach and detach.

Mapping endpoints to NEGs (here):

* **Subnetworks.** One NEG per (zone, subnetwork): endpoints on nodes labelled with another
  subnetwork (``subnet_for_node``; ingress-gce's ``cloud.google.com/gke-node-pool-subnet``) go to
  a NEG named with a subnet hash (ingress-gce ``NonDefaultSubnetNEG``), created in that
  subnetwork.  Every NEG name of a binding ends with the binding hash, which is how
  :meth:`GcpProvider.existing_targets` finds them all.
* **Instances.** A ``GCE_VM_IP_PORT`` endpoint names its VM.  The instance is
  ``instance_for_node(node)`` when the kube layer passes such a lookup (it derives it from the
  Node's ``spec.providerID`` = ``gce://<project>/<zone>/<instance>``), else the node name, which
  equals the instance name on GCE in practice (GKE and kubeadm-on-GCE both name nodes after the
  VM's hostname).  Endpoints without a zone or node cannot be placed and are skipped.
* **Deletion.** :meth:`GcpProvider.delete_target` runs only once the reconciler has detached
  every member; a NEG still used by a backend service is retained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from negsync.core.bindings import GcpNegTarget, TargetSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import ConfigError, InvalidTarget
from negsync.providers.gcp.client import ComputeClient, resolve_credentials
from negsync.providers.gcp.endpoints import MAX_ENDPOINTS_PER_CALL, NegEndpoints
from negsync.providers.gcp.naming import binding_hash, last_segment, location, neg_name
from negsync.providers.gcp.negs import NegLifecycle
from negsync.providers.gcp.ownership import NegOwner, OwnershipChecks
from negsync.providers.ratelimit import TokenBucket

__all__ = ["DEFAULT_RATE_LIMIT", "GcpProvider"]

log = logging.getLogger(__name__)

#: (requests per second, burst) per project; the Compute API's default NEG quotas are per minute
#: and per project, shared by every controller in it, so negsync stays well below them.
DEFAULT_RATE_LIMIT: Final = (10.0, 20)


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
        clock = clock or RealClock()
        self._instance_for_node = instance_for_node
        self._subnet_for_node = subnet_for_node
        self.client = ComputeClient(
            credentials=resolve_credentials(
                credentials=credentials, anonymous=anonymous, compute_endpoint=compute_endpoint
            ),
            compute_endpoint=compute_endpoint,
            num_retries=num_retries,
            operation_timeout=operation_timeout,
            rate_limit=rate_limit,
            clock=clock,
            http_timeout=http_timeout,
        )
        self._ownership = OwnershipChecks(cluster_uid=cluster_uid, ttl=ownership_ttl, clock=clock)
        self._negs = NegLifecycle(client=self.client, ownership=self._ownership, cluster_uid=cluster_uid, clock=clock)
        self._endpoints = NegEndpoints(
            client=self.client, negs=self._negs, ownership=self._ownership, health_check_known=health_check_known
        )

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
        return "" if subnet == last_segment(spec.subnetwork) else subnet

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
        skipped = 0
        for endpoint in endpoints:
            instance = self.instance_of(endpoint)
            if not endpoint.zone or not instance:
                skipped += 1  # a NEG endpoint needs its VM and the VM's zone
                continue
            subnet = self.subnet_of(endpoint, gcp)
            ref = self.ref(binding, gcp, endpoint.zone, subnet)
            if subnet:
                self._negs.note_subnet(ref, subnet)
            groups.setdefault(ref, set()).add(TargetEndpoint(endpoint.ip, endpoint.port, instance))
        if skipped:
            log.warning("binding %s: %d endpoint(s) without zone or instance skipped", binding, skipped)
        for ref in groups:
            self._ownership.assign(ref, binding)
        return groups

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        gcp = self._spec(spec)
        name = self.neg_name(binding, gcp)
        suffix = binding_hash(cluster_uid=self._cluster_uid, binding=binding)
        mine = NegOwner(self._cluster_uid, binding.namespace, binding.name)
        refs: list[TargetRef] = []
        for found, negs in self._negs.cluster_negs(gcp.project).items():
            # Every NEG of the binding ends with its hash, whatever its subnetwork; the description
            # decides (someone else's NEG under our name is not adopted; ensure_target reports it).
            if not found.endswith(f"-{suffix}"):
                continue
            for listed in negs:
                if NegOwner.parse(listed.description) != mine:
                    continue
                found_ref = TargetRef("gcp", location(gcp.project, listed.zone), found)
                refs.append(found_ref)
                if found != name and listed.subnetwork:
                    self._negs.note_subnet(found_ref, listed.subnetwork)
        for ref in refs:
            self._ownership.assign(ref, binding)
        return sorted(refs)

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        gcp = self._spec(spec)
        neg = self._negs.get_or_create(ref, binding=binding, spec=gcp)
        if neg.get("networkEndpointType", "GCE_VM_IP_PORT") != "GCE_VM_IP_PORT":
            raise InvalidTarget(f"{ref} is of type {neg.get('networkEndpointType')}, not GCE_VM_IP_PORT")
        if last_segment(neg.get("network")) != last_segment(gcp.network):
            # A NEG's network is immutable: the binding must be deleted to move it.
            raise InvalidTarget(
                f"{ref} is in network {last_segment(neg.get('network'))!r}, "
                f"the binding asks for {last_segment(gcp.network)!r}"
            )

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        return self._endpoints.members(ref)

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._endpoints.attach(ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._endpoints.detach(ref, endpoints)

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        return self._negs.delete(ref, binding=binding)

    # -- test and metrics seams ---------------------------------------------------------------
    def bucket(self, project: str) -> TokenBucket:
        """The pacing bucket of ``project`` (created on first use)."""
        return self.client.bucket(project)

    @staticmethod
    def _spec(spec: TargetSpec) -> GcpNegTarget:
        if not isinstance(spec, GcpNegTarget):
            raise InvalidTarget(f"the GCP provider cannot manage a {type(spec).__name__}")
        return spec
