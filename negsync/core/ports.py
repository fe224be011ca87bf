"""The ports of the core: what the reconciler needs from a load balancer and from an ownership record.

The core defines these protocols and the outer layers implement them (ports and adapters), so the
core never imports a provider, the kube layer or an SDK:

* :class:`TargetProvider` — one cloud's membership API (``providers/gcp``, ``providers/aws``,
  ``providers/memory``).  The reconciler asks it where each desired endpoint belongs
  (:meth:`TargetProvider.targets_for`), makes sure those targets exist, reads their members with
  health, and attaches/detaches batches of at most :attr:`TargetProvider.max_batch_size`.  Calls
  block (the SDKs are blocking); the reconciler runs them on worker threads.
* :class:`OwnershipStore` — which members of a shared target this cluster registered
  (``kube/ownership`` keeps them in ConfigMaps; ``providers/memory`` in a dict).

A provider raises the :mod:`negsync.errors` hierarchy, which says what the caller should do next::

    ProviderError
     ├── TransientError     retry with back-off (throttled, 5xx, time-out)
     ├── RejectedError      HTTP 400 for the batch: the reconciler bisects it to find the bad members
     ├── OwnershipConflict  the target exists but is not ours: report, never modify
     ├── InvalidTarget      cannot be used as configured (e.g. an ``instance`` target group)
     └── TargetNotFound

Optional capabilities are looked up by name rather than declared here, because only one provider
has each: ``draining_is_member`` (GCE NEGs list DRAINING endpoints as members),
``health_poll_interval(ref)`` (AWS stretches health polls to fit its Describe* budget),
``reconcile_networking`` and ``target_link`` (used by the controller).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from negsync.core.bindings import TargetSpec
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef


class TargetProvider(Protocol):
    """One cloud's load-balancer membership API."""

    @property
    def name(self) -> str:
        """Short provider name: ``gcp``, ``aws`` or ``memory``."""
        ...

    @property
    def max_batch_size(self) -> int:
        """Most endpoints one attach or detach call may carry (NEG 500, ELBv2 200)."""
        ...

    def targets_for(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> dict[TargetRef, set[TargetEndpoint]]:
        """Group desired endpoints by the target that must hold them (pure, no API call)."""
        ...

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        """Targets this binding already owns in the cloud (found after a restart, or for cleanup)."""
        ...

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        """Create the target if the provider manages its lifecycle; check it is usable and ours."""
        ...

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        """Current members with the load balancer's view of their health."""
        ...

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None: ...

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None: ...

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        """Remove a target the binding created; False when it must be left in place (still in use)."""
        ...


class OwnershipStore(Protocol):
    """Which members of a shared target this cluster registered (AWS ``shared: true``).

    ``remember`` is called BEFORE an attach, so a lost response can never leak a member that
    nobody would later detach; ``forget`` after a detach succeeds.
    """

    def owned(self, binding: BindingKey, ref: TargetRef) -> frozenset[TargetEndpoint]: ...

    def remember(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None: ...

    def forget(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None: ...
