"""NEG membership: list the endpoints with health, attach and detach batches of at most 500.

* **Listing.** ``listNetworkEndpoints`` with ``healthStatus: SHOW``, paged by
  ``listNetworkEndpoints_next`` (:meth:`ComputeClient.pages`), read by
  :mod:`negsync.providers.gcp.health`.
* **Changes.** attach/detachNetworkEndpoints with one ``requestId`` per logical call, then wait
  for the zonal operation.  The NEG's owner is re-checked first when the last check is old
  (:meth:`NegLifecycle.verify_before_change`); a failed change other than a rejected member
  forgets the check, since the NEG may have been deleted or replaced.
* **404.** A 404 names either the NEG or something the batch references (an instance that was
  deleted).  Only reading the NEG tells them apart: the NEG is there → the batch is at fault
  (:class:`RejectedError`, bisected); gone → :class:`TargetNotFound`, and the reconciler
  re-creates it.
* **Detach of what is gone.** Detaching an endpoint that is no longer attached is a 400 for the
  whole batch; the NEG is re-read and only what is still attached (and not DRAINING) is detached
  again, rather than bisecting for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

from negsync.core.model import Health, TargetEndpoint, TargetRef
from negsync.errors import ProviderError, RejectedError, TargetNotFound
from negsync.providers.gcp.client import ComputeClient
from negsync.providers.gcp.health import members_with_health
from negsync.providers.gcp.naming import parse_location
from negsync.providers.gcp.negs import NegLifecycle
from negsync.providers.gcp.ownership import OwnershipChecks

__all__ = ["MAX_ENDPOINTS_PER_CALL", "NegEndpoints"]

#: attachNetworkEndpoints / detachNetworkEndpoints accept at most this many endpoints per call.
MAX_ENDPOINTS_PER_CALL: Final = 500
#: Page size of listNetworkEndpoints: the most compute v1 allows (``maxResults`` 0-500).
_PAGE_SIZE: Final = 500

_Change = Literal["attachNetworkEndpoints", "detachNetworkEndpoints"]


class NegEndpoints:
    """The endpoints of NEGs: what is attached (with health), attach, detach."""

    def __init__(
        self,
        *,
        client: ComputeClient,
        negs: NegLifecycle,
        ownership: OwnershipChecks,
        health_check_known: Callable[[TargetRef], bool] | None = None,
    ) -> None:
        self._client = client
        self._negs = negs
        self._ownership = ownership
        self._health_check_known = health_check_known

    def members(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        project, zone = parse_location(ref)
        items = [
            item
            for page in self._client.pages(
                project,
                self._client.negs,
                "listNetworkEndpoints",
                what=f"listing {ref}",
                project=project,
                zone=zone,
                networkEndpointGroup=ref.name,
                body={"healthStatus": "SHOW"},
                maxResults=_PAGE_SIZE,
            )
            for item in page.get("items") or ()
        ]
        known = self._health_check_known
        return members_with_health(items, health_check_known=(lambda: known(ref)) if known else None)

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._change("attachNetworkEndpoints", ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        try:
            self._change("detachNetworkEndpoints", ref, endpoints)
        except RejectedError:
            # A DRAINING entry is already on its way out; detaching it again would fail the same way.
            present = {(m.ip, m.port) for m, h in self.members(ref).items() if h is not Health.DRAINING}
            still = [m for m in endpoints if (m.ip, m.port) in present]
            if len(still) == len(endpoints):
                raise
            if still:
                self._change("detachNetworkEndpoints", ref, still)

    def _change(self, method: _Change, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        if not endpoints:
            return
        if len(endpoints) > MAX_ENDPOINTS_PER_CALL:
            raise RejectedError(f"{len(endpoints)} endpoints in one call; the limit is {MAX_ENDPOINTS_PER_CALL}")
        project, zone = parse_location(ref)
        self._negs.verify_before_change(ref)
        body = {
            "networkEndpoints": [
                {"ipAddress": m.ip, "port": m.port, **({"instance": m.instance} if m.instance else {})}
                for m in endpoints
            ]
        }
        request = getattr(self._client.negs, method)(
            project=project, zone=zone, networkEndpointGroup=ref.name, body=body, requestId=self._client.request_id()
        )
        what = f"{method} ({len(endpoints)}) on {ref}"
        try:
            operation = self._client.execute(project, request, what=what)
            self._client.wait(project, zone, operation, what=what, op_kind="endpoints")
        except TargetNotFound as exc:
            if self._negs.get(project, zone, ref.name, missing_ok=True) is not None:
                raise RejectedError(f"{exc} (the NEG exists: a referenced instance is missing)") from exc
            self._ownership.invalidate(ref)
            raise
        except ProviderError as exc:
            if not isinstance(exc, RejectedError):  # a rejected member says nothing about the NEG
                self._ownership.invalidate(ref)
            raise
