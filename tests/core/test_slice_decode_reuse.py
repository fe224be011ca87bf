"""decode_slice(raw, previous): unchanged endpoints are taken over, and the result is what a fresh decode gives."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from negsync.core.endpoints import decode_slice, desired_endpoints
from tests.core.test_endpoints import ep, slice_


def test_unchanged_endpoints_are_the_previous_records_and_changed_ones_are_new() -> None:
    first = decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3")]))
    second = decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2", ready=False, terminating=True),
                                       ep("10.0.0.4")]), first)
    assert second == decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2", ready=False, terminating=True),
                                              ep("10.0.0.4")]))
    assert second.endpoints[0] is first.endpoints[0]
    assert second.endpoints[1] is not first.endpoints[1] and second.endpoints[1].terminating
    assert second.endpoints[2].address == "10.0.0.4"
    # Nothing changed at all: the very same tuple, so the change filter compares identities.
    third = decode_slice(slice_("a", [ep("10.0.0.1"), ep("10.0.0.2", ready=False, terminating=True),
                                      ep("10.0.0.4")]), second)
    assert third.endpoints is second.endpoints


def test_an_address_family_change_takes_nothing_over() -> None:
    # The address check is made for the slice's family: a record of another family is not reused.
    v6 = decode_slice(slice_("a", [ep("10.0.0.1")], family="IPv6"))
    assert v6.endpoints[0].problem == "not an IPv6 address"
    v4 = decode_slice(slice_("a", [ep("10.0.0.1")]), v6)
    assert v4.endpoints[0].problem is None


def test_address_checks_keep_nothing_once_the_endpoints_are_gone() -> None:
    # Issue 18 soak: the checks were memoized in an lru_cache of 262,144 addresses (~164 B each)
    # that filled with every pod IP ever seen and never shrank.
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(40):
            ips = [f"10.{n}.{k // 250}.{k % 250 + 1}" for k in range(500)]
            record = decode_slice(slice_("a", [ep(ip) for ip in ips]))
            assert len(desired_endpoints(slices=[record], port_name="http").endpoints) == 500
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 20_000 * 8, retained  # 20,000 addresses checked: well under a pointer each


_IPS = [f"10.0.0.{n}" for n in range(1, 9)] + ["not-an-ip", "127.0.0.1", "fd00::1"]
_endpoint = st.builds(
    lambda ip, ready, terminating, node, zone, pod, serving: {
        **ep(ip, ready=ready, terminating=terminating, node=node, zone=zone, pod=pod),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    },
    st.sampled_from(_IPS), st.booleans(), st.booleans(), st.sampled_from(["n1", "n2", ""]),
    st.sampled_from(["z1", "z2", ""]), st.sampled_from(["p1", "p2", ""]), st.sampled_from([True, False, None]),
)
_slice = st.tuples(st.lists(_endpoint, max_size=8), st.sampled_from(["IPv4", "IPv6"]), st.sampled_from([8080, 70000]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_slice, min_size=1, max_size=8))
def test_a_stream_of_updates_decodes_and_computes_as_a_full_recompute_does(updates: list[Any]) -> None:
    """The incremental path (each update decoded against the previous record) equals decoding from scratch."""
    previous = None
    for endpoints, family, port in updates:
        raw = slice_("a", endpoints, family=family, port=port)
        incremental = decode_slice(raw, previous)
        fresh = decode_slice(raw)
        assert incremental == fresh
        for ip_family in ("IPv4", "IPv6"):
            args: dict[str, Any] = {"port_name": "http", "ip_family": ip_family, "gated_pods": {("shop", "p1")},
                                    "node_zones": {"n1": "z9"}, "require_zone": True}
            assert desired_endpoints(slices=[incremental], **args) == desired_endpoints(slices=[fresh], **args)
        previous = incremental


def _reference_problem(address: str, family: str) -> str | None:
    """The check as ipaddress alone makes it (the fast path must agree with it everywhere)."""
    import ipaddress

    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if (parsed.version == 4) != (family == "IPv4"):
        return f"not an {family} address"
    if parsed.is_unspecified or parsed.is_loopback or parsed.is_multicast or parsed.is_link_local:
        return "not a routable pod address"
    return None


_octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "0x1", "", " 1", "1 ", "-1"]))
_address = st.one_of(
    st.tuples(_octet, _octet, _octet, _octet).map(".".join),
    st.sampled_from(["0.0.0.0", "127.0.0.1", "224.0.0.1", "239.255.255.255", "240.0.0.1", "169.254.1.1",
                     "169.253.1.1", "10.0.0.1", "1.2.3", "1.2.3.4.5", "::1", "fd00::1", "::ffff:10.0.0.1",
                     "10.0.0.1%eth0", "１.2.3.4"]),
    st.text(max_size=20),
)


@settings(max_examples=500, deadline=None)
@given(_address, st.sampled_from(["IPv4", "IPv6"]))
def test_the_fast_ipv4_check_agrees_with_ipaddress(address: str, family: str) -> None:
    from negsync.core.endpoints import _address_problem

    assert _address_problem(address, family) == _reference_problem(address, family)
