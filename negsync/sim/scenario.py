"""The scenario: one pydantic model that is both the file format and the value the simulator reads.

Every key a user may write, its type, range, default and the words of its error message are
declared here once (field types from :mod:`negsync.sim.fields`); ``extra="forbid"`` rejects an
unknown key by name, and the models are frozen.  The same classes are what
:mod:`negsync.sim.vectorized` simulates: a distribution field holds a
:class:`~negsync.core.latency.Distribution`, ``workload.max_surge`` the resolved pod count.

:func:`parse_scenario` validates a *resolved raw form* (the file with the ``lb.preset`` merged
and defaults filled, :mod:`negsync.sim.loader`) and raises a
:class:`~negsync.errors.ConfigError` naming the dotted field at fault (``lb.attach_delay.p99``,
``drain.pre_stop_sleep``).  The sweep section is declared here too (:class:`SweepAxis`); what
a swept path may name, and the points it expands to, is :mod:`negsync.sim.study`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from negsync.sim.fields import (
    Count,
    Delay,
    Hint,
    Number,
    PositiveCount,
    PositiveNumber,
    PositiveSeconds,
    Rate,
    Requests,
    Seconds,
    Share,
    config_error,
    invalid,
    listed,
)

CAUSES = ("routed_after_stop", "killed_in_flight", "no_capacity", "overload", "keepalive_race")
RETRY_PATHS = ("lb_retry", "client_retry")  # failed attempts a retry turned into a success
MAX_RUNS = 1_000_000
MAX_SWEEP_POINTS = 1000
DEFAULT_GRACE = 30  # Kubernetes' default terminationGracePeriodSeconds
DEFAULT_RESOLUTION = 1.0  # Kubernetes takes whole seconds for terminationGracePeriodSeconds and a sleep action

Kind = Literal["rolling-update", "scale-down", "node-drain"]
Shutdown = Literal["on-sigterm", "on-sigkill"]
Routing = Literal["requests", "connections"]
PresetName = Literal["gcp-neg", "aws-alb", "aws-nlb"]  # negsync.sim.presets.PRESETS (a test keeps them equal)
KINDS: tuple[str, ...] = get_args(Kind)


class _Section(BaseModel):
    # validate_default: a default is declared as a user writes it (``30``, ``{dist: fixed, value: 1}``),
    # which is also what --show prints, and becomes a value like any written one.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------- sections


_HC_KEY = Hint("required (or set lb.health_check: null)")


class HealthCheck(_Section):
    interval: Annotated[PositiveSeconds, _HC_KEY]
    timeout: Annotated[Seconds, _HC_KEY]
    healthy_threshold: Annotated[PositiveCount, _HC_KEY]
    unhealthy_threshold: Annotated[PositiveCount, _HC_KEY]


class Traffic(_Section):
    # A distribution's default is its raw form; validate_default=True here too tells type checkers
    # (pydantic's Field overloads) that the field holds what validation makes of it.
    rps: Rate
    request_duration: Delay = Field(default={"dist": "lognormal", "p50": 0.05, "p99": 0.5}, validate_default=True)
    connection_lifetime: Delay = Field(default={"dist": "fixed", "value": 0}, validate_default=True)
    retryable_share: Share = 1.0  # share of requests an LB may retry (idempotent)
    client_retry_share: Share = 0.0  # share of failed requests the client retries once


_PERCENT = re.compile(r"[0-9]+%")


def _int_or_percent(value: Any, info: ValidationInfo) -> Any:
    """A Deployment's maxSurge / maxUnavailable: an integer or a percentage of the replicas.

    As Kubernetes resolves them (pkg/controller/deployment/util/deployment_util.go,
    ``ResolveFenceposts`` → apimachinery ``intstr.GetScaledValueFromIntOrPercent``): maxSurge
    rounds up, maxUnavailable rounds down; the percentage must match ``^[0-9]+%$`` and
    maxUnavailable may not exceed 100% (apps validation ``IsNotMoreThan100Percent``).
    """
    if not isinstance(value, str):
        return value  # an integer, checked by the field's type
    if not _PERCENT.fullmatch(value):
        raise invalid("", f"must be an integer or a percentage such as '25%', got {value!r}")
    percent = int(value[:-1])
    surge = info.field_name == "max_surge"
    if not surge and percent > 100:
        raise invalid("", f"must not be greater than 100%, got {value!r}")
    replicas = info.data.get("replicas")
    if replicas is None:  # replicas is invalid and reported first; nothing to scale
        return 0
    scaled = percent * replicas / 100
    if surge:
        return math.ceil(scaled)
    if math.floor(scaled) == 0 and percent > 0 and info.data.get("max_surge") == 0:
        return 1  # ResolveFenceposts: both merely rounding to 0 make maxUnavailable 1 (both written 0 is an error)
    return math.floor(scaled)


class Workload(_Section):
    replicas: Annotated[PositiveCount, Field(le=10_000)]
    max_surge: Annotated[Count, Field(le=10_000)] = 1
    max_unavailable: Annotated[Count, Field(le=10_000)] = 0
    remove: PositiveCount = 1
    pods_per_node: PositiveCount = 1
    startup: Delay = Field(default={"dist": "fixed", "value": 0}, validate_default=True)
    shutdown: Shutdown = "on-sigterm"
    min_ready_seconds: Seconds = 0
    zones: PositiveCount = 1
    pod_capacity: Rate | None = None  # requests per second one pod can serve (None: unlimited)
    keepalive_timeout: PositiveSeconds | None = None  # the app's idle keep-alive timeout (None: never first)

    _percent = field_validator("max_surge", "max_unavailable", mode="before")(_int_or_percent)

    @model_validator(mode="after")
    def _fenceposts(self) -> Workload:
        if self.zones > self.replicas:
            raise invalid("zones", f"must be <= {self.replicas}, got {self.zones}")
        return self


_FROM_PRESET = Hint("required when lb.preset is not given")  # resolve() merges the preset first


class LoadBalancer(_Section):
    preset: PresetName | None = None
    attach_delay: Annotated[Delay, _FROM_PRESET]
    detach_delay: Annotated[Delay, _FROM_PRESET]
    health_check: Annotated[HealthCheck | None, _FROM_PRESET]
    deregistration_delay: Annotated[Seconds, _FROM_PRESET]
    # Keys added after the first release: their defaults keep a scenario written before them
    # meaning what it meant (per-request routing, connections cut when the deregistration delay
    # ends, no retries, one zone, no keep-alive races unless the app's keep-alive timeout is set).
    routing: Routing = "requests"
    connection_termination: StrictBool = True
    unhealthy_propagation: Seconds = 0
    retries: Annotated[Count, Field(le=10)] = 0
    cross_zone: StrictBool = True
    idle_timeout: PositiveSeconds | None = None
    connections_per_endpoint: PositiveCount = 1
    keepalive_race_window: Seconds = 0.001
    # True when attach_delay was measured up to the first routed request (negsync calibrate):
    # it already holds the health-check wait, which the model then does not add again.
    attach_delay_includes_health_check: StrictBool = False


class ControllerModel(_Section):
    """The ``controller`` section: how fast negsync reacts, and whether pods carry its readiness gate."""

    reaction: Delay = Field(default={"dist": "fixed", "value": 1}, validate_default=True)
    readiness_gate: StrictBool = True


class Drain(_Section):
    pre_stop_sleep: Seconds = 0
    termination_grace_period: Seconds = DEFAULT_GRACE
    health_check_drain: Seconds = 0  # after SIGTERM: fail the health check, keep serving this long

    @model_validator(mode="after")
    def _sleep_inside_grace(self) -> Drain:
        sleep, grace = self.pre_stop_sleep, self.termination_grace_period
        if sleep >= grace:
            default = " s, Kubernetes' default terminationGracePeriodSeconds" if grace == DEFAULT_GRACE else " s"
            raise invalid(
                "pre_stop_sleep",
                f"must be < drain.termination_grace_period ({grace:g}{default}), got {sleep:g}: "
                "the preStop hook runs inside the grace period; set drain.termination_grace_period "
                f"above the preStop sleep plus the time to finish requests (e.g. {math.ceil(sleep) + 10})",
            )
        return self


class Objective(_Section):
    failed_requests: Requests = 0
    quantile: Annotated[PositiveNumber, Field(le=1)] = 0.99


# --------------------------------------------------------------------------- sweep


def _axis_form(value: Any) -> Any:
    """A bare list is ``{values: [...]}``; its errors are named at the entry itself."""
    if isinstance(value, list | tuple):
        listed(value)
        return {"values": value}
    if not isinstance(value, Mapping):
        raise invalid("", f"must be a list of values or {{from, to, step}}, got {type(value).__name__}")
    return value


class SweepAxis(_Section):
    """One sweep entry: ``[v, ...]``, ``{values}`` or ``{from, to, step}``, with ``uncertain`` and ``resolution``.

    ``uncertain`` (default: by path, :func:`negsync.sim.study.uncertain_by_default`) marks a fact
    about the world, taken at its worst; ``resolution`` is the step a recommendation is refined to.
    """

    start: Number | None = Field(default=None, alias="from")
    to: Number | None = None
    step: PositiveNumber | None = None
    values: Annotated[tuple[float, ...] | None, BeforeValidator(lambda v: v if v is None else listed(v))] = None
    uncertain: StrictBool | None = None
    resolution: PositiveNumber = DEFAULT_RESOLUTION

    @model_validator(mode="after")
    def _one_form(self) -> SweepAxis:
        ranged = {"from": self.start, "to": self.to, "step": self.step}
        if self.values is not None:
            if any(v is not None for v in ranged.values()):
                raise invalid("values", "give either values or {from, to, step}, not both")
            return self
        for key, v in ranged.items():
            if v is None:
                raise invalid(key, "required for a {from, to, step} sweep (or give values: [...])")
        assert self.start is not None and self.to is not None and self.step is not None
        if self.to < self.start:
            raise invalid("to", f"must be >= {self.start:g}, got {self.to:g}")
        count = math.floor((self.to - self.start) / self.step + 1e-9) + 1
        if count > MAX_SWEEP_POINTS:
            raise invalid("", f"expands to {count} values, more than {MAX_SWEEP_POINTS}")
        return self

    def expand(self) -> tuple[float, ...]:
        """The swept values, in increasing order."""
        if self.values is not None:
            return self.values
        assert self.start is not None and self.to is not None and self.step is not None
        count = math.floor((self.to - self.start) / self.step + 1e-9) + 1
        return tuple(round(self.start + i * self.step, 9) for i in range(count))


def _sweep_section(value: Any) -> Any:
    if value is None or (isinstance(value, Mapping) and not value):
        raise invalid("", "is empty: name at least one field to sweep")
    return value


Sweep = Annotated[dict[str, Annotated[SweepAxis, BeforeValidator(_axis_form)]] | None, BeforeValidator(_sweep_section)]


# --------------------------------------------------------------------------- the scenario


class Scenario(_Section):
    """A whole scenario file; each sweep point is one too (without its ``sweep``)."""

    kind: Annotated[Kind, Hint(f"required: one of {', '.join(KINDS)}")] = Field(alias="scenario")
    runs: Annotated[PositiveCount, Field(le=MAX_RUNS)] = 500
    seed: Annotated[Count, Field(le=2**63 - 1)] = 1
    traffic: Annotated[Traffic, Hint("required (at least traffic.rps)")]
    workload: Annotated[Workload, Hint("required (at least workload.replicas)")]
    lb: Annotated[LoadBalancer, Hint(f"required (at least lb.preset: one of {', '.join(get_args(PresetName))})")]
    controller: ControllerModel = Field(default_factory=ControllerModel)
    drain: Drain = Field(default_factory=Drain)
    sweep: Sweep = Field(default=None, validate_default=False)
    objective: Objective = Field(default_factory=Objective)

    @model_validator(mode="after")
    def _fits_the_kind(self) -> Scenario:
        w = self.workload
        if self.kind == "rolling-update" and w.max_surge == 0 and w.max_unavailable == 0:
            # apps validation rejects both written as 0 (or 0%); percentages that merely round to 0
            # were made maxUnavailable 1 by _int_or_percent
            raise invalid("workload.max_surge", "max_surge and max_unavailable cannot both be 0")
        if self.kind == "scale-down" and w.remove >= w.replicas:
            raise invalid("workload.remove", f"must be < workload.replicas ({w.replicas}), got {w.remove}")
        if self.kind == "node-drain" and w.pods_per_node > w.replicas:
            raise invalid("workload.pods_per_node", f"must be <= workload.replicas ({w.replicas}), got {w.pods_per_node}")
        return self


def parse_scenario(resolved: Mapping[str, Any], *, base_dir: Path | None = None) -> Scenario:
    """Validate a resolved raw form (:func:`negsync.sim.loader.resolve`) into a :class:`Scenario`.

    ``base_dir`` is where an empirical distribution's ``file`` is read relative to.
    """
    try:
        return Scenario.model_validate(resolved, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise config_error(exc, Scenario) from None


__all__ = [
    "CAUSES", "KINDS", "RETRY_PATHS", "ControllerModel", "Drain", "HealthCheck", "LoadBalancer",
    "Objective", "Scenario", "SweepAxis", "Traffic", "Workload", "parse_scenario",
]
