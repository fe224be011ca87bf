"""Sweep points (negsync.sim.study): every point a validated scenario; what may be swept; decisions and uncertainty."""

from __future__ import annotations

from typing import Any

import pytest

from negsync.errors import ConfigError
from negsync.sim.loader import load_study
from negsync.sim.study import point_at, uncertain_by_default


def test_mechanism_fields_can_be_swept(small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.health_check_drain": [0, 10], "lb.retries": [0, 1]}
    study = load_study(small)
    assert len(study.points) == 4
    assert {p.scenario.lb.retries for p in study.points} == {0, 1}


def test_values_are_swept_in_order_without_repeats(small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": [30, 0, 10, 30.0]}
    assert [p.params for p in load_study(small).points] == [(("drain.pre_stop_sleep", v),) for v in (0, 10, 30)]
    small["sweep"] = {"drain.pre_stop_sleep": {"from": 0, "to": 1, "step": 0.25}}
    values = [p.params[0][1] for p in load_study(small).points]
    assert values == [0, 0.25, 0.5, 0.75, 1.0]


def test_a_swept_value_is_validated_like_a_written_one(small: dict[str, Any]) -> None:
    small["sweep"] = {"workload.replicas": {"from": 2, "to": 4, "step": 1}}
    points = load_study(small).points
    assert [p.scenario.workload.replicas for p in points] == [2, 3, 4]  # floats from the range become pod counts
    small["sweep"] = {"workload.replicas": [2, 2.5]}
    with pytest.raises(ConfigError) as err:
        load_study(small)
    assert err.value.field == "sweep.workload.replicas"
    assert "value 2.5 is invalid: workload.replicas: must be an integer" in err.value.message


def test_decisions_and_uncertain_axes(small: dict[str, Any]) -> None:
    assert not uncertain_by_default("drain.pre_stop_sleep") and not uncertain_by_default("workload.max_surge")
    assert uncertain_by_default("lb.detach_delay.p99") and uncertain_by_default("traffic.rps")
    small["sweep"] = {"drain.pre_stop_sleep": [0, 10], "lb.detach_delay.p99": [20, 30],
                      "traffic.rps": {"values": [100], "uncertain": False, "resolution": 10}}
    study = load_study(small)
    assert study.uncertain == ("lb.detach_delay.p99",)
    assert study.decisions == ("drain.pre_stop_sleep", "traffic.rps")
    assert study.resolution("traffic.rps") == 10 and study.resolution("drain.pre_stop_sleep") == 1


def test_a_point_off_the_grid_is_built_and_checked_the_same_way(small: dict[str, Any]) -> None:
    study = load_study(small)
    assert point_at(study, {"drain.pre_stop_sleep": 42}).scenario.drain.pre_stop_sleep == 42
    with pytest.raises(ConfigError) as err:
        point_at(study, {"drain.pre_stop_sleep": 95})  # the grace period is 90 s
    assert err.value.field == "sweep.drain.pre_stop_sleep"
