"""What a binding wants, computed from the caches alone: the reconciler's source.

:class:`DesiredState` answers two questions about a binding key, both pure reads of the caches:
:meth:`DesiredState.problem` — why the binding cannot be reconciled at all (an invalid spec, a
missing Service, a Service without a selector, an unknown port, a target for another provider) —
and :meth:`DesiredState.compute` — the endpoints its targets must hold.  Keeping this apart from
the controller lets benchmarks and tests drive the real computation without a Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from negsync.core.bindings import BindingSpec, parse_binding_spec
from negsync.core.endpoints import DesiredEndpoints, desired_endpoints
from negsync.core.model import BindingKey
from negsync.core.reconciling import DesiredBinding
from negsync.errors import ConfigError
from negsync.kube.caches import GATE_PREFIX, Caches


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


class DesiredState:
    def __init__(self, *, caches: Caches, provider_name: str) -> None:
        self._caches = caches
        self._provider = provider_name

    def problem(self, key: BindingKey) -> tuple[BindingSpec | None, Any, str, str]:
        """(spec, service, reason, message); reason empty when the binding can be reconciled."""
        record = self._caches.bindings.get((key.namespace, key.name))
        if record is None:
            return None, None, "NotFound", f"TargetBinding {key} does not exist"
        try:
            spec = parse_binding_spec(record.spec)
        except ConfigError as exc:
            return None, None, "InvalidSpec", str(exc)
        if spec.target.kind != self._provider:
            return spec, None, "ProviderMismatch", (
                f"spec.target is for {spec.target.kind!r} but this controller runs --provider={self._provider}")
        service = self._caches.services.get((key.namespace, spec.service_name))
        if service is None:
            return spec, None, "ServiceNotFound", f"Service {key.namespace}/{spec.service_name} does not exist"
        if not service.has_selector:
            return spec, service, "ServiceWithoutSelector", (
                f"Service {spec.service_name} has no selector: its endpoints are not pods negsync can gate")
        if service.port_named(spec.service_port) is None:
            return spec, service, "PortNotFound", (
                f"Service {spec.service_name} has no port {spec.service_port!r} (spec.serviceRef.port)")
        return spec, service, "", ""

    def compute(self, key: BindingKey) -> DesiredBinding | None:
        """The binding's desired endpoints; None when it cannot be reconciled (see :meth:`problem`)."""
        record = self._caches.bindings.get((key.namespace, key.name))
        if record is None:
            return None
        spec, service, reason, _ = self.problem(key)
        if spec is None or (reason and not record.deleting):
            return None
        if record.deleting:
            return DesiredBinding(key=key, spec=spec, deleting=True)
        port = service.port_named(spec.service_port)
        computed = self.endpoints(key, spec, port.name)
        return DesiredBinding(key=key, spec=spec, endpoints=computed.endpoints, terminating=computed.terminating,
                              skipped=computed.skipped)

    def endpoints(self, key: BindingKey, spec: BindingSpec, port_name: str) -> DesiredEndpoints:
        slices = self._caches.slices.by_index("service", (key.namespace, spec.service_name))
        gate = f"{GATE_PREFIX}{key.name}"
        # A not-ready endpoint is registered only while its pod's containers are ready: the
        # readiness probe keeps its say (AWS LBC pkg/backend/endpoint_resolver.go).
        gated = {(p.namespace, p.name) for p in self._caches.pods.by_index("binding", (key.namespace, key.name))
                 if gate in p.gates and p.containers_ready} if spec.readiness_gate else set()
        return desired_endpoints(
            slices=slices,
            port_name=port_name,
            ip_family=spec.ip_family,
            gated_pods=gated,
            node_zones=NodeZones(self._caches),
            require_zone=self._provider == "gcp",
        )
