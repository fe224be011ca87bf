"""What a Compute API failure means for negsync: an ``HttpError`` or a failed operation → :mod:`negsync.errors`.

The reconciler acts on outcomes, not on codes; this module is the one place that reads GCE's.
Errors as GCE means them (terraform-provider-google ``google/transport/error_retry_predicates.go``,
ingress-gce ``pkg/neg/syncers/transaction.go``):

* 429, 5xx and 403 ``rateLimitExceeded``/``userRateLimitExceeded`` that survive the client's
  own retries → :class:`TransientError` (with the server's ``Retry-After`` if any).
* 400 ``resourceNotReady`` (operation error ``RESOURCE_NOT_READY``) is transient, never a
  rejection of the endpoints in the batch.
* A 403 quota error on a per-minute metric (or the concurrent-operations quota) is a rate limit;
  any other quota error is :class:`QuotaExceeded` (slow retry, condition Degraded/QuotaExceeded).
* 404 → :class:`TargetNotFound`; the provider tells a missing NEG from a missing instance by
  re-reading the NEG.
* Other 400s (and INVALID operation codes for an endpoint change) → :class:`RejectedError`: the
  reconciler bisects the batch.
* 409 on insert → :class:`AlreadyExists`; ``resourceInUseByAnotherResource`` on delete →
  :class:`InUse` (the NEG is retained).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from googleapiclient.errors import HttpError

from negsync.core.backoff import parse_retry_after
from negsync.errors import ProviderError, QuotaExceeded, RejectedError, TargetNotFound, TransientError

__all__ = ["QUOTA_RETRY_AFTER", "AlreadyExists", "InUse", "from_http_error", "from_operation_error"]

#: A resource quota does not clear by waiting: the reconciler's slow retry (capped by its retry_max).
QUOTA_RETRY_AFTER: Final = 600.0

_RATE_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# terraform-provider-google google/transport/error_retry_predicates.go, is403QuotaExceededPerMinuteError:
# GCE answers a per-minute *rate* quota with 403 quotaExceeded (it should be a 429); that one clears
# by itself.  Any other quotaExceeded (e.g. "Quota 'NETWORK_ENDPOINT_GROUPS' exceeded") does not.
_PER_MINUTE_QUOTA: Final = re.compile(r"Quota exceeded for quota metric '.*' and limit '.* per minute'")
# The same file, is403ConcurrentOperationsQuotaError: clears once operations in flight complete.
_CONCURRENT_OPS_QUOTA: Final = "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED"
# Operation error codes that say "try again", not "your request is wrong".  RESOURCE_NOT_READY:
# terraform's isSubnetworkUnreadyError / isNetworkUnreadyError retry the synchronous form (HTTP 400
# resourceNotReady); ingress-gce's syncer retries every failed transaction with back-off.
_TRANSIENT_OP_CODES: Final = frozenset(
    {
        "INTERNAL_ERROR",
        "RESOURCE_NOT_READY",
        "RATE_LIMIT_EXCEEDED",
        "RESOURCE_OPERATION_RATE_EXCEEDED",
        "OPERATION_CANCELED",
        "SERVICE_UNAVAILABLE",
        "TIMEOUT",
        "BACKEND_ERROR",
    }
)
_IN_USE: Final = frozenset({"resourceInUseByAnotherResource", "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"})

#: What the operation was: only an endpoint change can be a rejection of its batch.
OperationKind = Literal["insert", "delete", "endpoints"]


class AlreadyExists(ProviderError):
    """409 on insert: somebody created the NEG first."""


class InUse(ProviderError):
    """The NEG is referenced by a backend service and cannot be deleted."""


def _error_reason(exc: HttpError) -> str:
    try:
        data = json.loads(exc.content.decode("utf-8"))
        errors = data["error"].get("errors") or [{}]
        return str(errors[0].get("reason") or "")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""


def _retry_after(exc: HttpError) -> float | None:
    return parse_retry_after(exc.resp.get("retry-after") if exc.resp is not None else None)


def _error_text(exc: HttpError) -> str:
    try:
        return exc.content.decode("utf-8", "replace")
    except AttributeError:
        return ""


def from_http_error(exc: HttpError, *, what: str, conflict_ok: bool) -> ProviderError:
    """The negsync error for a failed call (after the client's own retries)."""
    status = int(exc.resp.status)
    reason = _error_reason(exc)
    message = f"{what}: HTTP {status} {reason}: {exc.reason}".rstrip()
    if status == 429 or status >= 500 or (status == 403 and reason in _RATE_REASONS):
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 403 and (_PER_MINUTE_QUOTA.search(_error_text(exc)) or _CONCURRENT_OPS_QUOTA in _error_text(exc)):
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 403 and reason == "quotaExceeded":
        return QuotaExceeded(message, retry_after=QUOTA_RETRY_AFTER)
    if status == 400 and reason == "resourceNotReady":
        # A network, subnetwork or the NEG itself is being changed: the batch is fine, retry it.
        return TransientError(message, retry_after=_retry_after(exc))
    if status == 404:
        return TargetNotFound(message)
    if status == 409 and conflict_ok:
        return AlreadyExists(message)
    if reason in _IN_USE:
        return InUse(message)
    if status == 400:
        return RejectedError(message)
    if status in (401, 403):
        return ProviderError(f"{message} (check the IAM permissions in docs/gcp.md)")
    return ProviderError(message)


def from_operation_error(operation: Mapping[str, Any], *, what: str, op_kind: OperationKind) -> ProviderError:
    """The negsync error for an operation that ended DONE with an ``error``."""
    errors = (operation.get("error") or {}).get("errors") or [{}]
    code = str(errors[0].get("code") or "")
    detail = "; ".join(str(e.get("message") or e.get("code") or "") for e in errors)
    status = int(operation.get("httpErrorStatusCode") or 0)
    message = f"{what}: operation {operation.get('name', '')} failed: {code}: {detail}"
    if code in _IN_USE:
        return InUse(message)
    if code == "QUOTA_EXCEEDED":
        return QuotaExceeded(message, retry_after=QUOTA_RETRY_AFTER)
    if code in _TRANSIENT_OP_CODES or status == 429 or status >= 500:
        return TransientError(message)
    if status == 404 or code in ("RESOURCE_NOT_FOUND", "NOT_FOUND"):
        return TargetNotFound(message)
    if code in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS") and op_kind == "insert":
        return AlreadyExists(message)
    if op_kind == "endpoints" and (status == 400 or code.startswith("INVALID")):
        return RejectedError(message)
    if status in (401, 403):
        return ProviderError(f"{message} (check the IAM permissions in docs/gcp.md)")
    return ProviderError(message)
