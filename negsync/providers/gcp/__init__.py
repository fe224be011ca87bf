"""The GCP provider package: zonal ``GCE_VM_IP_PORT`` NEGs through the Compute API (compute v1).

One module per concept (the design of each is in its docstring):

* ``provider`` — :class:`GcpProvider`, the :class:`~negsync.providers.base.TargetProvider`:
  which NEG each endpoint belongs to, and the protocol methods;
* ``naming`` — NEG names, target references, resource paths (pure);
* ``client`` — credentials, the paced per-thread googleapiclient client, operation waits, paging;
* ``errors`` — HTTP and operation errors as GCE means them;
* ``ownership`` — the ownership description of a NEG and when it was last checked;
* ``negs`` — the NEG lifecycle: get, insert, delete, the aggregated start-up listing;
* ``endpoints`` — members, attach and detach; ``health`` — health read as GKE reads it.

Only this package imports googleapiclient, google.auth and httplib2; it never imports the AWS
provider (shared code lives in :mod:`negsync.providers.base` and :mod:`negsync.providers.ratelimit`).
"""

from __future__ import annotations

from negsync.providers.gcp.endpoints import MAX_ENDPOINTS_PER_CALL
from negsync.providers.gcp.errors import QUOTA_RETRY_AFTER
from negsync.providers.gcp.health import health_from_item
from negsync.providers.gcp.naming import MAX_NAME_LENGTH, neg_name, parse_location
from negsync.providers.gcp.ownership import NegOwner
from negsync.providers.gcp.provider import DEFAULT_RATE_LIMIT, GcpProvider

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "MAX_ENDPOINTS_PER_CALL",
    "MAX_NAME_LENGTH",
    "QUOTA_RETRY_AFTER",
    "GcpProvider",
    "NegOwner",
    "health_from_item",
    "neg_name",
    "parse_location",
]
