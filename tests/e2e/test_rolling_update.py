"""The test that ties the simulator to the real controller (virtual time, deterministic).

A rolling update of 10 pods behind a slow load balancer (attach 5 s, detach 4 s):

* with readiness gates and drain-wait, no request is routed to a pod that stopped accepting;
* without them, the requests routed to stopped pods match what ``negsync simulate`` predicts for
  the same delays.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kubernetes import client

from negsync.cli import main
from tests.e2e.harness import Plan, RollingUpdate
from tests.emulators.kubeapi import KubeApiEmulator

TOLERANCE = 0.10  # relative; the harness integrates exactly, the simulator's mean has Poisson noise


def simulate(plan: Plan, tmp_path: Path, capsys: object) -> dict[str, float]:
    scenario = {
        "scenario": "rolling-update", "runs": 400, "seed": 7,
        "traffic": {"rps": plan.rps, "request_duration": {"dist": "fixed", "value": 0.01}},
        "workload": {"replicas": plan.replicas, "max_surge": plan.max_surge, "max_unavailable": plan.max_unavailable,
                     "startup": {"dist": "fixed", "value": plan.startup}, "shutdown": "on-sigterm"},
        "lb": {"preset": "gcp-neg", "attach_delay": {"dist": "fixed", "value": plan.attach_delay},
               "detach_delay": {"dist": "fixed", "value": plan.detach_delay}, "health_check": None,
               "deregistration_delay": 30,
               "retries": 0},  # the harness's LB retries nothing (the gcp-neg preset's GFE retries once)
        "controller": {"reaction": {"dist": "fixed", "value": 0}, "readiness_gate": plan.readiness_gate},
        "drain": {"pre_stop_sleep": plan.pre_stop_sleep, "termination_grace_period": plan.grace},
        "objective": {"failed_requests": 0, "quantile": 0.99},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert main(["simulate", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    point = report["points"][0]
    return {"routed_after_stop": point["failed_requests"]["by_cause"]["routed_after_stop"],
            "no_capacity": point["failed_requests"]["by_cause"]["no_capacity"],
            "duration": point["duration_seconds"]["mean"]}


def test_without_gates_and_drain_wait_failures_match_the_simulator(
    kube: KubeApiEmulator, api_client: client.ApiClient, tmp_path: Path, capsys: object
) -> None:
    plan = Plan(readiness_gate=False, drain_wait=False, pre_stop_sleep=0.0)
    rollout = RollingUpdate(kube, api_client, plan)
    try:
        outcome = rollout.run()
    finally:
        rollout.close()
    predicted = simulate(plan, tmp_path, capsys)
    assert outcome.routed_after_stop > 100  # the delays really do hurt without drain handling
    assert abs(outcome.routed_after_stop - predicted["routed_after_stop"]) <= TOLERANCE * predicted["routed_after_stop"]
    assert abs(outcome.no_capacity - predicted["no_capacity"]) <= max(1.0, TOLERANCE * predicted["no_capacity"])


def test_with_gates_and_drain_wait_no_request_reaches_a_stopped_pod(
    kube: KubeApiEmulator, api_client: client.ApiClient
) -> None:
    plan = Plan(readiness_gate=True, drain_wait=True, drain_margin=5.0)
    rollout = RollingUpdate(kube, api_client, plan)
    try:
        outcome = rollout.run()
    finally:
        rollout.close()
    assert outcome.routed_after_stop == 0
    assert outcome.no_capacity == 0
    assert outcome.min_routed >= plan.replicas  # gates kept capacity: never fewer routed than replicas
