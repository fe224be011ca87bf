"""Membership instants (negsync.sim.lifecycle): each pod's a, b, e, k against the lifecycle written out by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from negsync.sim.lifecycle import BIG, Streams, build_timeline, serving_minimum
from negsync.sim.loader import load_study
from negsync.sim.scenario import Scenario

RUNS = 50


def _scenario(*, kind: str = "scale-down", workload: dict[str, Any] | None = None, lb: dict[str, Any] | None = None,
              drain: dict[str, Any] | None = None, controller: dict[str, Any] | None = None) -> Scenario:
    return load_study({
        "scenario": kind, "runs": RUNS, "seed": 5,
        "traffic": {"rps": 100, "request_duration": {"dist": "fixed", "value": 2}},
        "workload": {"replicas": 4, "remove": 1, "startup": 2, **(workload or {})},
        "lb": {"attach_delay": 5, "detach_delay": 10, "health_check": None, "deregistration_delay": 30, **(lb or {})},
        "controller": {"reaction": 1, **(controller or {})},
        "drain": {"pre_stop_sleep": 5, "termination_grace_period": 90, **(drain or {})},
    }).base


def _timeline(s: Scenario) -> Any:
    return build_timeline(s, RUNS, Streams(s.seed))


def test_a_removed_pod_with_fixed_delays() -> None:
    """Deleted at 0: detach issued at reaction 1, done at 11; SIGTERM after the 5 s preStop; cut 30 s after the detach."""
    tl = _timeline(_scenario())
    assert (tl.removed, tl.base) == (1, 3)
    assert np.all(tl.a == -BIG)
    assert np.all(tl.b == 11) and np.all(tl.e == 5) and np.all(tl.k == 41)
    assert tl.exit is not None and np.all(tl.exit == 7)  # stops accepting at 5, in-flight p99 2 s
    assert np.all(tl.duration == 11)  # out of rotation at 11, after its process exited at 7


def test_on_sigkill_the_app_serves_until_the_grace_period() -> None:
    tl = _timeline(_scenario(workload={"shutdown": "on-sigkill"}, lb={"deregistration_delay": 300}))
    assert np.all(tl.e == 90) and np.all(tl.k == 90)  # SIGKILL, before the deregistration delay ends


def test_failing_health_checks_stop_routing_before_a_slow_detach() -> None:
    """From SIGTERM at 5: next check within 10 s, one more after it, a hanging check's 5 s timeout."""
    hc = {"interval": 10, "timeout": 5, "healthy_threshold": 1, "unhealthy_threshold": 2}
    tl = _timeline(_scenario(lb={"detach_delay": 100, "health_check": hc}))
    assert np.all(tl.b >= 5 + 10 + 5) and np.all(tl.b < 5 + 10 + 10 + 5)
    assert np.ptp(tl.b) > 0  # the checker's phase is random
    later = _timeline(_scenario(lb={"detach_delay": 100, "health_check": hc, "unhealthy_propagation": 40}))
    assert np.allclose(later.b, tl.b + 40)  # the same phases (common random numbers), propagated 40 s later


@pytest.mark.parametrize(("gate", "created", "deleted"), [(True, (0, 9, 18), (9, 18, 27)), (False, (0, 2, 4), (2, 4, 6))])
def test_a_rolling_update_replaces_one_pod_per_available_one(gate: bool, created: tuple[int, ...],
                                                             deleted: tuple[int, ...]) -> None:
    """Surge 1: routed 2 + 1 + 5 = 8 s after creation; available then + the gate's 1 s reaction, or at startup (2 s)."""
    s = _scenario(kind="rolling-update", workload={"replicas": 3, "max_surge": 1, "max_unavailable": 0},
                  controller={"readiness_gate": gate})
    tl = _timeline(s)
    assert (tl.removed, tl.base) == (3, 0)
    assert np.all(tl.a[:, 3:] == np.array(created) + 8)
    assert np.all(tl.b[:, :3] == np.array(deleted) + 11)  # each old pod: detach done 11 s after its deletion
    assert np.all(tl.duration == deleted[-1])  # the last new pod available


def test_zones_are_spread_round_robin() -> None:
    tl = _timeline(_scenario(workload={"replicas": 6, "remove": 2, "zones": 3}))
    assert tl.zone is not None and tl.zone.tolist() == [0, 1]
    assert tl.base_by_zone == (1, 1, 2)  # pods 2..5 sit in zones 2, 0, 1, 2


def test_serving_minimum_counts_pods_both_routed_and_accepting() -> None:
    """The removed pod stops accepting at 0 while still routed until 11: 3 of 4 serve."""
    assert np.all(serving_minimum(_timeline(_scenario(drain={"pre_stop_sleep": 0}))) == 3)
    rollout = _scenario(kind="rolling-update", workload={"replicas": 3, "max_surge": 0, "max_unavailable": 1},
                        drain={"pre_stop_sleep": 0})
    assert np.all(serving_minimum(_timeline(rollout)) == 2)  # one old pod gone before its replacement
