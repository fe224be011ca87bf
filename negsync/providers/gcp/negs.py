"""The NEG lifecycle: read, create with its ownership description, list the cluster's NEGs, delete.

* **Create-or-adopt.** ``get`` first; a 404 means ``insert`` (``GCE_VM_IP_PORT``, the binding's
  network, the subnetwork of the NEG, the ownership description of
  :mod:`negsync.providers.gcp.ownership`) and read again.  A 409 on insert (another replica, or
  a lost response) is not an error: the read that follows decides.
* **Start-up adoption.** One ``aggregatedList`` per project, filtered on the cluster's name
  marker and paged with ``aggregatedList_next``, serves every binding's adoption instead of one
  listing per binding (issue 18: 5,000 bindings were 5,000 calls at 10/s).  It is reused for
  ``LISTING_TTL`` seconds and kept current with our own inserts and deletes, so only a NEG
  another process creates in that window can be missed.  One lock makes the workers starting
  together wait for one listing, not one each.
* **Deletion.** A NEG still referenced by a backend service (``resourceInUseByAnotherResource``)
  is left in place and ``delete`` returns ``False``, which the reconciler reports as *retained*.
* **Subnetworks.** A NEG of a non-default subnetwork (one NEG per zone and subnetwork) is created
  in the subnetwork recorded for its ref (:meth:`NegLifecycle.note_subnet`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Final

from negsync.core.bindings import GcpNegTarget
from negsync.core.clock import Clock
from negsync.core.model import BindingKey, TargetRef
from negsync.errors import TargetNotFound
from negsync.providers.gcp.client import ComputeClient
from negsync.providers.gcp.errors import AlreadyExists, InUse
from negsync.providers.gcp.naming import (
    cluster_marker,
    last_segment,
    network_path,
    parse_location,
    subnetwork_path,
)
from negsync.providers.gcp.ownership import NegOwner, OwnershipChecks

__all__ = ["LISTING_TTL", "ListedNeg", "NegLifecycle"]

log = logging.getLogger(__name__)

#: How long one aggregated listing of the cluster's NEGs serves start-up adoption (seconds).
LISTING_TTL: Final = 60.0
#: Page size of the aggregated listing: the most compute v1 allows (``maxResults`` 0-500).
_PAGE_SIZE: Final = 500


@dataclass(frozen=True, slots=True)
class ListedNeg:
    """One NEG as the aggregated listing showed it."""

    zone: str
    description: str
    subnetwork: str


class NegLifecycle:
    """get / insert / delete / aggregatedList of NEGs, with the ownership checks around them."""

    def __init__(self, *, client: ComputeClient, ownership: OwnershipChecks, cluster_uid: str, clock: Clock) -> None:
        self._client = client
        self._ownership = ownership
        self._cluster_uid = cluster_uid
        self._clock = clock
        self._lock = threading.Lock()
        self._listing_lock = threading.Lock()
        self._listings: dict[str, tuple[float, dict[str, list[ListedNeg]]]] = {}
        self._subnets: dict[TargetRef, str] = {}  # NEGs of a non-default subnetwork: its name

    def note_subnet(self, ref: TargetRef, subnetwork: str) -> None:
        """``ref`` is the NEG of a non-default subnetwork: create it there."""
        with self._lock:
            self._subnets[ref] = subnetwork

    def get(self, project: str, zone: str, name: str, *, missing_ok: bool) -> dict[str, Any] | None:
        request = self._client.negs.get(project=project, zone=zone, networkEndpointGroup=name)
        try:
            neg: dict[str, Any] = self._client.execute(project, request, what=f"reading NEG {project}/{zone}/{name}")
            return neg
        except TargetNotFound:
            if missing_ok:
                return None
            raise

    def get_or_create(self, ref: TargetRef, *, binding: BindingKey, spec: GcpNegTarget) -> dict[str, Any]:
        """The NEG of ``ref``, created first if missing; checked to be ``binding``'s."""
        project, zone = parse_location(ref)
        self._ownership.assign(ref, binding)
        neg = self.get(project, zone, ref.name, missing_ok=True)
        if neg is None:
            self._insert(ref, project, zone, binding, spec)
            neg = self.get(project, zone, ref.name, missing_ok=False)
            assert neg is not None
        self._ownership.check(ref, neg, binding)
        return neg

    def verify_before_change(self, ref: TargetRef) -> None:
        """Re-read the NEG's owner if the last check is too old (or a change failed since)."""
        if not self._ownership.due(ref):
            return
        project, zone = parse_location(ref)
        neg = self.get(project, zone, ref.name, missing_ok=False)
        assert neg is not None
        self._ownership.verify(ref, neg)

    def delete(self, ref: TargetRef, *, binding: BindingKey) -> bool:
        """Delete the binding's NEG; False when a backend service still uses it (left in place)."""
        project, zone = parse_location(ref)
        neg = self.get(project, zone, ref.name, missing_ok=True)
        if neg is None:
            self._forget(ref)
            return True
        self._ownership.check(ref, neg, binding)
        request = self._client.negs.delete(
            project=project, zone=zone, networkEndpointGroup=ref.name, requestId=self._client.request_id()
        )
        try:
            operation = self._client.execute(project, request, what=f"deleting {ref}")
            self._client.wait(project, zone, operation, what=f"deleting {ref}", op_kind="delete")
        except InUse as exc:
            log.warning("%s is still used by a backend service; left in place: %s", ref, exc)
            return False
        except TargetNotFound:
            pass
        self._forget(ref)
        return True

    def cluster_negs(self, project: str) -> dict[str, list[ListedNeg]]:
        """name → every NEG of that name in ``project`` named like this cluster's (see the module docstring)."""
        with self._listing_lock:  # the workers starting together wait for one listing, not one each
            now = self._clock.now()
            with self._lock:
                cached = self._listings.get(project)
            if cached is not None and 0 <= now - cached[0] < LISTING_TTL:
                return cached[1]
            return self._list_cluster_negs(project, now)

    def _list_cluster_negs(self, project: str, now: float) -> dict[str, list[ListedNeg]]:
        found: dict[str, list[ListedNeg]] = {}
        pages = self._client.pages(
            project,
            self._client.negs,
            "aggregatedList",
            what=f"listing NEGs in {project}",
            project=project,
            filter=f'name eq ".*-{cluster_marker(self._cluster_uid)}-.*"',
            maxResults=_PAGE_SIZE,
        )
        for page in pages:
            for scope in (page.get("items") or {}).values():
                for neg in scope.get("networkEndpointGroups") or ():
                    found.setdefault(str(neg.get("name")), []).append(
                        ListedNeg(
                            last_segment(neg.get("zone")),
                            str(neg.get("description") or ""),
                            last_segment(neg.get("subnetwork")),
                        )
                    )
        with self._lock:
            self._listings[project] = (now, found)
        return found

    def _listed(self, ref: TargetRef, description: str | None, subnetwork: str = "") -> None:
        """Keep the start-up listing current with our own insert (a description) or delete (None)."""
        project, zone = parse_location(ref)
        with self._lock:
            cached = self._listings.get(project)
            if cached is None:
                return
            negs = [n for n in cached[1].get(ref.name, []) if n.zone != zone]
            if description is not None:
                negs.append(ListedNeg(zone, description, subnetwork))
            cached[1][ref.name] = negs

    def _insert(self, ref: TargetRef, project: str, zone: str, binding: BindingKey, spec: GcpNegTarget) -> None:
        body: dict[str, Any] = {
            "name": ref.name,
            "networkEndpointType": "GCE_VM_IP_PORT",
            "network": network_path(project, spec.network),
            "description": NegOwner(self._cluster_uid, binding.namespace, binding.name).description(),
        }
        with self._lock:
            subnetwork = self._subnets.get(ref) or spec.subnetwork
        if subnetwork:
            body["subnetwork"] = subnetwork_path(project, zone, subnetwork)
        request = self._client.negs.insert(project=project, zone=zone, body=body, requestId=self._client.request_id())
        try:
            operation = self._client.execute(project, request, what=f"creating {ref}", conflict_ok=True)
            self._client.wait(project, zone, operation, what=f"creating {ref}", op_kind="insert")
            self._listed(ref, body["description"], last_segment(body.get("subnetwork")))
            log.info("created NEG %s for binding %s", ref, binding)
        except AlreadyExists:
            pass  # created concurrently (another replica, or a lost response): the GET decides

    def _forget(self, ref: TargetRef) -> None:
        self._listed(ref, None)
        self._ownership.forget(ref)
