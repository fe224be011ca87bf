"""Kubernetes-side faults through a real Controller, the API emulator and a real kubernetes client.

Each test starts from a synced binding (3 endpoints), injects one fault, changes the Service's
endpoints *under* the fault (a new endpoint, one turning terminating), and waits for the three
end-state properties of :func:`~tests.faults.conftest.assert_end_state`.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from negsync.core.model import BindingKey
from tests.emulators.kubeapi import KubeApiEmulator
from tests.faults.conftest import (
    Cloud,
    Controllers,
    JumpClock,
    converge,
    converged,
    seed,
    set_slice,
    threads_alive,
    wait_for,
)
from tests.faults.proxy import TcpProxy

IPS = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
NEW = "10.1.0.9"
KEY = BindingKey("shop", "web")


def proxied(kube: KubeApiEmulator) -> tuple[TcpProxy, client.ApiClient]:
    parts = urlsplit(kube.url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 80)).start()
    configuration = client.Configuration(host=proxy.url, no_proxy="127.0.0.1,localhost")
    return proxy, client.ApiClient(configuration)


def slices_watcher(ctl: object) -> object:
    return next(w for w in ctl.watchers if w.kind.name == "endpointslices")  # type: ignore[attr-defined]


def start_synced(kube: KubeApiEmulator, cloud: Cloud, controllers: Controllers, api: client.ApiClient,
                 **overrides: object) -> object:
    seed(kube, IPS)
    link = cloud.link()
    ctl = controllers.start(api, link, **overrides)
    wait_for(lambda: converged(kube, cloud) and cloud.members(), what="initial sync")
    return ctl


def test_watch_stream_dropped_mid_event(kube: KubeApiEmulator, cloud: Cloud, controllers: Controllers) -> None:
    proxy, api = proxied(kube)
    try:
        ctl = start_synced(kube, cloud, controllers, api)
        kube.wait_for_watches(5)
        watcher = slices_watcher(ctl)
        relists = watcher.relists  # type: ignore[attr-defined]
        proxy.cut_on(NEW.encode())  # the first response bytes naming the new endpoint are cut in half
        started = time.monotonic()
        set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
        converge(kube, cloud, since=started, name="watch stream dropped mid-event")
        assert proxy.cuts == 1, "the stream was never cut: the fault did not happen"
        # Resumed from the last resourceVersion: no relist, so nothing replayed.
        assert watcher.relists == relists  # type: ignore[attr-defined]
        assert threads_alive(ctl)  # type: ignore[arg-type]
    finally:
        controllers.stop_all()
        proxy.stop()
        api.close()


def test_watch_410_gone_relists_and_replays_nothing(kube: KubeApiEmulator, api_client: client.ApiClient, cloud: Cloud,
                                                    controllers: Controllers) -> None:
    ctl = start_synced(kube, cloud, controllers, api_client)
    kube.wait_for_watches(5)
    link = cloud.links[0]
    watcher = slices_watcher(ctl)
    relists = watcher.relists  # type: ignore[attr-defined]
    attaches, detaches = link.count("attach"), link.count("detach")
    started = time.monotonic()
    # Cut every watch, then change and compact while the watchers back off (>= 0.25 s): each one
    # resumes from a resourceVersion older than the compacted revision and gets "410 Expired".
    # (Compacting under a *live* watch does not work: the emulator's watch loop then skips the
    # compacted events instead of answering 410 — reported as an emulator gap.)
    with kube._cond:
        kube.drop_watches()
        set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
        kube.compact()
    converge(kube, cloud, since=started, name="watch 410 Gone (compaction)")
    assert watcher.relists > relists  # type: ignore[attr-defined]
    # Nothing replayed as new: exactly one attach (the new endpoint) and one detach.
    assert link.count("attach") - attaches == 1
    assert link.count("detach") - detaches == 1
    assert threads_alive(ctl)  # type: ignore[arg-type]


def test_api_server_500_on_watch_list_and_status(kube: KubeApiEmulator, api_client: client.ApiClient, cloud: Cloud,
                                                 controllers: Controllers) -> None:
    ctl = start_synced(kube, cloud, controllers, api_client)
    kube.wait_for_watches(5)
    kube.inject("GET", r"/endpointslices$", 500, count=3)
    kube.inject("PATCH", r"/targetbindings/web/status$", 500, count=1)
    before = len([r for r in kube.requests if r.method == "GET" and r.path.endswith("/endpointslices")])
    kube.drop_watches()
    started = time.monotonic()
    set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
    converge(kube, cloud, since=started, name="API server 500 (watch + status write)")
    assert threads_alive(ctl)  # type: ignore[arg-type]
    after = len([r for r in kube.requests if r.method == "GET" and r.path.endswith("/endpointslices")])
    assert after - before >= 4  # three 500s, then a good one

    def status_counts() -> object:
        obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}
        return (obj.get("status") or {}).get("endpoints", {})

    # The status write that got a 500 is made good by a later reconcile, not lost.
    wait_for(lambda: status_counts().get("registered") == 3 and status_counts().get("desired") == 3,  # type: ignore[attr-defined]
             what="status caught up after the failed write")


def test_a_failed_last_status_write_is_made_good_without_another_change(
        kube: KubeApiEmulator, api_client: client.ApiClient, cloud: Cloud, controllers: Controllers) -> None:
    # The soak's stuck binding, type (b): the cloud converged, but every status write after the
    # change failed (time-outs on a loaded API server), and nothing changes afterwards to start
    # another reconcile; the resync is minutes away.
    ctl: Any = start_synced(kube, cloud, controllers, api_client)
    kube.wait_for_watches(5)
    kube.inject("PATCH", r"/targetbindings/web/status$", 500, count=1_000)
    set_slice(kube, [*IPS, NEW])
    converge(kube, cloud, since=time.monotonic(), name="status writes failing")

    def idle() -> bool:  # the last reconcile ran and its status write failed
        engine = ctl.engine
        return (engine is not None and not engine.queue.busy() and not engine.reconciler.busy()
                and ctl.status_writer.flush(timeout=0.0))

    wait_for(lambda: idle() and (time.sleep(0.3) or idle()), what="the last status write failed")
    assert any(r.method == "PATCH" and r.path.endswith("/web/status") for r in kube.requests)
    kube.clear_faults()

    def status_counts() -> object:
        obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}
        return (obj.get("status") or {}).get("endpoints", {})

    wait_for(lambda: status_counts().get("registered") == 4 and status_counts().get("desired") == 4,  # type: ignore[attr-defined]
             timeout=12.0, what="status written once the API server recovered")


def test_api_server_429_with_retry_after_is_honoured(kube: KubeApiEmulator, api_client: client.ApiClient,
                                                      cloud: Cloud, controllers: Controllers) -> None:
    ctl = start_synced(kube, cloud, controllers, api_client)
    kube.wait_for_watches(5)
    kube.inject("GET", r"/endpointslices$", 429, count=1, retry_after=2)
    kube.drop_watches()
    started = time.monotonic()
    set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
    seconds = converge(kube, cloud, since=started, name="API server 429 + Retry-After: 2")
    assert seconds >= 2.0, "the watch came back before Retry-After"
    assert seconds < 6.0, "Retry-After honoured, but back-off grew far beyond it"
    assert threads_alive(ctl)  # type: ignore[arg-type]


# -- leader election ------------------------------------------------------------------------------
LEASE = dict(leader_elect=True, lease_duration=2.0, renew_deadline=1.5, retry_period=0.2)


def test_leader_loses_its_lease_mid_reconcile_and_the_standby_takes_over(
    kube: KubeApiEmulator, cloud: Cloud, controllers: Controllers
) -> None:
    proxy, api_a = proxied(kube)
    api_b = client.ApiClient(kube.client_configuration())
    try:
        seed(kube, IPS)
        link_a, link_b = cloud.link(), cloud.link()
        a = controllers.start(api_a, link_a, identity="ctl-a", **LEASE)
        wait_for(lambda: a.leading and converged(kube, cloud) and cloud.members(), what="a leads and syncs")
        b = controllers.start(api_b, link_b, identity="ctl-b", **LEASE)
        wait_for(lambda: b.synced and b.leader is not None and b.leader.observed_holder == "ctl-a", what="b standby")
        assert not b.leading
        # Mid-reconcile: a new endpoint's attach is sent by A and held in flight.
        link_a.hold()
        set_slice(kube, [*IPS, NEW])
        wait_for(lambda: link_a.held >= 1, what="A's attach in flight")
        # A is cut off from the API server: it cannot renew, and steps down after renew_deadline.
        proxy.partition()
        started = time.monotonic()
        set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
        wait_for(lambda: b.leading, timeout=10, what="B takes over")
        assert a.leader is not None and not a.leader.is_leader
        converge(kube, cloud, since=started, name="leader loses Lease mid-reconcile; standby takes over")
        # A's held call finally lands: it must not undo anything.
        link_a.release()
        wait_for(lambda: a.engine is None, what="A stepped down")
        assert converged(kube, cloud)
        assert link_b.count("detach") >= 1 and not link_a.count("detach")
    finally:
        link_a.release()
        proxy.heal()
        controllers.stop_all()
        proxy.stop()
        api_a.close()
        api_b.close()


def test_old_leaders_in_flight_attach_of_a_now_terminating_endpoint_is_undone(
    kube: KubeApiEmulator, cloud: Cloud, controllers: Controllers
) -> None:
    proxy, api_a = proxied(kube)
    api_b = client.ApiClient(kube.client_configuration())
    link_a = cloud.link()
    try:
        seed(kube, IPS)
        link_b = cloud.link()
        a = controllers.start(api_a, link_a, identity="ctl-a", **LEASE)
        wait_for(lambda: a.leading and converged(kube, cloud) and cloud.members(), what="a leads and syncs")
        b = controllers.start(api_b, link_b, identity="ctl-b", **LEASE)
        wait_for(lambda: b.synced and b.leader is not None and b.leader.observed_holder == "ctl-a", what="b standby")
        link_a.hold()
        set_slice(kube, [*IPS, NEW])
        wait_for(lambda: link_a.held >= 1, what="A's attach of the new endpoint in flight")
        proxy.partition()
        set_slice(kube, [*IPS, NEW], terminating=[NEW])  # the new pod is already going away
        wait_for(lambda: b.leading and KEY in b.last_results, timeout=10, what="B leads and reconciled")
        link_a.release()  # the old leader's attach lands now
        wait_for(lambda: any(m.ip == NEW for m in cloud.members()), what="the old leader's late attach landed")
        assert a.engine is None and b.leading
        started = time.monotonic()
        converge(kube, cloud, since=started, name="old leader's late attach undone", timeout=6)
    finally:
        link_a.release()
        proxy.heal()
        controllers.stop_all()
        proxy.stop()
        api_a.close()
        api_b.close()


# -- the clock jumping ----------------------------------------------------------------------------
@pytest.mark.parametrize("jump", [3600.0, -3600.0],
                         ids=["forward-1h", "backward-1h"])
def test_clock_jump(kube: KubeApiEmulator, api_client: client.ApiClient, cloud: Cloud, controllers: Controllers,
                    jump: float) -> None:
    clock = JumpClock()
    ctl = start_synced(kube, cloud, controllers, api_client, clock=clock, sync_min_interval=0.2)
    link = cloud.links[0]
    # Leave back-offs, a min-interval and TTL entries behind, then jump.
    set_slice(kube, [*IPS, "10.1.0.8"])
    wait_for(lambda: converged(kube, cloud), what="pre-jump change")
    lists = link.count("list")
    clock.jump(jump)
    started = time.monotonic()
    set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
    name = f"clock jump {'+' if jump > 0 else '-'}1h"
    converge(kube, cloud, since=started, name=name, timeout=6)
    time.sleep(1.0)
    assert link.count("list") - lists <= 10, "a list storm after the jump"
    assert threads_alive(ctl)  # type: ignore[arg-type]


def test_clock_jump_forward_with_leader_election_drops_no_change(
    kube: KubeApiEmulator, api_client: client.ApiClient, cloud: Cloud, controllers: Controllers
) -> None:
    clock = JumpClock()
    ctl = start_synced(kube, cloud, controllers, api_client, clock=clock, leader_elect=True, lease_duration=15.0,
                       renew_deadline=10.0, retry_period=2.0)
    assert ctl.leading  # type: ignore[attr-defined]
    clock.jump(3600.0)
    started = time.monotonic()
    set_slice(kube, [*IPS, NEW], terminating=["10.1.0.2"])
    converge(kube, cloud, since=started, name="clock jump +1h with leader election", timeout=6)
