"""Every ELBv2 error of botocore's service model has a clear outcome, and the reconciler acts on it."""

from __future__ import annotations

import email.utils
import time

import botocore.session
import pytest
from botocore.exceptions import ClientError

from negsync.core.bindings import AwsTargetGroupTarget, BindingSpec
from negsync.core.clock import VirtualClock
from negsync.core.model import BindingKey, Endpoint, TargetEndpoint
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding
from negsync.errors import InvalidTarget, ProviderError, RejectedError, TargetNotFound, TransientError
from negsync.providers.aws.calls import translate
from negsync.providers.aws.errors import COMMON_OUTCOMES, ELBV2_OUTCOMES, outcome_of, to_error
from tests.support.elb_proxy import ElbProxy
from tests.support.waiting import wait_for

from .conftest import REGION, World, addresses, provider_for

BINDING = BindingKey("shop", "web")


def model_error_codes() -> dict[str, int]:
    """Wire code → HTTP status of every exception shape in the installed botocore's ELBv2 model."""
    model = botocore.session.get_session().get_service_model("elbv2")
    return {
        shape.error_code: int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
        for shape in model.error_shapes
    }


def test_every_error_of_the_service_model_has_an_outcome() -> None:
    codes = model_error_codes()
    assert len(codes) > 40  # the model was read, not an empty list
    missing = sorted(set(codes) - set(ELBV2_OUTCOMES))
    assert not missing, f"ELBv2 errors without an outcome in negsync/providers/aws/errors.py: {missing}"
    stale = sorted(set(ELBV2_OUTCOMES) - set(codes))
    assert not stale, f"outcomes for codes the model does not have: {stale}"
    # The model's own retry hints agree: its 5xx and 429 errors are the transient ones.
    for code, status in codes.items():
        assert (ELBV2_OUTCOMES[code] == "transient") == (status >= 500 or status == 429 or code in {
            "CapacityReservationPending"}), code


@pytest.mark.parametrize(
    ("code", "error", "outcome"),
    [
        ("TooManyRegistrationsForTargetId", RejectedError, "rejected"),
        ("InvalidTarget", RejectedError, "rejected"),
        ("TargetGroupNotFound", TargetNotFound, "gone"),
        ("HealthUnavailable", TransientError, "transient"),
        ("ThrottlingException", TransientError, "transient"),
        ("TooManyTargets", InvalidTarget, "unusable"),
        ("AccessDenied", InvalidTarget, "denied"),
    ],
)
def test_codes_map_onto_the_reconcilers_errors(code: str, error: type[ProviderError], outcome: str) -> None:
    assert outcome_of(code) == outcome
    mapped = to_error(service="elbv2", operation="RegisterTargets", code=code, message="m", status=400, where=REGION)
    assert type(mapped) is error and code in str(mapped)
    assert outcome_of("SomethingNew", status=503) == "transient"
    assert outcome_of("SomethingNew", status=400) == "unusable"
    assert set(COMMON_OUTCOMES.values()) <= {"transient", "rejected", "denied", "unusable"}


@pytest.mark.parametrize(("header", "low", "high"), [("3", 3.0, 3.0), ("in a while", None, None), ("-3", None, None),
                                                     ("+60s", None, None), ("date", 55.0, 60.0)])
def test_retry_after_reaches_the_transient_error_as_seconds_or_an_http_date(
        header: str, low: float | None, high: float | None) -> None:
    # RFC 9110 §10.2.3: delay-seconds or HTTP-date; an HTTP-date was dropped before negsync.core.backoff read it.
    value = email.utils.formatdate(time.time() + 60, usegmt=True) if header == "date" else header
    err = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                       "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {"retry-after": value}}},
                      "RegisterTargets")
    mapped = translate(err, service="elbv2", operation="RegisterTargets", region=REGION)
    assert isinstance(mapped, TransientError)
    if low is None:
        assert mapped.retry_after is None
    else:
        assert mapped.retry_after is not None and low <= mapped.retry_after <= (high or low)


@pytest.mark.parametrize(("code", "action"), [("AccessDenied", "elasticloadbalancing:RegisterTargets"),
                                              ("UnauthorizedOperation", "elasticloadbalancing:RegisterTargets")])
def test_permission_denied_names_the_missing_action(world: World, proxy: ElbProxy, code: str,
                                                    action: str) -> None:
    provider = provider_for(proxy, max_attempts=1)
    provider.describe_group(world.ref())
    proxy.fail_next("RegisterTargets", 1, status=403, code=code)
    with pytest.raises(InvalidTarget) as info:
        provider.attach(world.ref(), [TargetEndpoint("10.0.0.5", 8080)])
    assert action in str(info.value) and "docs/aws.md" in str(info.value)


def test_too_many_registrations_drops_that_endpoint_only(world: World, proxy: ElbProxy) -> None:
    """AWS refuses a target registered with too many load balancers; the rest of the batch goes in."""
    provider = provider_for(proxy, max_attempts=1)
    wanted = addresses(4)
    spec = BindingSpec(service_name="web", service_port=8080, target=AwsTargetGroupTarget(arn=world.ip_arn),
                       readiness_gate=False)
    desired = {BINDING: DesiredBinding(BINDING, spec, tuple(Endpoint(e.ip, e.port) for e in wanted))}
    proxy.reject_ips({wanted[2].ip}, code="TooManyRegistrationsForTargetId")
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None)
    try:
        reconciler.reconcile(BINDING, desired[BINDING])
        wait_for(lambda: reconciler.in_flight() == 0 and not reconciler.busy())
        result = reconciler.reconcile(BINDING, desired[BINDING])
        assert set(result.rejected) == {wanted[2]}
        assert "TooManyRegistrationsForTargetId" in result.rejected[wanted[2]]
        assert world.registered() == set(wanted) - {wanted[2]}
    finally:
        reconciler.close()


def test_a_deleted_target_group_is_a_condition_with_growing_back_off(proxy: ElbProxy, moto: str) -> None:
    clock = VirtualClock()
    provider = provider_for(proxy, max_attempts=1, clock=clock)
    arn = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/gone/0123456789abcdef"
    spec = BindingSpec(service_name="web", service_port=8080, target=AwsTargetGroupTarget(arn=arn))
    desired = {BINDING: DesiredBinding(BINDING, spec, (Endpoint("10.0.0.5", 8080),))}
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None, clock=clock, seed=1)
    waits = []
    try:
        for _ in range(4):
            result = reconciler.reconcile(BINDING, desired[BINDING])
            assert result.errors and "does not exist" in result.errors[0]
            waits.append(result.requeue_after)
            clock.advance(result.requeue_after)
    finally:
        reconciler.close()
    assert waits == sorted(waits) and waits[0] >= 5.0 and waits[-1] >= 4 * waits[0] / 2  # exponential, no hot loop
    assert len(proxy.actions("DescribeTargetGroups")) == 4  # one look per back-off, nothing else
    assert proxy.actions("RegisterTargets") == [] and proxy.actions("DeregisterTargets") == []
