"""Which members of a shared target this cluster registered, kept in a ConfigMap per binding.

With ``awsTargetGroup.shared: true`` a target group holds members from other clusters or tools;
negsync may only ever deregister what it registered itself.  The record lives in a ConfigMap
``negsync-owned-<namespace>-<binding>`` in the controller's own namespace (so RBAC on ConfigMaps
stays namespaced) and is written *before* RegisterTargets: if the process dies after the call
but before it hears the answer, the member is still on record and will be cleaned up.  On the
first run with no record nothing is deregistered.

Writes are optimistic (PUT with the resourceVersion we read; 409 → re-read and retry), so two
replicas racing through a leader change cannot lose each other's entries.  Reads are cached
only while this process leads: the controller calls :meth:`ConfigMapOwnershipStore.invalidate`
each time it starts leading, because while another replica led it may have registered members
we never heard of (leadership A→B→A must not forget B's registrations).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from kubernetes.client.exceptions import ApiException

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.errors import TransientError

log = logging.getLogger("negsync.ownership")


def configmap_name(binding: BindingKey) -> str:
    raw = f"negsync-owned-{binding.namespace}-{binding.name}"
    if len(raw) <= 253:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    # A binding's name is a DNS-1123 subdomain and may hold dots: a cut just after one would leave
    # ".-" — an invalid object name (apimachinery IsDNS1123Subdomain), a 422 on every write.
    return f"{raw[:242].rstrip('.-')}-{digest}"


def _data_key(ref: TargetRef) -> str:
    # ConfigMap keys allow [-._a-zA-Z0-9]; an ARN does not fit, its hash does.
    return "target-" + hashlib.sha256(str(ref).encode()).hexdigest()[:20]


def _encode(members: Iterable[TargetEndpoint]) -> str:
    return json.dumps(sorted([m.ip, m.port, m.instance] for m in members))


def _decode(text: str) -> frozenset[TargetEndpoint]:
    return frozenset(TargetEndpoint(str(ip), int(port), str(instance)) for ip, port, instance in json.loads(text))


class ConfigMapOwnershipStore:
    def __init__(self, *, core_api: Any, namespace: str, request_timeout: float = 10.0, attempts: int = 5) -> None:
        self._core = core_api
        self._namespace = namespace
        self._timeout = request_timeout
        self._attempts = attempts
        self._lock = threading.Lock()
        self._cache: dict[tuple[BindingKey, TargetRef], frozenset[TargetEndpoint]] = {}

    def owned(self, binding: BindingKey, ref: TargetRef) -> frozenset[TargetEndpoint]:
        with self._lock:
            cached = self._cache.get((binding, ref))
        if cached is not None:
            return cached
        data, _ = self._read(binding)
        members = _decode(data[_data_key(ref)]) if _data_key(ref) in data else frozenset()
        with self._lock:
            self._cache[(binding, ref)] = members
        return members

    def invalidate(self) -> None:
        """Forget every cached record: the next read goes to the API (see the module docstring)."""
        with self._lock:
            self._cache.clear()

    def remember(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        added = frozenset(endpoints)
        self._update(binding, ref, lambda current: current | added)

    def forget(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        removed = frozenset(endpoints)
        self._update(binding, ref, lambda current: current - removed)

    def _read(self, binding: BindingKey) -> tuple[dict[str, str], Any]:
        try:
            cm = self._core.read_namespaced_config_map(configmap_name(binding), self._namespace, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                return {}, None
            raise TransientError(f"reading ownership record: HTTP {exc.status}") from None
        return dict(cm.data or {}), cm

    def _update(self, binding: BindingKey, ref: TargetRef, change: Any) -> None:
        name = configmap_name(binding)
        for _ in range(self._attempts):
            data, cm = self._read(binding)
            current = _decode(data[_data_key(ref)]) if _data_key(ref) in data else frozenset()
            members = change(current)
            data[_data_key(ref)] = _encode(members)
            if cm is not None and all(not _decode(value) for value in data.values()):
                if self._delete(name, cm):
                    with self._lock:
                        self._cache[(binding, ref)] = members
                    return
                continue  # changed under us: re-read
            if cm is None and not members:
                with self._lock:
                    self._cache[(binding, ref)] = members
                return  # nothing to record, nothing recorded
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": self._namespace,
                    "labels": {"app.kubernetes.io/managed-by": "negsync"},
                    "annotations": {"negsync.io/binding": str(binding)},
                },
                "data": data,
            }
            try:
                if cm is None:
                    self._core.create_namespaced_config_map(self._namespace, body, _request_timeout=self._timeout)
                else:
                    body["metadata"]["resourceVersion"] = cm.metadata.resource_version
                    self._core.replace_namespaced_config_map(name, self._namespace, body, _request_timeout=self._timeout)
            except ApiException as exc:
                if exc.status == 409:
                    continue  # someone else wrote first: re-read and re-apply our change
                raise TransientError(f"writing ownership record: HTTP {exc.status}") from None
            with self._lock:
                self._cache[(binding, ref)] = members
            return
        raise TransientError(f"ownership record {name} kept changing under us")

    def _delete(self, name: str, cm: Any) -> bool:
        """Delete an emptied record if unchanged since read; False when it changed (retry).

        A record that holds no member (binding deleted or scaled to zero) would otherwise outlive
        its binding forever; the resourceVersion precondition keeps a member another replica
        added since our read.
        """
        try:
            self._core.delete_namespaced_config_map(
                name, self._namespace, _request_timeout=self._timeout,
                body={"preconditions": {"resourceVersion": cm.metadata.resource_version}})
        except ApiException as exc:
            if exc.status == 404:
                return True
            if exc.status == 409:
                return False
            raise TransientError(f"deleting ownership record: HTTP {exc.status}") from None
        return True
