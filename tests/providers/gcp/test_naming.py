"""NEG names and GCP target references (negsync/providers/gcp/naming.py)."""

from __future__ import annotations

import pytest

from negsync.core.model import BindingKey, TargetRef
from negsync.errors import (
    InvalidTarget,
)
from negsync.providers.gcp import (
    MAX_NAME_LENGTH,
    neg_name,
    parse_location,
)

from .conftest import (
    KEY,
    OTHER,
    PROJECT,
    RFC1035,
    UID,
    ZONE_A,
    ref,
)

pytestmark = pytest.mark.timeout(30)


def test_name_is_deterministic_rfc1035_and_at_most_63_chars() -> None:
    name = neg_name(prefix="k8s", cluster_uid=UID, binding=KEY)
    assert name == neg_name(prefix="k8s", cluster_uid=UID, binding=KEY)
    assert name.startswith("k8s-0f3c2a9e-shop-web-") and len(name) <= MAX_NAME_LENGTH
    assert RFC1035.match(name)
    assert name != neg_name(prefix="k8s", cluster_uid=UID, binding=OTHER)
    assert name != neg_name(prefix="k8s", cluster_uid="another-cluster", binding=KEY)


def test_name_trims_namespace_and_binding_fairly() -> None:
    long_ns, long_name = "n" * 63, "b" * 253
    both = neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey(long_ns, long_name))
    assert len(both) == MAX_NAME_LENGTH and RFC1035.match(both)
    _, _, ns_part, name_part, _ = both.split("-")
    assert abs(len(ns_part) - len(name_part)) <= 1  # equal shares when both are long
    # A short field keeps its length and hands its unused share to the long one.
    short = neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey("a", long_name))
    assert len(short) == MAX_NAME_LENGTH and short.split("-")[2] == "a"
    assert len(short.split("-")[3]) > len(name_part)
    # Names that only differ after the trim point still differ (the hash covers the full input).
    assert both != neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey(long_ns, long_name + "x"))
    # The longest allowed prefix still fits; dots in a binding name become hyphens.
    longest = neg_name(prefix="p" * 20, cluster_uid=UID, binding=BindingKey(long_ns, "a.b." + long_name))
    assert len(longest) == MAX_NAME_LENGTH and RFC1035.match(longest)


def test_parse_location() -> None:
    assert parse_location(ref()) == (PROJECT, ZONE_A)
    with pytest.raises(InvalidTarget):
        parse_location(TargetRef("gcp", ZONE_A, "x"))
