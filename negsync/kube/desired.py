"""What a binding wants, computed from the caches alone: the reconciler's source.

:class:`DesiredState` answers two questions about a binding key, both pure reads of the caches:
:meth:`DesiredState.problem` — why the binding cannot be reconciled at all (an invalid spec, a
missing Service, a Service without a selector, an unknown port, a target for another provider) —
and :meth:`DesiredState.compute` — the endpoints its targets must hold.  Keeping this apart from
the controller lets benchmarks and tests drive the real computation without a Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from negsync.core.bindings import BindingSpec, GcpNegTarget
from negsync.core.endpoints import DesiredEndpoints, Skipped, desired_endpoints
from negsync.core.model import BindingKey, Endpoint
from negsync.core.records import DesiredBinding
from negsync.errors import ConfigError
from negsync.kube.caches import GATE_PREFIX, Caches, ServiceRecord


class NodeZones(Mapping[str, str]):
    """Node name → zone, read through the node cache without copying it per reconcile."""

    def __init__(self, caches: Caches) -> None:
        self._nodes = caches.nodes

    def __getitem__(self, name: str) -> str:
        node = self._nodes.get(("", name))
        if node is None or not node.zone:
            raise KeyError(name)
        return node.zone

    def __iter__(self) -> Iterator[str]:
        return iter(n.name for n in self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)


@dataclass(frozen=True, slots=True)
class BindingCheck:
    """What :meth:`DesiredState.problem` found: the parsed spec and its Service, or why not.

    ``reason`` is a CamelCase condition reason, empty when the binding can be reconciled; ``spec``
    is None when it cannot be read, ``service`` None when it was not found (or not looked up).
    """

    spec: BindingSpec | None
    service: ServiceRecord | None
    reason: str = ""
    message: str = ""


class DesiredState:
    def __init__(self, *, caches: Caches, provider_name: str) -> None:
        self._caches = caches
        self._provider = provider_name

    def problem(self, key: BindingKey) -> BindingCheck:
        """The binding's spec and Service, and a reason when it cannot be reconciled."""
        record = self._caches.bindings.get((key.namespace, key.name))
        if record is None:
            return BindingCheck(None, None, "NotFound", f"TargetBinding {key} does not exist")
        try:
            spec = record.parsed_spec()
        except ConfigError as exc:
            return BindingCheck(None, None, "InvalidSpec", str(exc))
        if spec.target.kind != self._provider:
            return BindingCheck(spec, None, "ProviderMismatch",
                f"spec.target is for {spec.target.kind!r} but this controller runs --provider={self._provider}")
        service = self._caches.services.get((key.namespace, spec.service_name))
        if service is None:
            return BindingCheck(spec, None, "ServiceNotFound",
                                f"Service {key.namespace}/{spec.service_name} does not exist")
        if not service.has_selector:
            return BindingCheck(spec, service, "ServiceWithoutSelector",
                f"Service {spec.service_name} has no selector: its endpoints are not pods negsync can gate")
        if service.port_named(spec.service_port) is None:
            return BindingCheck(spec, service, "PortNotFound",
                f"Service {spec.service_name} has no port {spec.service_port!r} (spec.serviceRef.port)")
        return BindingCheck(spec, service)

    def compute(self, key: BindingKey) -> DesiredBinding | None:
        """The binding's desired endpoints; None when it cannot be reconciled (see :meth:`problem`)."""
        record = self._caches.bindings.get((key.namespace, key.name))
        if record is None:
            return None
        check = self.problem(key)
        spec, service = check.spec, check.service
        if spec is None or (check.reason and not record.deleting):
            return None
        if record.deleting:
            return DesiredBinding(key=key, spec=spec, deleting=True)
        port = service.port_named(spec.service_port) if service is not None else None
        assert port is not None  # no problem found: the Service exists and has the port
        computed = self.endpoints(key, spec, port.name)
        return DesiredBinding(key=key, spec=spec, endpoints=computed.endpoints, terminating=computed.terminating,
                              skipped=computed.skipped, inputs=self.inputs)

    def inputs(self, endpoint: Endpoint) -> object:
        """The pod and node state an endpoint depends on: a change retries an isolated endpoint at once.

        Only what identifies them and what the cloud sees (UID, IPs, node, labels; the node's zone,
        providerID, subnet) — not our own gate conditions, which we write ourselves.
        """
        pod = self._caches.pods.get((endpoint.pod.namespace, endpoint.pod.name)) if endpoint.pod else None
        node = self._caches.nodes.get(("", endpoint.node)) if endpoint.node else None
        pod_part = None if pod is None else tuple(
            getattr(pod, name, None) for name in ("uid", "ips", "node", "labels", "deleting"))
        return pod_part, node

    def endpoints(self, key: BindingKey, spec: BindingSpec, port_name: str) -> DesiredEndpoints:
        slices = self._caches.slices.by_index("service", (key.namespace, spec.service_name))
        gate = f"{GATE_PREFIX}{key.name}"
        # A not-ready endpoint is registered only while its pod's containers are ready: the
        # readiness probe keeps its say (AWS LBC pkg/backend/endpoint_resolver.go).
        gated = {(p.namespace, p.name) for p in self._caches.pods.by_index("binding", (key.namespace, key.name))
                 if gate in p.gates and p.containers_ready} if spec.readiness_gate else set()
        computed = desired_endpoints(
            slices=slices,
            port_name=port_name,
            ip_family=spec.ip_family,
            gated_pods=gated,
            node_zones=NodeZones(self._caches),
            require_zone=self._provider == "gcp",
        )
        if isinstance(spec.target, GcpNegTarget) and spec.target.subnetwork:
            return self._in_pinned_subnet(computed, spec.target.subnetwork)
        return computed

    def _in_pinned_subnet(self, computed: DesiredEndpoints, subnetwork: str) -> DesiredEndpoints:
        """A binding that pins one subnetwork skips endpoints on nodes of another one.

        GCE accepts only endpoint IPs of the NEG's subnetwork; attaching one from elsewhere is a 400
        that bisection would turn into a blocked pod.  A node without the subnet label is in the
        cluster's default subnetwork, taken to be the pinned one (ingress-gce zonegetter getSubnet).
        """
        pinned = subnetwork.rstrip("/").rsplit("/", 1)[-1]
        keep: list[Any] = []
        skipped = list(computed.skipped)
        for endpoint in computed.endpoints:
            node = self._caches.nodes.get(("", endpoint.node)) if endpoint.node else None
            subnet = node.subnet if node is not None else ""
            if subnet and subnet != pinned:
                skipped.append(Skipped(endpoint.ip, f"node subnet {subnet}, NEG subnet {pinned} (node {endpoint.node})"))
            else:
                keep.append(endpoint)
        if len(keep) == len(computed.endpoints):
            return computed
        return DesiredEndpoints(endpoints=tuple(keep), terminating=computed.terminating, skipped=tuple(skipped))
