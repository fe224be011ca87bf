"""The scenario schema (negsync.sim.scenario): what a file may say, what it means, and the field an error names.

The CLI's one-line contract for these errors is tested in test_command.py and the bad-input corpus;
here the schema itself: the mechanism fields, Deployment percentages, the checks that span fields,
and that a validated scenario is a frozen value.
"""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from negsync.errors import ConfigError
from negsync.sim.loader import load_study
from negsync.sim.presets import PRESETS
from negsync.sim.scenario import KINDS, Kind, PresetName, Scenario, parse_scenario


@pytest.mark.parametrize(("section", "key", "value", "field"), [
    ("lb", "routing", "flows", "lb.routing"),
    ("lb", "connection_termination", "yes", "lb.connection_termination"),
    ("lb", "retries", -1, "lb.retries"),
    ("lb", "cross_zone", 1, "lb.cross_zone"),
    ("lb", "idle_timeout", 0, "lb.idle_timeout"),
    ("lb", "unhealthy_propagation", -5, "lb.unhealthy_propagation"),
    ("lb", "connections_per_endpoint", 0, "lb.connections_per_endpoint"),
    ("traffic", "retryable_share", 1.5, "traffic.retryable_share"),
    ("traffic", "client_retry_share", -0.1, "traffic.client_retry_share"),
    ("traffic", "connection_lifetime", {"dist": "fixed"}, "traffic.connection_lifetime.value"),
    ("workload", "zones", 9, "workload.zones"),
    ("workload", "pod_capacity", 0, "workload.pod_capacity"),
    ("workload", "keepalive_timeout", "5s", "workload.keepalive_timeout"),
    ("workload", "min_ready_seconds", -1, "workload.min_ready_seconds"),
    ("drain", "health_check_drain", -2, "drain.health_check_drain"),
])
def test_bad_mechanism_values_name_the_field(small: dict[str, Any], section: str, key: str, value: Any,
                                             field: str) -> None:
    raw = copy.deepcopy(small)
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as err:
        load_study(raw)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", 0, 10, (3, 0)),  # surge rounds up: 2.5 -> 3
        (0, "25%", 10, (0, 2)),  # unavailable rounds down: 2.5 -> 2
        ("25%", "25%", 4, (1, 1)),
        ("1%", "1%", 10, (1, 0)),  # 0.1 -> surge 1, unavailable 0
        ("0%", "5%", 10, (0, 1)),  # both round to 0: Kubernetes sets unavailable to 1
        ("100%", "100%", 3, (3, 3)),
    ],
)
def test_max_surge_and_max_unavailable_accept_percentages(
    small: dict[str, Any], surge: Any, unavailable: Any, replicas: int, expected: tuple[int, int]
) -> None:
    small["workload"].update(max_surge=surge, max_unavailable=unavailable, replicas=replicas)
    workload = load_study(small).base.workload
    assert (workload.max_surge, workload.max_unavailable) == expected


@pytest.mark.parametrize(("kind", "workload", "field"), [
    ("scale-down", {"replicas": 3, "remove": 3}, "workload.remove"),
    ("node-drain", {"replicas": 3, "pods_per_node": 4}, "workload.pods_per_node"),
    ("rolling-update", {"replicas": 3, "max_surge": 0, "max_unavailable": "0%"}, "workload.max_surge"),
    ("rolling-update", {"replicas": 3, "zones": 4}, "workload.zones"),
])
def test_checks_across_fields_name_the_field_they_blame(small: dict[str, Any], kind: str, workload: dict[str, Any],
                                                         field: str) -> None:
    small.update(scenario=kind, workload=workload)
    with pytest.raises(ConfigError) as err:
        load_study(small)
    assert err.value.field == field


def test_what_one_kind_refuses_another_accepts(small: dict[str, Any]) -> None:
    small.update(scenario="rolling-update", workload={"replicas": 3, "remove": 3, "pods_per_node": 3})
    assert load_study(small).base.workload.remove == 3  # only a scale-down removes pods


@pytest.mark.parametrize(("change", "field"), [
    ({"traffic": {"rps": "x"}, "drain": {"pre_stop_sleep": -1}}, "traffic.rps"),
    ({"workload": {"replicas": 0}, "lb": {"preset": "azure"}}, "workload.replicas"),
    ({"lb": {"preset": "gcp-neg", "retries": 99}, "objective": {"quantile": 7}}, "lb.retries"),
])
def test_the_first_error_in_file_order_is_reported(small: dict[str, Any], change: dict[str, Any], field: str) -> None:
    small.update(change)
    with pytest.raises(ConfigError) as err:
        load_study(small)
    assert err.value.field == field


def test_a_scenario_is_a_frozen_value(small: dict[str, Any]) -> None:
    scenario = load_study(small).base
    with pytest.raises(ValidationError):
        scenario.traffic.rps = 5.0  # type: ignore[misc]
    assert isinstance(scenario.traffic.rps, float) and isinstance(scenario.workload.replicas, int)


def test_the_file_keys_are_the_contract() -> None:
    """``scenario:`` (not the attribute name ``kind``) is the key; the choices are the documented ones."""
    raw = {"scenario": "scale-down", "traffic": {"rps": 1}, "workload": {"replicas": 2},
           "lb": {"attach_delay": 1, "detach_delay": 1, "health_check": None, "deregistration_delay": 0}}
    assert parse_scenario(raw).kind == "scale-down"
    with pytest.raises(ConfigError) as err:
        parse_scenario({**{k: v for k, v in raw.items() if k != "scenario"}, "kind": "scale-down"})
    assert err.value.field == "scenario" and err.value.message.startswith("required")  # kind: does not stand in
    assert get_args(Kind) == KINDS
    assert set(get_args(PresetName)) == set(PRESETS)
    assert list(Scenario.model_fields) == ["kind", "runs", "seed", "traffic", "workload", "lb", "controller", "drain",
                                           "sweep", "objective"]
