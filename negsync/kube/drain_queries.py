"""Which load-balancer targets hold a pod: the questions ``/drain-wait`` asks (:mod:`negsync.draining`).

:mod:`negsync.draining` knows nothing of Kubernetes: it is handed ``pod_ips`` and ``holds``.
They are answered here, from the caches: the pod's IPs, the bindings whose Service selects the
pod (:func:`negsync.kube.selection.bindings_selecting`, the webhook's query too), and whether a
target of one of them still holds an IP — the leader asks its reconciler's view, a standby asks
the provider (read-only, through :class:`negsync.draining.ProviderMembership`'s TTL cache).
"""

from __future__ import annotations

from collections.abc import Callable

from negsync.core.bindings import BindingSpec
from negsync.core.clock import Clock
from negsync.core.engine import Engine
from negsync.core.model import BindingKey, TargetRef
from negsync.core.ports import TargetProvider
from negsync.draining import DrainTracker, DrainWait, ProviderMembership
from negsync.kube.caches import Caches
from negsync.kube.selection import bindings_selecting


class DrainQueries:
    """Pod → IPs, bindings and targets, from the caches; ``engine()`` is the leader's engine or None."""

    def __init__(self, *, caches: Caches, provider: TargetProvider, engine: Callable[[], Engine | None]) -> None:
        self._caches = caches
        self._provider = provider
        self._engine = engine
        self._standby_membership = ProviderMembership(provider=provider, targets_of_pod=self.targets_of_pod)

    def pod_ips(self, namespace: str, name: str) -> tuple[str, ...] | None:
        pod = self._caches.pods.get((namespace, name))
        return None if pod is None else pod.ips

    def bindings_of_pod(self, namespace: str, name: str) -> list[tuple[BindingKey, BindingSpec]]:
        """Bindings whose Service selects the pod (the targets a draining pod must leave)."""
        pod = self._caches.pods.get((namespace, name))
        if pod is None:
            return []
        return [(BindingKey(namespace, found.record.name), found.spec) for found in bindings_selecting(
            namespace=namespace, labels=pod.label_map, bindings=self._caches.bindings.values(),
            services=self._caches.services.get)]

    def holds(self, namespace: str, name: str, ip: str) -> bool:
        """Whether any target of the pod's bindings still holds ``ip`` (unknown counts as yes)."""
        bindings = self.bindings_of_pod(namespace, name)
        if not bindings:
            return False
        engine = self._engine()
        if engine is not None:
            return engine.reconciler.holds(ip, keys=[key for key, _ in bindings])
        return self._standby_membership(namespace, name, ip)

    def targets_of_pod(self, namespace: str, name: str) -> list[TargetRef]:
        refs: list[TargetRef] = []
        for key, spec in self.bindings_of_pod(namespace, name):
            refs.extend(self._provider.existing_targets(binding=key, spec=spec.target))
        return refs

    def drain_wait(self, *, tracker: DrainTracker, clock: Clock, margin: float | None = None,
                   max_waiters: int = 256, max_waiters_per_namespace: int | None = 64) -> DrainWait:
        """The ``/drain-wait`` route over these queries."""
        return DrainWait(pod_ips=self.pod_ips, holds=self.holds, tracker=tracker, clock=clock, margin=margin,
                         max_waiters=max_waiters, max_waiters_per_namespace=max_waiters_per_namespace)


__all__ = ["DrainQueries"]
