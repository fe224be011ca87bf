"""Which TargetBindings select a pod: the one query the webhook and drain-wait share.

A binding selects a pod when it lives in the pod's namespace, its spec is valid and its Service
exists and selects the pod's labels.  Callers narrow further for their own purpose: the webhook
keeps only bindings that want a readiness gate, are not being deleted and whose Service has the
bound port (the controller would never write the gate of any other); drain-wait keeps every one,
deleting or not, because a draining pod must leave all the targets it may still be in.  An
invalid spec is skipped: the controller reports it (InvalidSpec) and reconciles nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from negsync.core.bindings import BindingSpec
from negsync.errors import ConfigError
from negsync.kube.caches import BindingRecord, Key, ServiceRecord

ServiceLookup = Callable[[Key], ServiceRecord | None]


@dataclass(frozen=True, slots=True)
class SelectingBinding:
    """A binding whose Service selects the pod, with its parsed spec and that Service."""

    record: BindingRecord
    spec: BindingSpec
    service: ServiceRecord


def bindings_selecting(*, namespace: str, labels: Mapping[str, str], bindings: Iterable[BindingRecord],
                       services: ServiceLookup) -> Iterator[SelectingBinding]:
    """The bindings of ``namespace`` whose Service selects a pod with ``labels``, in ``bindings``' order."""
    for record in bindings:
        if record.namespace != namespace:
            continue
        try:
            spec = record.parsed_spec()
        except ConfigError:
            continue
        service = services((namespace, spec.service_name))
        if service is not None and service.selects(labels):
            yield SelectingBinding(record=record, spec=spec, service=service)


__all__ = ["SelectingBinding", "ServiceLookup", "bindings_selecting"]
