"""/drain-wait: parameter checks, limits, time-outs, and release only after the real detach + margin."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.latency import Fixed
from negsync.core.model import TargetEndpoint, TargetRef
from negsync.draining import DrainTracker, DrainWait
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from negsync.serving import Servers
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.support.waiting import wait_for


class Holder:
    def __init__(self) -> None:
        self.held = {"10.0.0.1"}

    def __call__(self, namespace: str, name: str, ip: str) -> bool:
        return ip in self.held


def route(holder: Holder, tracker: DrainTracker, **kwargs: Any) -> DrainWait:
    pods = {("shop", "web-0"): ("10.0.0.1",)}
    return DrainWait(pod_ips=lambda ns, n: pods.get((ns, n)), holds=holder, tracker=tracker, **kwargs)


def body(reply: tuple[int, str, bytes]) -> dict[str, Any]:
    return json.loads(reply[2])


@pytest.mark.parametrize(
    "query",
    [{}, {"pod": ["web-0"]}, {"pod": ["shop/web-0", "shop/web-1"]}, {"pod": ["Shop/Web"]},
     {"pod": ["shop/web-0"], "timeout": ["ten"]}, {"pod": ["shop/web-0"], "timeout": ["-1"]},
     {"pod": ["shop/web-0"], "timeout": ["0"]}, {"pod": ["shop/web-0"], "timeout": ["99999"]}],
)
def test_bad_parameters_are_400_with_a_message(query: dict[str, list[str]]) -> None:
    status, _, raw = route(Holder(), DrainTracker())(query)
    assert status == 400
    assert json.loads(raw)["error"]


def test_unknown_pod_is_404() -> None:
    status, _, _ = route(Holder(), DrainTracker())({"pod": ["shop/other"], "timeout": ["1"]})
    assert status == 404


def test_still_attached_at_the_timeout_is_504() -> None:
    started = time.monotonic()
    status, _, raw = route(Holder(), DrainTracker(), margin=0.0)({"pod": ["shop/web-0"], "timeout": ["0.3"]})
    assert status == 504 and json.loads(raw)["detached"] is False
    assert 0.25 <= time.monotonic() - started < 3


def test_released_only_after_the_detach_and_the_margin() -> None:
    holder, tracker = Holder(), DrainTracker()
    wait = route(holder, tracker, margin=0.4)
    replies: list[tuple[int, str, bytes]] = []
    thread = threading.Thread(target=lambda: replies.append(wait({"pod": ["shop/web-0"], "timeout": ["10"]})))
    thread.start()
    time.sleep(0.3)
    assert not replies
    holder.held.clear()
    detached = time.monotonic()
    tracker.detached(ref=TargetRef("memory", "local", "x"), endpoints=[TargetEndpoint("10.0.0.1", 8080)],
                     issued_at=detached - 0.1, done_at=detached)
    thread.join(timeout=5)
    assert replies and replies[0][0] == 200
    assert time.monotonic() - detached >= 0.35
    assert body(replies[0])["margin_seconds"] == 0.4


def test_margin_defaults_to_the_measured_p99_of_detach_latency() -> None:
    tracker = DrainTracker()
    wait = route(Holder(), tracker, min_margin=0.5, fallback_margin=7.0)
    assert wait.margin() == 7.0  # no samples yet
    ref = TargetRef("memory", "local", "x")
    for latency in [1.0] * 98 + [3.0, 3.0]:
        tracker.detached(ref=ref, endpoints=[TargetEndpoint("10.9.9.9", 80)], issued_at=0.0, done_at=latency)
    assert wait.margin() == 3.0
    assert route(Holder(), tracker, margin=1.5).margin() == 1.5


def test_waiters_beyond_the_limit_get_429_and_the_slot_is_freed() -> None:
    holder = Holder()
    wait = route(holder, DrainTracker(), margin=0.0, max_waiters=1)
    first: list[int] = []
    thread = threading.Thread(target=lambda: first.append(wait({"pod": ["shop/web-0"], "timeout": ["5"]})[0]))
    thread.start()
    deadline = time.monotonic() + 5
    while wait.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wait({"pod": ["shop/web-0"], "timeout": ["1"]})[0] == 429
    holder.held.clear()
    thread.join(timeout=5)
    assert first == [200]
    assert wait({"pod": ["shop/web-0"], "timeout": ["1"]})[0] == 200


def test_one_namespace_cannot_take_the_whole_waiter_pool() -> None:
    """A mass rollout in one namespace gets 429 beyond its share; other namespaces still get a waiter."""
    held = {"10.0.0.1", "10.0.0.2", "10.0.1.1"}
    pods = {("shop", "web-0"): ("10.0.0.1",), ("shop", "web-1"): ("10.0.0.2",), ("blog", "web-0"): ("10.0.1.1",)}
    wait = DrainWait(pod_ips=lambda ns, n: pods.get((ns, n)), holds=lambda ns, n, ip: ip in held,
                     tracker=DrainTracker(), margin=0.0, max_waiters=3, max_waiters_per_namespace=1)
    results: dict[str, int] = {}
    threads = []
    for pod_name in ("shop/web-0", "blog/web-0"):
        thread = threading.Thread(target=lambda p=pod_name: results.__setitem__(p, wait({"pod": [p], "timeout": ["5"]})[0]))
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + 5
    while wait.waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    status, _, raw = wait({"pod": ["shop/web-1"], "timeout": ["1"]})
    assert status == 429 and "namespace shop" in json.loads(raw)["error"]
    held.clear()
    for thread in threads:
        thread.join(timeout=5)
    assert results == {"shop/web-0": 200, "blog/web-0": 200}
    assert wait({"pod": ["shop/web-1"], "timeout": ["1"]})[0] == 200  # the namespace's slot was freed
    assert wait.answers == {200: 3, 429: 1} and wait.waiting == 0


def test_every_answer_is_counted_by_status() -> None:
    wait = route(Holder(), DrainTracker())
    wait({"pod": ["nope"]})
    wait({"pod": ["shop/other"], "timeout": ["1"]})
    assert wait.answers == {400: 1, 404: 1}


def test_end_to_end_a_pre_stop_hook_waits_for_the_real_detach(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    provider = MemoryProvider(call_latency=Fixed(0.0))
    settings = Settings(workers=2, sync_min_interval=0.0, health_poll_interval=0.1, identity="t", watch_timeout=5)
    controller = Controller(api_client=api_client, provider=provider, settings=settings)
    servers = Servers(controller=controller, health_addr="127.0.0.1:0", telemetry=None,
                      extra_routes={"/drain-wait": controller.drain_wait(margin=0.3)})
    controller.start()
    servers.start()
    try:
        kube.create(service())
        kube.create(pod("web-0", ip="10.1.0.1"))
        kube.create(pod("web-1", ip="10.1.0.2"))
        ips = ["10.1.0.1", "10.1.0.2"]
        kube.create(endpoint_slice("web-abc", ips, pods={"10.1.0.1": "web-0", "10.1.0.2": "web-1"}))
        kube.create(binding(gate=False))
        ref = TargetRef("memory", "local", "shop-web")
        wait_for(lambda: provider.members(ref) == {TargetEndpoint(ip, 8080) for ip in ips})
        url = f"http://127.0.0.1:{servers.ports[0]}/drain-wait?pod=shop/web-1&timeout=10"
        outcome: dict[str, Any] = {}

        def hook() -> None:
            try:
                with urllib.request.urlopen(url, timeout=15) as response:
                    outcome["status"] = response.status
                    outcome["body"] = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                outcome["status"] = exc.code
            outcome["at"] = time.monotonic()

        provider.pause()  # the detach call will be held "in flight"
        thread = threading.Thread(target=hook)
        thread.start()
        kube.update(endpoint_slice("web-abc", ips, terminating=("10.1.0.2",), pods={"10.1.0.1": "web-0", "10.1.0.2": "web-1"}))
        time.sleep(0.6)
        assert "status" not in outcome  # the detach has not completed: the hook keeps waiting
        released = time.monotonic()
        provider.resume()
        thread.join(timeout=10)
        assert outcome["status"] == 200 and outcome["body"]["detached"] is True
        assert outcome["at"] - released >= 0.25  # the propagation margin was honoured
        assert provider.members(ref) == {TargetEndpoint("10.1.0.1", 8080)}
        # The detach time lives as long as its pod: gone with the pod (issue 18 soak).
        assert controller.drain_tracker.detached_at("10.1.0.2") is not None
        kube.delete("v1", "Pod", "shop", "web-1")
        wait_for(lambda: controller.drain_tracker.detached_at("10.1.0.2") is None)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{servers.ports[0]}/drain-wait?pod=shop/nope&timeout=1", timeout=5)
        assert info.value.code == 404
    finally:
        provider.resume()
        servers.stop()
        controller.stop(timeout=5)


# -- the tracker's memory (issue 18 soak) ---------------------------------------------------------
def test_detach_times_are_bounded_in_count_and_age() -> None:
    from negsync.core.clock import VirtualClock
    from negsync.core.model import TargetEndpoint, TargetRef

    clock = VirtualClock()
    tracker = DrainTracker(clock=clock, max_ips=100, ttl=600.0)
    ref = TargetRef("memory", "local", "web")
    for n in range(1_000):
        tracker.pod_ips_changed((), (f"10.0.{n // 250}.{n % 250}",))
        tracker.detached(ref=ref, endpoints=[TargetEndpoint(f"10.0.{n // 250}.{n % 250}", 8080)],
                         issued_at=clock.now(), done_at=clock.now())
        clock.advance(0.01)
    assert len(tracker._detached_at) == 100
    assert tracker.detached_at("10.0.3.249") is not None  # the latest is kept
    assert tracker.detached_at("10.0.0.0") is None  # the oldest went first
    clock.advance(600.0)
    assert tracker.detached_at("10.0.3.249") is None  # older than the TTL: unknown


def test_a_detach_time_costs_little_memory() -> None:
    import tracemalloc

    from negsync.core.model import TargetEndpoint, TargetRef

    ref = TargetRef("memory", "local", "web")
    members = [[TargetEndpoint(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 8080)] for n in range(20_000)]
    from negsync.core.clock import VirtualClock

    clock = VirtualClock()
    tracker = DrainTracker(clock=clock)
    for batch in members:
        tracker.pod_ips_changed((), (batch[0].ip,))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for batch in members:
            tracker.detached(ref=ref, endpoints=batch, issued_at=clock.now(), done_at=clock.now())
        per_ip = (tracemalloc.get_traced_memory()[0] - before) / len(members)
    finally:
        tracemalloc.stop()
    assert all(tracker.detached_at(batch[0].ip) == clock.now() for batch in members)  # every one kept
    assert per_ip < 150, f"{per_ip:.0f} B per detached IP"  # a cachetools.TTLCache took ~175 B + its links


def test_detach_times_live_as_long_as_the_pods_that_had_the_ips() -> None:
    # Issue 18 soak: detach times were kept for an hour (up to 200,000 IPs) whatever became of the
    # pod; now only while a cached pod holds the IP.  Pod changes reach the tracker through the
    # handlers of the pod watch, as in the controller.
    from negsync.core.clock import VirtualClock
    from negsync.kube.caches import Caches, decode_pod
    from negsync.kube.handlers import Handlers

    clock = VirtualClock()
    tracker = DrainTracker(clock=clock)
    handlers = Handlers(caches=Caches(), enqueue=lambda key, priority: None, pod_ips_changed=tracker.pod_ips_changed)
    ref = TargetRef("memory", "local", "web")
    live: dict[int, Any] = {}
    for n in range(2_000):
        ip = f"10.2.{n // 250}.{n % 250}"
        live[n] = decode_pod(pod(f"web-{n}", ip=ip))
        handlers.on_pod(None, live[n])
        tracker.detached(ref=ref, endpoints=[TargetEndpoint(ip, 8080)], issued_at=clock.now(), done_at=clock.now())
        clock.advance(0.01)
        if n >= 10:  # ten pods terminating at a time; the oldest is deleted
            handlers.on_pod(live.pop(n - 10), None)
        assert len(tracker) <= len(live)
    assert len(tracker) == 10
    assert all(tracker.detached_at(record.ips[0]) is not None for record in live.values())
    # A detach of an IP no cached pod holds (no /drain-wait can ask for it) is not kept either.
    tracker.detached(ref=ref, endpoints=[TargetEndpoint("10.9.0.1", 8080)], issued_at=0.0, done_at=0.0)
    assert tracker.detached_at("10.9.0.1") is None and len(tracker) == 10


def test_a_reused_ip_does_not_inherit_an_old_pods_detach() -> None:
    from negsync.core.clock import VirtualClock

    clock = VirtualClock()
    tracker = DrainTracker(clock=clock)
    ref = TargetRef("memory", "local", "web")
    tracker.pod_ips_changed((), ("10.3.0.1",))  # pod A
    tracker.detached(ref=ref, endpoints=[TargetEndpoint("10.3.0.1", 8080)], issued_at=0.0, done_at=clock.now())
    assert tracker.detached_at("10.3.0.1") == clock.now()
    # Pod B takes the IP before A's object is gone: A's detach says nothing about B.
    tracker.pod_ips_changed((), ("10.3.0.1",))
    assert tracker.detached_at("10.3.0.1") is None
    tracker.pod_ips_changed(("10.3.0.1",), ())  # A deleted; B still holds the IP
    clock.advance(5.0)
    tracker.detached(ref=ref, endpoints=[TargetEndpoint("10.3.0.1", 8080)], issued_at=0.0, done_at=clock.now())
    assert tracker.detached_at("10.3.0.1") == clock.now()  # B's own detach
    tracker.pod_ips_changed(("10.3.0.1",), ())  # B deleted
    assert tracker.detached_at("10.3.0.1") is None and len(tracker) == 0
