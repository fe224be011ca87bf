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
    # GKE container-native LB (NEG).  Health check: Ingress-controller defaults (15 s interval,
    # 15 s timeout, healthy 1, unhealthy 2).  Attach/detach: "tens of seconds" (estimates).
    # Connection draining: GCP default 0 (disabled); 30 s assumed, the usual BackendConfig choice.
    "gcp-neg": {
        "attach_delay": {"dist": "lognormal", "p50": 20, "p99": 90},
        "detach_delay": {"dist": "lognormal", "p50": 10, "p99": 30},
        "health_check": {"interval": 15, "timeout": 15, "healthy_threshold": 1, "unhealthy_threshold": 2},
        "deregistration_delay": 30,
    },
    # AWS ALB via the LB Controller.  Health check: Ingress annotation defaults (15 s, 5 s, 2/2),
    # but a newly registered ALB target needs one passing check, and the model only uses the
    # healthy threshold for new targets, hence 1.  ELBv2 deregistration delay default 300 s.
    "aws-alb": {
        "attach_delay": {"dist": "lognormal", "p50": 10, "p99": 40},
        "detach_delay": {"dist": "lognormal", "p50": 5, "p99": 20},
        "health_check": {"interval": 15, "timeout": 5, "healthy_threshold": 1, "unhealthy_threshold": 2},
        "deregistration_delay": 300,
    },
    # AWS NLB, IP targets.  Registration "90 to 180 seconds" (LBC #1834), up to "4~5 mins"
    # (LBC #1786); deregistration "at least 2 minutes regardless of the deregistration delay"
    # (LBC #2366).  Health check: Service annotation defaults (10 s, 10 s, 3/3).
    "aws-nlb": {
        "attach_delay": {"dist": "lognormal", "p50": 100, "p99": 270},
        "detach_delay": {"dist": "uniform", "min": 120, "max": 180},
        "health_check": {"interval": 10, "timeout": 10, "healthy_threshold": 3, "unhealthy_threshold": 3},
        "deregistration_delay": 300,
    },
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of the named preset's raw ``lb`` fields (KeyError if unknown)."""
    return copy.deepcopy(PRESETS[name])
