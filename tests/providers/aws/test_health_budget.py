"""The account's shared ELBv2 budget: 30 gated bindings polling health must fit the Describe bucket.

AWS throttles all ``Describe*`` calls of an account and region together (refill 10/s, bucket 40;
"elb-api-throttling").  negsync's default Describe group is 5/s, and gate health polls may use half
of it; with 30 bindings whose targets stay ``initial`` (AWS's real behaviour for a few health-check
intervals, which the proxy reports since moto says ``healthy`` at once) a poll every 5 s per binding
would need 6/s.  The reconciler, driven here in virtual time, must space the polls instead.
"""

from __future__ import annotations

import threading
import time

from negsync.core.bindings import AwsTargetGroupTarget, BindingSpec
from negsync.core.clock import VirtualClock
from negsync.core.model import BindingKey, Endpoint
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding
from tests.support.elb_proxy import ElbProxy

from .conftest import create_vpc, dummy_session, provider_for

BINDINGS = 30
# negsync's Describe group (5/s, burst 20) and the share of it health polls may use; the second
# test checks these are the provider's values.
DESCRIBE_RATE, DESCRIBE_BURST, HEALTH_POLL_SHARE = 5.0, 20, 0.5
WARM_UP, WINDOW = 15.0, 30.0


def test_thirty_gated_bindings_poll_health_within_the_describe_budget(moto: str, proxy: ElbProxy) -> None:
    elbv2 = dummy_session().client("elbv2", endpoint_url=moto)
    vpc = create_vpc(moto)
    desired: dict[BindingKey, DesiredBinding] = {}
    for n in range(BINDINGS):
        arn = elbv2.create_target_group(Name=f"budget-{time.monotonic_ns() % 10**8}-{n}", Protocol="HTTP", Port=8080,
                                        VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        ip = f"10.0.{n}.10"
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ip, "Port": 8080}])  # already in sync
        key = BindingKey("shop", f"web-{n}")
        spec = BindingSpec(service_name=key.name, service_port=8080, target=AwsTargetGroupTarget(arn=arn))
        desired[key] = DesiredBinding(key, spec, (Endpoint(ip, 8080),))
    proxy.report_state("initial")  # the gates stay pending: every binding keeps polling
    clock = VirtualClock()
    provider = provider_for(proxy, clock=clock)
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None, clock=clock,
                            health_poll_interval=5.0)
    counts: dict[str, int] = {}
    failures: list[BaseException] = []
    stop = threading.Event()

    def controller() -> None:
        """The work queue, one worker: each key comes back after the requeue_after it asked for."""
        due = dict.fromkeys(desired, 0.0)
        try:
            while not stop.is_set():
                key = min(due, key=lambda k: due[k])
                if due[key] > clock.now():
                    clock.sleep(due[key] - clock.now())
                if clock.now() >= WARM_UP and "start" not in counts:
                    counts["start"] = len(proxy.actions("DescribeTargetHealth"))
                if clock.now() >= WARM_UP + WINDOW:
                    counts["end"] = len(proxy.actions("DescribeTargetHealth"))
                    counts["describe"] = sum(len(proxy.actions(a)) for a in
                                             ("DescribeTargetHealth", "DescribeTargetGroups",
                                              "DescribeTargetGroupAttributes"))
                    return
                result = reconciler.reconcile(key, desired[key])
                assert not result.errors, result.errors
                due[key] = clock.now() + result.requeue_after
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    worker = threading.Thread(target=controller, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while worker.is_alive() and time.monotonic() < deadline:
            parked = clock.next_deadline()
            if parked is None:
                time.sleep(0.002)  # the worker is talking to moto in real time
                continue
            clock.advance(max(1e-3, parked - clock.now()))  # float residue of a refill must not stall
    finally:
        stop.set()
        reconciler.close(wait=False)
    worker.join(timeout=5)
    assert not failures, failures
    assert "end" in counts, "the virtual minute did not finish"
    polls = counts["end"] - counts["start"]
    rate = DESCRIBE_RATE
    # Within the share of the Describe budget for health polls (one poll of slack per binding for
    # the edges of the window), and every binding still polled about every BINDINGS / (rate × share) s.
    allowed = rate * HEALTH_POLL_SHARE * WINDOW
    assert polls <= allowed + BINDINGS, (polls, allowed)
    assert polls >= BINDINGS * WINDOW / (BINDINGS / (rate * HEALTH_POLL_SHARE)) * 0.7, polls
    # Everything negsync described in the run fits the Describe group, burst included.
    assert counts["describe"] <= rate * (WARM_UP + WINDOW) + DESCRIBE_BURST


def test_the_poll_interval_grows_with_the_number_of_polled_groups() -> None:
    from negsync.core.model import TargetRef
    from negsync.providers import aws
    from negsync.providers.aws import DEFAULT_RATE_LIMITS, AwsProvider

    assert DEFAULT_RATE_LIMITS["Describe*"] == (DESCRIBE_RATE, DESCRIBE_BURST)
    assert aws.HEALTH_POLL_SHARE == HEALTH_POLL_SHARE
    clock = VirtualClock()
    provider = AwsProvider(clock=clock)
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t{}/0123456789abcdef"
    refs = [TargetRef("aws", "us-east-1", arn.format(n)) for n in range(BINDINGS)]
    rate = DEFAULT_RATE_LIMITS["Describe*"][0]
    assert provider.health_poll_interval(refs[0]) == 1 / (rate * HEALTH_POLL_SHARE)
    for r in refs:  # as if each group had just been listed
        provider.health_polls.polled(r.name)
    assert provider.health_poll_interval(refs[0]) == BINDINGS / (rate * HEALTH_POLL_SHARE)
    clock.advance(61.0)  # not polled for a minute: no longer counted
    assert provider.health_poll_interval(refs[0]) == 1 / (rate * HEALTH_POLL_SHARE)
    # A user's --aws-rate-limits Describe group changes the spacing with it.
    fast = AwsProvider(rate_limits={"Describe*": (9.0, 40), "*": (9.5, 40)}, clock=clock)
    assert fast.health_poll_interval(refs[0]) == 1 / (9.0 * HEALTH_POLL_SHARE)


