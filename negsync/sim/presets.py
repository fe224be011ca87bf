"""Load-balancer presets: public figures for GKE NEG, AWS ALB and AWS NLB membership changes.

A preset is the raw scenario-file form of the ``lb`` section (plain dicts, not parsed values) so
that it goes through exactly the same validation as user input, and so that a user's ``lb`` keys
override a preset key by key (``health_check`` is merged field by field; a distribution is
replaced whole, since its keys depend on its ``dist``).  Every figure is cited in
``docs/simulation.md``; where no public measurement exists the value is marked as an estimate
there.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # GKE container-native LB (NEG) behind GFE.  Health check: Ingress-controller defaults (15 s
    # interval, 15 s timeout, healthy 1, unhealthy 2).  Connection draining: GCP default 0
    # (disabled); 30 s assumed, the usual BackendConfig choice.  GFE retries a failed request
    # once ("two attempts", GCP external Application LB docs, timeouts and retries); its backend
    # keep-alive timeout is 600 s, fixed (GCP docs, request distribution).  detach_delay is FITTED
    # to ingress-gce #769 (96 failed requests in an 11-pod rollout at 100 rps, no preStop,
    # minReadySeconds 180): see docs/simulation.md "Fits" and tests/sim/test_fits.py.  Refit in
    # 2026-12 (was p50 10 s p99 30 s, no retries: 1,073 predicted for that case).
    "gcp-neg": {
        "attach_delay": {"dist": "lognormal", "p50": 20, "p99": 90},
        "detach_delay": {"dist": "lognormal", "p50": 4, "p99": 20},
        "health_check": {"interval": 15, "timeout": 15, "healthy_threshold": 1, "unhealthy_threshold": 2},
        "deregistration_delay": 30,
        "retries": 1,
        "idle_timeout": 600,
    },
    # AWS ALB via the LB Controller.  Health check: Ingress annotation defaults (15 s, 5 s, 2/2),
    # but a newly registered ALB target needs one passing check, and the model only uses the
    # healthy threshold for new targets, hence 1.  ELBv2 deregistration delay default 300 s; ALB
    # idle timeout default 60 s; ALB answers 502 on a refused connection (no retry).  detach_delay
    # is FITTED to LBC #1064 (5 s preStop not enough, 25 s gave 100 % availability) and the public
    # 15-60 s zero-error range (#1064, #2106).  Refit in 2026-12 (was p50 5 s p99 20 s).
    "aws-alb": {
        "attach_delay": {"dist": "lognormal", "p50": 10, "p99": 40},
        "detach_delay": {"dist": "lognormal", "p50": 3, "p99": 12},
        "health_check": {"interval": 15, "timeout": 5, "healthy_threshold": 1, "unhealthy_threshold": 2},
        "deregistration_delay": 300,
        "retries": 0,
        "idle_timeout": 60,
    },
    # AWS NLB, IP targets.  Registration "90 to 180 seconds" (LBC #1834), up to "4~5 mins"
    # (LBC #1786).  Deregistration: new connections keep arriving for "about two minutes" even
    # with a 0-5 s deregistration delay (containers-roadmap #470, 2023-08; LBC #3270, 2023-07;
    # LBC #2366, 2022: "consistently 2 minutes"); 30-40 s after a target turns unhealthy before
    # new connections stop (#470).  Health check: Service annotation defaults (10 s, 10 s, 3/3).
    # An L4 LB routes connections; connection termination at the end of the deregistration delay
    # is off by default (LBC target group attribute default); cross-zone load balancing is off by
    # default for NLB; TCP idle timeout 350 s.  Refit in 2026-12 (detach was uniform 120-180 s,
    # no unhealthy propagation, per-request routing).
    "aws-nlb": {
        "attach_delay": {"dist": "lognormal", "p50": 100, "p99": 270},
        "detach_delay": {"dist": "uniform", "min": 120, "max": 130},
        "health_check": {"interval": 10, "timeout": 10, "healthy_threshold": 3, "unhealthy_threshold": 3},
        "deregistration_delay": 300,
        "unhealthy_propagation": 40,
        "routing": "connections",
        "connection_termination": False,
        "cross_zone": False,
        "retries": 0,
        "idle_timeout": 350,
    },
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of the named preset's raw ``lb`` fields (KeyError if unknown)."""
    return copy.deepcopy(PRESETS[name])
