"""Desired endpoints from EndpointSlice records."""

from __future__ import annotations

from typing import Any

from negsync.core.endpoints import decode_slice, desired_endpoints


def slice_(name: str, endpoints: list[dict[str, Any]], *, family: str = "IPv4", port: int = 8080,
           port_name: str = "http", service: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def ep(ip: str, *, ready: bool = True, terminating: bool = False, pod: str = "", zone: str = "z1",
       node: str = "n1") -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
        "nodeName": node,
        "zone": zone,
        "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod or f"pod-{ip}", "uid": f"uid-{ip}"},
    }


def ips(result: Any) -> list[str]:
    return [e.ip for e in result.endpoints]


def test_ready_endpoints_of_the_named_port_are_desired() -> None:
    records = [decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2")]))]
    result = desired_endpoints(slices=records, port_name="http")
    assert ips(result) == ["10.0.0.1", "10.0.0.2"]
    assert {e.port for e in result.endpoints} == {8080}
    assert desired_endpoints(slices=records, port_name="metrics").endpoints == ()


def test_terminating_endpoints_are_excluded_but_tracked() -> None:
    records = [decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2", ready=False, terminating=True)]))]
    result = desired_endpoints(slices=records, port_name="http")
    assert ips(result) == ["10.0.0.1"]
    assert [e.ip for e in result.terminating] == ["10.0.0.2"]


def test_not_ready_pods_are_registered_only_when_they_carry_the_gate() -> None:
    records = [decode_slice(slice_("a", [ep("10.0.0.1", ready=False, pod="gated"), ep("10.0.0.2", ready=False)]))]
    without = desired_endpoints(slices=records, port_name="http")
    assert ips(without) == []
    with_gate = desired_endpoints(slices=records, port_name="http", gated_pods={("shop", "gated")})
    assert ips(with_gate) == ["10.0.0.1"]


def test_the_same_address_in_two_slices_counts_once() -> None:
    records = [
        decode_slice(slice_("a", [ep("10.0.0.1", ready=False)])),
        decode_slice(slice_("b", [ep("10.0.0.1")])),
    ]
    result = desired_endpoints(slices=records, port_name="http")
    assert ips(result) == ["10.0.0.1"]
    assert result.endpoints[0].ready


def test_family_filter_and_invalid_addresses_are_skipped_with_reasons() -> None:
    records = [
        decode_slice(slice_("v4", [ep("10.0.0.1"), ep("not-an-ip"), ep("fd00::1")])),
        decode_slice(slice_("v6", [ep("fd00::2")], family="IPv6")),
        decode_slice(slice_("fqdn", [ep("example.com")], family="FQDN")),
    ]
    v4 = desired_endpoints(slices=records, port_name="http")
    assert ips(v4) == ["10.0.0.1"]
    assert {s.address for s in v4.skipped} == {"not-an-ip", "fd00::1"}
    assert all(s.reason for s in v4.skipped)
    v6 = desired_endpoints(slices=records, port_name="http", ip_family="IPv6")
    assert ips(v6) == ["fd00::2"]


def test_port_out_of_range_and_missing_zone_are_skipped() -> None:
    records = [decode_slice(slice_("a", [ep("10.0.0.1")], port=70000)),
               decode_slice(slice_("b", [ep("10.0.0.2", zone="", node="n9"), ep("10.0.0.3", zone="", node="n2")]))]
    result = desired_endpoints(slices=records, port_name="http", node_zones={"n2": "z2"}, require_zone=True)
    assert ips(result) == ["10.0.0.3"]
    assert result.endpoints[0].zone == "z2"
    reasons = {s.address: s.reason for s in result.skipped}
    assert "out of range" in reasons["10.0.0.1"]
    assert "zone" in reasons["10.0.0.2"]


def test_decode_tolerates_missing_optional_fields() -> None:
    record = decode_slice({"metadata": {"name": "x", "namespace": "ns"}, "addressType": "IPv4", "endpoints": None})
    assert record.endpoints == () and record.ports == () and record.service == ""
    record = decode_slice({"metadata": {"name": "x"}, "addressType": "IPv4",
                           "endpoints": [{"addresses": ["10.1.1.1"]}], "ports": [{"port": 80}]})
    assert record.endpoints[0].ready and record.endpoints[0].serving and not record.endpoints[0].terminating
    assert record.ports == (("", 80, "TCP"),)
