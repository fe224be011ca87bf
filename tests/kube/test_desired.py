"""A binding's desired endpoints from the caches (pure: no API, no provider)."""

from __future__ import annotations

from negsync.core.model import BindingKey
from negsync.kube.caches import Caches, decode_binding, decode_service, decode_slice
from negsync.kube.desired import DesiredState
from tests.kube.conftest import binding, endpoint_slice, service


def test_a_service_port_named_by_number_matches_the_tcp_port_only() -> None:
    caches = Caches()
    # DNS-style: the same number over UDP (listed first) and TCP.
    caches.services.put(("shop", "web"), decode_service(service(ports=[
        {"name": "dns-udp", "port": 53, "targetPort": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "targetPort": 5353, "protocol": "TCP"}])))
    raw = endpoint_slice("web-abc", ["10.1.0.1"], port=5353)
    raw["ports"] = [{"name": "dns-udp", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}]
    caches.slices.put(("shop", "web-abc"), decode_slice(raw))
    caches.bindings.put(("shop", "web"), decode_binding({**binding(port=53, gate=False),
                                                         "metadata": {"name": "web", "namespace": "shop"}}))
    desired = DesiredState(caches=caches, provider_name="memory").compute(BindingKey("shop", "web"))
    assert desired is not None
    assert [(e.ip, e.port) for e in desired.endpoints] == [("10.1.0.1", 5353)]


def test_a_service_with_only_a_udp_port_of_that_number_has_no_such_port() -> None:
    caches = Caches()
    caches.services.put(("shop", "web"), decode_service(service(ports=[
        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])))
    caches.bindings.put(("shop", "web"), decode_binding(binding(port=53, gate=False)))
    check = DesiredState(caches=caches, provider_name="memory").problem(BindingKey("shop", "web"))
    reason, message = check.reason, check.message
    assert reason == "PortNotFound" and "53" in message
