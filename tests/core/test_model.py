"""The shared value types (:mod:`negsync.core.model`): their text forms, parsing, and what health means."""

from __future__ import annotations

import dataclasses

import pytest

from negsync.core.model import BindingKey, Endpoint, Health, PodRef, TargetEndpoint, TargetRef


def test_a_binding_key_prints_and_parses_as_namespace_slash_name() -> None:
    key = BindingKey("shop", "web")
    assert str(key) == "shop/web" and BindingKey.parse(str(key)) == key


@pytest.mark.parametrize("text", ["web", "/web", "shop/", ""])
def test_a_binding_key_without_both_parts_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="namespace/name"):
        BindingKey.parse(text)


def test_an_endpoint_targets_its_ip_port_and_node_and_forgets_the_rest() -> None:
    endpoint = Endpoint("10.0.0.7", 8080, zone="eu-west-1a", node="vm-1", pod=PodRef("shop", "web-0", "u1"),
                        ready=False, terminating=True)
    assert endpoint.target == TargetEndpoint("10.0.0.7", 8080, "vm-1")
    # Records are frozen: a cached endpoint handed out cannot be changed under the cache.
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.ready = True  # type: ignore[misc]


def test_target_endpoints_name_the_instance_only_when_there_is_one() -> None:
    assert str(TargetEndpoint("10.0.0.7", 8080)) == "10.0.0.7:8080"
    assert str(TargetEndpoint("10.0.0.7", 8080, "vm-1")) == "10.0.0.7:8080@vm-1"
    # The instance is part of the identity: on GCP the same IP:port on another VM is another member.
    assert TargetEndpoint("10.0.0.7", 8080, "vm-1") != TargetEndpoint("10.0.0.7", 8080, "vm-2")


def test_a_target_ref_prints_kind_location_and_name() -> None:
    assert str(TargetRef("gcp", "us-central1-a", "k8s-neg")) == "gcp:us-central1-a/k8s-neg"


def test_only_a_draining_member_counts_as_absent() -> None:
    assert [h for h in Health if not h.counts_as_present] == [Health.DRAINING]


def test_only_healthy_or_unchecked_members_let_the_readiness_gate_pass() -> None:
    assert {h for h in Health if h.lets_gate_pass} == {Health.HEALTHY, Health.NO_HEALTH_CHECK}


def test_health_values_are_the_strings_status_and_metrics_carry() -> None:
    assert Health("no-health-check") is Health.NO_HEALTH_CHECK and f"{Health.DRAINING}" == "draining"
