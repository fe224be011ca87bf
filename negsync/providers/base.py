"""The contract between the sync engine and a load balancer: :class:`TargetProvider`.

A provider knows one cloud's membership API and nothing about Kubernetes.  The reconciler asks
it where each desired endpoint belongs (:meth:`TargetProvider.targets_for`), makes sure those
targets exist, reads their members with health, and attaches/detaches batches of at most
:attr:`TargetProvider.max_batch_size`.  Calls block (the SDKs are blocking); the reconciler runs
them on worker threads.  Failures are raised as the :mod:`negsync.errors` hierarchy::

    ProviderError
     ├── TransientError     retry with back-off (throttled, 5xx, time-out)
     ├── RejectedError      HTTP 400 for the batch: the reconciler bisects it to find the bad members
     ├── OwnershipConflict  the target exists but is not ours: report, never modify
     ├── InvalidTarget      cannot be used as configured (e.g. an ``instance`` target group)
     └── TargetNotFound

This module imports no SDK, so the pure core may depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from negsync.core.bindings import TargetSpec
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import (
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    RejectedError,
    TargetNotFound,
    TransientError,
)

__all__ = [
    "InvalidTarget",
    "OwnershipConflict",
    "OwnershipStore",
    "ProviderError",
    "RejectedError",
    "TargetNotFound",
    "TargetProvider",
    "TransientError",
]


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


class MemoryOwnershipStore:
    """An :class:`OwnershipStore` kept in a dict; the controller uses a ConfigMap-backed one."""

    def __init__(self) -> None:
        self._owned: dict[tuple[BindingKey, TargetRef], frozenset[TargetEndpoint]] = {}

    def owned(self, binding: BindingKey, ref: TargetRef) -> frozenset[TargetEndpoint]:
        return self._owned.get((binding, ref), frozenset())

    def remember(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        self._owned[(binding, ref)] = self.owned(binding, ref) | frozenset(endpoints)

    def forget(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        self._owned[(binding, ref)] = self.owned(binding, ref) - frozenset(endpoints)

