"""Compute API errors classified as GCE means them (negsync/providers/gcp/errors.py; issue 13)."""

from __future__ import annotations

import email.utils
import json
import time

import httplib2
import pytest
from googleapiclient.errors import HttpError

from negsync.core.model import TargetEndpoint
from negsync.errors import (
    ProviderError,
    QuotaExceeded,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.gcp import (
    QUOTA_RETRY_AFTER,
    GcpProvider,
)
from negsync.providers.gcp.errors import from_http_error
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    INSERT,
    KEY,
    LIST_EPS,
    PROJECT,
    ZONE_A,
    Driver,
    bspec,
    eps,
    name_of,
    place,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_transient_error_carries_no_bisection(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    fake.inject(ATTACH, 500, count=3)
    with pytest.raises(TransientError, match="HTTP 500"):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.inject(LIST_EPS, 404, count=1)
    with pytest.raises(TargetNotFound):
        provider.list_endpoints(ref())


def test_permission_denied_is_not_retried_and_names_iam(fake: FakeCompute, provider: GcpProvider) -> None:
    fake.inject("compute.networkEndpointGroups.get", 403, reason="forbidden", message="Required 'compute.x' permission")
    with pytest.raises(ProviderError, match="IAM") as info:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert not isinstance(info.value, TransientError)
    assert fake.count("compute.networkEndpointGroups.get") == 1


def test_retry_after_header_reaches_the_transient_error() -> None:
    response = httplib2.Response({"status": 429, "retry-after": "7"})
    body = json.dumps({"error": {"code": 429, "message": "slow down", "errors": [{"reason": "rateLimitExceeded"}]}})
    error = from_http_error(HttpError(response, body.encode()), what="attach", conflict_ok=False)
    assert isinstance(error, TransientError) and error.retry_after == 7.0


def test_retry_after_as_an_http_date_reaches_the_transient_error() -> None:
    # RFC 9110 §10.2.3 allows an HTTP-date; it was dropped (None) before negsync.core.backoff read it.
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    response = httplib2.Response({"status": 503, "retry-after": when})
    body = json.dumps({"error": {"code": 503, "message": "backend unavailable", "errors": [{"reason": "backendError"}]}})
    error = from_http_error(HttpError(response, body.encode()), what="attach", conflict_ok=False)
    assert isinstance(error, TransientError) and error.retry_after is not None and 55 <= error.retry_after <= 60


def test_operation_errors_are_mapped(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    fake.fail_next_operation("RESOURCE_NOT_READY", "not ready", http_status=400, method_id=ATTACH)
    with pytest.raises(TransientError, match="RESOURCE_NOT_READY"):
        provider.attach(ref(), member)
    fake.fail_next_operation("INVALID_FIELD_VALUE", "bad endpoint", http_status=400, method_id=ATTACH)
    with pytest.raises(RejectedError, match="INVALID_FIELD_VALUE"):
        provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_resource_not_ready_is_transient_never_a_rejection(fake: FakeCompute, provider: GcpProvider) -> None:
    # terraform-provider-google isSubnetworkUnreadyError: 400 resourceNotReady is retried.
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    fake.inject(ATTACH, 400, reason="resourceNotReady",
                message="The resource 'projects/p/regions/us-central1/subnetworks/nodes' is not ready")
    with pytest.raises(TransientError) as caught:
        provider.attach(ref(), member)
    assert not isinstance(caught.value, RejectedError)
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_resource_not_ready_never_blocks_an_endpoint(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(4)
    fake.inject(ATTACH, 400, count=3, reason="resourceNotReady")
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(until=lambda r: r.synced and r.count("registered") == 4)
    assert not result.rejected  # no bisection of a batch that was never wrong


def test_quota_exceeded_is_its_own_error_and_a_per_minute_quota_is_not(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    fake.inject(INSERT, 403, reason="quotaExceeded",
                message="Quota 'NETWORK_ENDPOINT_GROUPS' exceeded.  Limit: 100.0 globally.")
    with pytest.raises(QuotaExceeded) as caught:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert caught.value.retry_after == QUOTA_RETRY_AFTER  # slow retry
    # is403QuotaExceededPerMinuteError: a per-minute rate quota clears by waiting.
    per_minute = ("Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' "
                  "of service 'compute.googleapis.com' for consumer 'project_number:1'.")
    fake.inject(INSERT, 403, reason="quotaExceeded", message=per_minute)
    with pytest.raises(TransientError) as transient:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert not isinstance(transient.value, QuotaExceeded)
    # The operation form (QUOTA_EXCEEDED, as resource quotas fail instance inserts).
    fake.neg_quota = 0
    with pytest.raises(QuotaExceeded, match="NETWORK_ENDPOINT_GROUPS"):
        provider.ensure_target(ref(), binding=KEY, spec=target())


def test_quota_exceeded_surfaces_on_the_result_and_the_status(fake: FakeCompute, driver: Driver) -> None:
    from negsync.kube.status import binding_status

    fake.neg_quota = 0
    driver.set(KEY, bspec(), eps(2))
    result = driver.run(until=lambda r: bool(r.quota_exceeded))
    assert "NETWORK_ENDPOINT_GROUPS" in result.quota_exceeded[0]
    status = binding_status(generation=1, previous={}, result=result)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "QuotaExceeded"
    fake.neg_quota = None
    result = driver.run(until=lambda r: r.synced and r.count("registered") == 2)
    assert not result.quota_exceeded


def test_a_404_about_an_instance_is_a_rejection_not_a_missing_neg(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    good, gone = TargetEndpoint("10.0.0.1", 8080, "vm-1"), TargetEndpoint("10.0.0.2", 8080, "vm-gone")
    place(fake, [good])
    with pytest.raises(RejectedError, match="instance"):
        provider.attach(ref(), [good, gone])
    fake.remove_neg(PROJECT, ZONE_A, name_of())
    with pytest.raises(TargetNotFound):
        provider.attach(ref(), [good])
