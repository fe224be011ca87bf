"""The mechanism fields: defaults keep old scenarios' meaning; bad values name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from negsync.errors import ConfigError
from negsync.sim.loader import load_study, resolve


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


def test_resolved_form_shows_every_mechanism_default(small: dict[str, Any]) -> None:
    small["lb"] = {"preset": "aws-nlb"}
    resolved = resolve(small)
    assert resolved["lb"]["routing"] == "connections"
    assert resolved["lb"]["connection_termination"] is False
    assert resolved["workload"]["zones"] == 1
    assert resolved["drain"]["health_check_drain"] == 0
    small["lb"] = {"preset": "aws-nlb", "routing": "requests"}  # a user key overrides the preset
    assert resolve(small)["lb"]["routing"] == "requests"


def test_mechanism_fields_can_be_swept(small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.health_check_drain": [0, 10], "lb.retries": [0, 1]}
    study = load_study(small)
    assert len(study.points) == 4
    assert {p.scenario.lb.retries for p in study.points} == {0, 1}


def test_recommended_grace_covers_the_health_check_drain(small: dict[str, Any]) -> None:
    """The app serves health_check_drain seconds after SIGTERM: SIGKILL must not come before."""
    from negsync.sim.report import recommend
    from negsync.sim.sweep import run_study

    small["drain"] = {"pre_stop_sleep": 5, "termination_grace_period": 300}
    small["sweep"] = {"drain.health_check_drain": [0, 60, 120]}
    small["runs"] = 50
    study = load_study(small)
    rec = recommend(study, run_study(study))
    drain = rec["drain.health_check_drain"]
    assert drain is not None and drain > 0
    assert rec["drain.termination_grace_period"] >= rec["drain.pre_stop_sleep"] + drain
