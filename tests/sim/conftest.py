from __future__ import annotations

import copy
from typing import Any

import pytest

SMALL: dict[str, Any] = {
    "scenario": "rolling-update",
    "runs": 200,
    "seed": 3,
    "traffic": {"rps": 100, "request_duration": {"dist": "lognormal", "p50": 0.05, "p99": 0.5}},
    "workload": {"replicas": 4, "max_surge": 1, "max_unavailable": 0,
                 "startup": {"dist": "uniform", "min": 1, "max": 3}},
    "lb": {"preset": "gcp-neg"},
    "drain": {"pre_stop_sleep": 5, "termination_grace_period": 90},
    "sweep": {"drain.pre_stop_sleep": [0, 10, 60]},
}


@pytest.fixture
def small() -> dict[str, Any]:
    return copy.deepcopy(SMALL)
