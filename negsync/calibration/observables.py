"""Each simulator parameter as an observable, and which source measures it.

The simulator (:mod:`negsync.sim.lifecycle`) composes a new pod's way into rotation as
``startup + controller.reaction + lb.attach_delay [+ health-check wait]`` and a removed pod's
way out as ``controller.reaction + lb.detach_delay`` (or the health check failing first).  So:

``controller.reaction``
    endpoint change seen by the controller → cloud call issued.  Measured by the controller
    (``negsync_reaction_latency_seconds``, both operations: the engine uses one distribution).
``lb.detach_delay``
    detach call issued → the LB routes its **last** request to the endpoint.  Measured by joining
    the timeline with access logs: ``last routed − detach issued``; the part after the call
    returned (``last routed − detach done``) is reported as *detach propagation*.
    ``negsync_detach_latency_seconds`` (the call's own duration, ~0.1 s for DeregisterTargets)
    is only the first part and **cannot** calibrate it: ``--from`` refuses to use it.
``lb.attach_delay``
    attach call done → the LB routes its **first** request to the endpoint (*attach
    propagation*, ``first routed − attach done``).  This already contains the health-check
    wait, so a calibrated scenario sets ``lb.attach_delay_includes_health_check: true`` and the
    engine does not add the wait again.  ``negsync_attach_healthy_latency_seconds`` (attach done →
    first healthy read) is a coarser stand-in: it also contains the health-check wait, lags by up
    to ``--health-poll-interval`` and misses the data plane's delay after healthy.

Not calibrated by any source here: ``lb.health_check`` (LB configuration: read it from the
target group / backend service), ``lb.deregistration_delay`` (configuration), the workload and
traffic fields (the app's own telemetry).

Sufficiency: fewer than :data:`MIN_SAMPLES` samples give a warning (the distribution's tail is
then the largest sample); histogram-derived samples carry the bucket resolution, and a
histogram whose observations lie beyond its largest finite bucket bound cannot say how large
they were (a warning too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARAMETERS = ("controller.reaction", "lb.attach_delay", "lb.detach_delay")
INCLUDES_HEALTH_CHECK = "attach_delay_includes_health_check"  # the lb key a calibrated attach sets
MIN_SAMPLES = 20
MAX_SAMPLES = 1000

OBSERVABLES = {
    "controller.reaction": "endpoint change seen -> cloud call issued",
    "lb.detach_delay": "detach call issued -> last request the LB routed to the endpoint",
    "lb.attach_delay": "attach call done -> first request the LB routed to the endpoint (health-check wait included)",
}


@dataclass(frozen=True, slots=True)
class Measurement:
    """Samples of one parameter's observable, where they came from, and what to watch for."""

    parameter: str
    samples: tuple[float, ...]
    source: str
    cautions: tuple[str, ...] = ()  # why the value may be off: printed as warnings
    details: tuple[str, ...] = ()  # diagnostics worth reading next to the value

    def summary(self) -> str:
        values = np.asarray(self.samples)
        p50, p99 = np.quantile(values, [0.5, 0.99])
        return (f"calibrated {self.parameter}: {len(values)} samples from {self.source}: "
                f"p50 {p50:.3g} s, p99 {p99:.3g} s ({OBSERVABLES[self.parameter]})"
                + "".join(f"\n  {detail}" for detail in self.details))

    def warnings(self) -> list[str]:
        found = list(self.cautions)
        if len(self.samples) < MIN_SAMPLES:
            found.append(f"only {len(self.samples)} samples (fewer than {MIN_SAMPLES}): the tail the "
                         "simulator draws from is the largest sample; collect more rollouts before trusting it")
        return [f"warning: {self.parameter}: {text}" for text in found]


def thin(values: tuple[float, ...] | list[float]) -> list[float]:
    """At most MAX_SAMPLES values that keep the distribution's shape (evenly spaced quantiles)."""
    if len(values) <= MAX_SAMPLES:
        return [round(float(v), 4) for v in values]
    quantiles = (np.arange(MAX_SAMPLES) + 0.5) / MAX_SAMPLES
    return [round(float(v), 4) for v in np.quantile(np.asarray(values), quantiles)]
