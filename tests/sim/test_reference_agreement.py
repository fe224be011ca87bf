"""The vectorized engine agrees with the per-request SimPy reference on each cause's mean.

Tolerance: |reference mean - engine mean| <= 4 standard errors of the reference mean
(+ 0.5 requests), with the engine run at many more runs than the (slow) reference.  Scenarios
are small and fast but exercise every cause: health checks, readiness gate on and off, a short
deregistration delay and grace period (killed_in_flight) and a drain of every pod on a node
(no_capacity).
"""

from __future__ import annotations

from typing import Any

import pytest

from negsync.sim.loader import load_study
from negsync.sim.scenario import CAUSES
from negsync.sim.vectorized import simulate
from tests.sim.reference import mean_absorbed, mean_by_cause, run_reference

BASE: dict[str, Any] = {
    "runs": 4000,
    "seed": 5,
    "traffic": {"rps": 80, "request_duration": {"dist": "lognormal", "p50": 0.3, "p99": 3}},
    "workload": {"replicas": 4, "max_surge": 1, "max_unavailable": 1, "remove": 1, "pods_per_node": 4,
                 "startup": {"dist": "uniform", "min": 1, "max": 3}},
    "lb": {"attach_delay": {"dist": "uniform", "min": 2, "max": 6},
           "detach_delay": {"dist": "lognormal", "p50": 3, "p99": 8},
           "health_check": {"interval": 2, "timeout": 1, "healthy_threshold": 2, "unhealthy_threshold": 2},
           "deregistration_delay": 1},
    "controller": {"reaction": {"dist": "exponential", "mean": 0.5}, "readiness_gate": False},
    "drain": {"pre_stop_sleep": 2, "termination_grace_period": 4},
}

CASES = {
    "rolling-update": {"scenario": "rolling-update"},
    "rolling-update-gated-sigkill": {
        "scenario": "rolling-update",
        "controller": {"reaction": {"dist": "exponential", "mean": 0.5}, "readiness_gate": True},
        "workload": {**BASE["workload"], "max_unavailable": 0, "shutdown": "on-sigkill"},
    },
    "scale-down": {"scenario": "scale-down"},
    "node-drain": {"scenario": "node-drain"},
    # the 502 mechanisms without a closed form in a full rollout (docs/simulation.md, "Mechanisms")
    "rolling-update-retries-zones": {
        "scenario": "rolling-update",
        "traffic": {**BASE["traffic"], "retryable_share": 0.8, "client_retry_share": 0.5},
        "workload": {**BASE["workload"], "zones": 2, "max_unavailable": 2},
        "lb": {**BASE["lb"], "retries": 1, "cross_zone": False},
    },
    "scale-down-health-drain": {
        "scenario": "scale-down",
        "workload": {**BASE["workload"], "remove": 2},
        "lb": {**BASE["lb"], "unhealthy_propagation": 1.5,
               "detach_delay": {"dist": "lognormal", "p50": 8, "p99": 15}},
        "drain": {"pre_stop_sleep": 0.5, "termination_grace_period": 6, "health_check_drain": 2},
    },
    "rolling-update-nlb-connections": {
        "scenario": "rolling-update",
        "traffic": {**BASE["traffic"], "connection_lifetime": {"dist": "uniform", "min": 2, "max": 6}},
        "lb": {**BASE["lb"], "routing": "connections", "connection_termination": False},
        "drain": {"pre_stop_sleep": 4, "termination_grace_period": 9},
    },
    "node-drain-min-ready-zones": {
        "scenario": "node-drain",
        "workload": {**BASE["workload"], "pods_per_node": 2, "zones": 2, "min_ready_seconds": 2},
        "lb": {**BASE["lb"], "cross_zone": False, "connection_termination": False},
        "controller": {"reaction": {"dist": "exponential", "mean": 0.5}, "readiness_gate": True},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_agrees_with_reference(case: str) -> None:
    scenario = load_study({**BASE, **CASES[case]}).base
    engine = simulate(scenario)
    runs = run_reference(scenario, runs=60, seed=17)
    reference = mean_by_cause(runs)
    for cause in CAUSES:
        ref_mean, ref_se = reference[cause]
        engine_mean = float(engine.expected[cause].mean())
        assert abs(ref_mean - engine_mean) <= 4 * ref_se + 0.5, (cause, ref_mean, ref_se, engine_mean)
    assert sum(m for m, _ in reference.values()) > 0
    assert engine.expected_absorbed is not None
    for path, (ref_mean, ref_se) in mean_absorbed(runs).items():
        engine_mean = float(engine.expected_absorbed[path].mean())
        assert abs(ref_mean - engine_mean) <= 4 * ref_se + 0.5, (path, ref_mean, ref_se, engine_mean)
