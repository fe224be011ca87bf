"""Scenario files: parse and validate YAML/JSON into frozen values, naming the field at fault.

Parsing happens in three steps, and every error is a :class:`~negsync.errors.ConfigError`
carrying a dotted field path (``lb.attach_delay.p99``, ``drain.pre_stop_sleep``,
``sweep.drain.pre_stop_sleep``):

1. :func:`resolve` checks the shape of the raw mapping (unknown keys are rejected by name), fills
   defaults and merges the ``lb.preset`` under the user's ``lb`` keys.  The result is still a
   plain mapping: the *resolved raw form*.
2. :func:`parse_scenario` turns a resolved raw form into a :class:`Scenario` (frozen dataclasses;
   distributions come from :mod:`negsync.core.latency`).
3. :func:`load_study` expands the ``sweep`` section: each sweep point is the resolved raw form
   with the swept dotted paths overwritten, parsed again by step 2, so a swept value is
   validated exactly like a written one.  A sweep path must name an existing numeric field of
   the resolved form (``drain.pre_stop_sleep``, ``lb.detach_delay.value``, ``traffic.rps``...).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from negsync.core.latency import Distribution, Fixed, parse_distribution
from negsync.errors import ConfigError
from negsync.sim.presets import PRESETS, preset

KINDS = ("rolling-update", "scale-down", "node-drain")
SHUTDOWN_MODES = ("on-sigterm", "on-sigkill")
CAUSES = ("routed_after_stop", "killed_in_flight", "no_capacity", "overload", "keepalive_race")
RETRY_PATHS = ("lb_retry", "client_retry")  # failed attempts a retry turned into a success
ROUTING_MODES = ("requests", "connections")
MAX_RUNS = 1_000_000
MAX_SWEEP_POINTS = 1000
_DEFAULT_GRACE = 30  # Kubernetes' default terminationGracePeriodSeconds
DEFAULT_RESOLUTION = 1.0  # Kubernetes takes whole seconds for terminationGracePeriodSeconds and a sleep action
# Swept paths under these prefixes are settings one chooses; any other swept path (lb.*, traffic.*,
# controller.reaction, workload.startup) describes the world and is uncertain unless marked otherwise.
_DECISION_PREFIXES = (
    "drain.", "workload.replicas", "workload.max_surge", "workload.max_unavailable", "workload.remove",
    "workload.pods_per_node",
)

_SECTIONS: dict[str, tuple[str, ...]] = {
    "": (
        "scenario", "runs", "seed", "traffic", "workload", "lb", "controller", "drain", "sweep", "objective",
    ),
    "traffic": ("rps", "request_duration", "connection_lifetime", "retryable_share", "client_retry_share"),
    "workload": (
        "replicas", "max_surge", "max_unavailable", "remove", "pods_per_node", "startup", "shutdown",
        "min_ready_seconds", "zones", "pod_capacity", "keepalive_timeout",
    ),
    "lb": (
        "preset", "attach_delay", "detach_delay", "health_check", "deregistration_delay",
        "routing", "connection_termination", "unhealthy_propagation", "retries", "cross_zone",
        "idle_timeout", "connections_per_endpoint", "keepalive_race_window", "attach_delay_includes_health_check",
    ),
    "lb.health_check": ("interval", "timeout", "healthy_threshold", "unhealthy_threshold"),
    "controller": ("reaction", "readiness_gate"),
    "drain": ("pre_stop_sleep", "termination_grace_period", "health_check_drain"),
    "objective": ("failed_requests", "quantile"),
}

_DEFAULTS: dict[str, Any] = {
    "runs": 500,
    "seed": 1,
    "traffic": {
        "request_duration": {"dist": "lognormal", "p50": 0.05, "p99": 0.5},
        "connection_lifetime": {"dist": "fixed", "value": 0},
        "retryable_share": 1.0, "client_retry_share": 0.0,
    },
    "workload": {
        "max_surge": 1, "max_unavailable": 0, "remove": 1, "pods_per_node": 1,
        "startup": {"dist": "fixed", "value": 0}, "shutdown": "on-sigterm",
        "min_ready_seconds": 0, "zones": 1, "pod_capacity": None, "keepalive_timeout": None,
    },
    "lb": {},
    "controller": {"reaction": {"dist": "fixed", "value": 1}, "readiness_gate": True},
    "drain": {"pre_stop_sleep": 0, "termination_grace_period": _DEFAULT_GRACE, "health_check_drain": 0},
    "objective": {"failed_requests": 0, "quantile": 0.99},
}


# lb keys added after the first release: their defaults keep a scenario written before them meaning
# what it meant (per-request routing, connections cut when the deregistration delay ends, no
# retries, one zone, no keep-alive races unless the app's keep-alive timeout is set).
_LB_DEFAULTS: dict[str, Any] = {
    "routing": "requests", "connection_termination": True, "unhealthy_propagation": 0, "retries": 0,
    "cross_zone": True, "idle_timeout": None, "connections_per_endpoint": 1,
    "keepalive_race_window": 0.001,
}


@dataclass(frozen=True, slots=True)
class HealthCheck:
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True, slots=True)
class Traffic:
    rps: float
    request_duration: Distribution
    connection_lifetime: Distribution = Fixed(0.0)  # noqa: RUF009 (frozen, so sharing it is safe)
    retryable_share: float = 1.0  # share of requests an LB may retry (idempotent)
    client_retry_share: float = 0.0  # share of failed requests the client retries once


@dataclass(frozen=True, slots=True)
class Workload:
    replicas: int
    max_surge: int
    max_unavailable: int
    remove: int
    pods_per_node: int
    startup: Distribution
    shutdown: str
    min_ready_seconds: float = 0.0
    zones: int = 1
    pod_capacity: float | None = None  # requests per second one pod can serve (None: unlimited)
    keepalive_timeout: float | None = None  # the app's idle keep-alive timeout (None: never first)


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    preset: str | None
    attach_delay: Distribution
    detach_delay: Distribution
    health_check: HealthCheck | None
    deregistration_delay: float
    # True when attach_delay was measured up to the first routed request (negsync calibrate):
    # it already holds the health-check wait, which the engine then does not add again.
    attach_delay_includes_health_check: bool = False
    routing: str = "requests"
    connection_termination: bool = True
    unhealthy_propagation: float = 0.0
    retries: int = 0
    cross_zone: bool = True
    idle_timeout: float | None = None
    connections_per_endpoint: int = 1
    keepalive_race_window: float = 0.001


@dataclass(frozen=True, slots=True)
class Controller:
    reaction: Distribution
    readiness_gate: bool


@dataclass(frozen=True, slots=True)
class Drain:
    pre_stop_sleep: float
    termination_grace_period: float
    health_check_drain: float = 0.0  # after SIGTERM: fail the health check, keep serving this long


@dataclass(frozen=True, slots=True)
class Objective:
    failed_requests: float
    quantile: float


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: str
    runs: int
    seed: int
    traffic: Traffic
    workload: Workload
    lb: LoadBalancer
    controller: Controller
    drain: Drain
    objective: Objective


@dataclass(frozen=True, slots=True)
class SweepPoint:
    params: tuple[tuple[str, float], ...]  # (dotted path, value) in sweep order
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class Study:
    """A scenario and the sweep points to run it at (one point with no params when no sweep).

    ``uncertain`` names the swept paths that describe the world rather than a setting (taken at
    their worst when recommending); ``resolutions`` the step, per swept path, to which a
    recommendation is refined.  ``tree`` is the resolved raw form, so that points off the grid
    (refinement, the recommended pair) can be built with :func:`point_at`.
    """

    base: Scenario
    swept: tuple[str, ...]
    points: tuple[SweepPoint, ...]
    uncertain: tuple[str, ...] = ()
    resolutions: tuple[tuple[str, float], ...] = ()
    tree: Mapping[str, Any] | None = None
    base_dir: Path | None = None

    @property
    def decisions(self) -> tuple[str, ...]:
        """The swept paths that are settings to choose (every swept path not uncertain)."""
        return tuple(p for p in self.swept if p not in self.uncertain)

    def resolution(self, path: str) -> float:
        return dict(self.resolutions).get(path, DEFAULT_RESOLUTION)


# --------------------------------------------------------------------------- helpers


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field or "scenario", f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(_join(field, str(key)), "keys must be strings")
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check_keys(value: Mapping[str, Any], section: str) -> None:
    allowed = _SECTIONS[section]
    for key in value:
        if key not in allowed:
            raise ConfigError(_join(section, key), f"unknown key (expected one of: {', '.join(allowed)})")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(
    value: Any, field: str, *, low: float = 0.0, strict: bool = False, integer: bool = False,
    high: float = math.inf, unit: str = "seconds",
) -> float:
    kind = "an integer" if integer else ("a number" if unit == "" else f"a number of {unit}")
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(field, f"must be {kind}, got {value!r}")
    if integer and float(value) != int(value):
        raise ConfigError(field, f"must be {kind}, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(field, f"must be {'>' if strict else '>='} {low:g}, got {value!r}")
    if value > high:
        raise ConfigError(field, f"must be <= {high:g}, got {value!r}")
    return float(value)


def _int(value: Any, field: str, *, low: int = 0, high: float = math.inf) -> int:
    return int(_number(value, field, low=low, integer=True, high=high))


_PERCENT = re.compile(r"[0-9]+%")


def _int_or_percent(value: Any, field: str, replicas: int, *, round_up: bool) -> int:
    """A Deployment's maxSurge / maxUnavailable: an integer or a percentage of the replicas.

    As Kubernetes resolves them (pkg/controller/deployment/util/deployment_util.go,
    ``ResolveFenceposts`` → apimachinery ``intstr.GetScaledValueFromIntOrPercent``): maxSurge
    rounds up, maxUnavailable rounds down; the percentage must match ``^[0-9]+%$`` and
    maxUnavailable may not exceed 100% (apps validation ``IsNotMoreThan100Percent``).
    """
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            raise ConfigError(field, f"must be an integer or a percentage such as '25%', got {value!r}")
        percent = int(value[:-1])
        if not round_up and percent > 100:
            raise ConfigError(field, f"must not be greater than 100%, got {value!r}")
        scaled = percent * replicas / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return _int(value, field, low=0, high=10_000)
def _optional(value: Any, field: str, *, strict: bool = False, unit: str = "seconds") -> float | None:
    return None if value is None else _number(value, field, strict=strict, unit=unit)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be true or false, got {value!r}")
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


# --------------------------------------------------------------------------- step 1: resolve


def resolve(raw: Any) -> dict[str, Any]:
    """Check the shape of a raw scenario mapping, fill defaults and merge the lb preset."""
    top = _mapping(raw, "")
    _check_keys(top, "")
    if "scenario" not in top:
        raise ConfigError("scenario", f"required: one of {', '.join(KINDS)}")
    out: dict[str, Any] = {}
    for key, default in _DEFAULTS.items():
        given = top.get(key, None if isinstance(default, dict) else default)
        if isinstance(default, dict):
            section = {} if given is None and key in ("lb",) else given
            if section is None:
                section = {}
            section = dict(_mapping(section, key))
            _check_keys(section, key)
            merged = copy.deepcopy(default)
            merged.update(copy.deepcopy(section))
            out[key] = merged
        else:
            out[key] = given
    out["scenario"] = top["scenario"]
    traffic = top.get("traffic")
    if traffic is None:
        raise ConfigError("traffic", "required (at least traffic.rps)")
    workload = top.get("workload")
    if workload is None:
        raise ConfigError("workload", "required (at least workload.replicas)")
    if "lb" not in top:
        raise ConfigError("lb", f"required (at least lb.preset: one of {', '.join(PRESETS)})")
    out["lb"] = _resolve_lb(out["lb"])
    if "sweep" in top:
        out["sweep"] = copy.deepcopy(top["sweep"])
    return out


def _resolve_lb(lb: dict[str, Any]) -> dict[str, Any]:
    name = lb.get("preset")
    if name is None:
        base: dict[str, Any] = {}
    elif not isinstance(name, str) or name not in PRESETS:
        raise ConfigError("lb.preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
    else:
        base = preset(name)
    for key, value in lb.items():
        if key == "health_check" and isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged = dict(base[key])
            merged.update(_mapping(value, "lb.health_check"))
            base[key] = merged
        else:
            base[key] = value
    base.setdefault("preset", None)
    for key, value in _LB_DEFAULTS.items():
        base.setdefault(key, value)
    for key in ("attach_delay", "detach_delay", "health_check", "deregistration_delay"):
        if key not in base:
            raise ConfigError(f"lb.{key}", "required when lb.preset is not given")
    return base


# --------------------------------------------------------------------------- step 2: parse


def parse_scenario(resolved: Mapping[str, Any], *, base_dir: Path | None = None) -> Scenario:
    """Build a :class:`Scenario` from a resolved raw form (see :func:`resolve`)."""
    kind = resolved["scenario"]
    if kind not in KINDS:
        raise ConfigError("scenario", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    runs = _int(resolved["runs"], "runs", low=1, high=MAX_RUNS)
    seed = _int(resolved["seed"], "seed", low=0, high=2**63 - 1)

    def dist(spec: Any, field: str) -> Distribution:
        return parse_distribution(spec, field=field, base_dir=base_dir)

    t = resolved["traffic"]
    if "rps" not in t:
        raise ConfigError("traffic.rps", "required")
    traffic = Traffic(
        rps=_number(t["rps"], "traffic.rps", strict=True, unit="requests per second"),
        request_duration=dist(t["request_duration"], "traffic.request_duration"),
        connection_lifetime=dist(t["connection_lifetime"], "traffic.connection_lifetime"),
        retryable_share=_number(t["retryable_share"], "traffic.retryable_share", high=1.0, unit=""),
        client_retry_share=_number(t["client_retry_share"], "traffic.client_retry_share", high=1.0, unit=""),
    )

    w = resolved["workload"]
    if "replicas" not in w:
        raise ConfigError("workload.replicas", "required")
    replicas = _int(w["replicas"], "workload.replicas", low=1, high=10_000)
    surge = _int_or_percent(w["max_surge"], "workload.max_surge", replicas, round_up=True)
    unavailable = _int_or_percent(w["max_unavailable"], "workload.max_unavailable", replicas, round_up=False)
    if kind == "rolling-update" and surge == 0 and unavailable == 0:
        # apps validation rejects both written as 0 (or 0%); ResolveFenceposts turns percentages
        # that merely round to 0 into max_unavailable 1
        if all(v in (0, "0%") for v in (w["max_surge"], w["max_unavailable"])):
            raise ConfigError("workload.max_surge", "max_surge and max_unavailable cannot both be 0")
        unavailable = 1
    remove = _int(w["remove"], "workload.remove", low=1)
    if kind == "scale-down" and remove >= replicas:
        raise ConfigError("workload.remove", f"must be < workload.replicas ({replicas}), got {remove}")
    per_node = _int(w["pods_per_node"], "workload.pods_per_node", low=1)
    if kind == "node-drain" and per_node > replicas:
        raise ConfigError(
            "workload.pods_per_node", f"must be <= workload.replicas ({replicas}), got {per_node}"
        )
    shutdown = w["shutdown"]
    if shutdown not in SHUTDOWN_MODES:
        choices = ", ".join(SHUTDOWN_MODES)
        raise ConfigError("workload.shutdown", f"must be one of {choices}, got {shutdown!r}")
    zones = _int(w["zones"], "workload.zones", low=1, high=replicas)
    workload = Workload(
        replicas=replicas, max_surge=surge, max_unavailable=unavailable, remove=remove,
        pods_per_node=per_node, startup=dist(w["startup"], "workload.startup"), shutdown=shutdown,
        min_ready_seconds=_number(w["min_ready_seconds"], "workload.min_ready_seconds"),
        zones=zones,
        pod_capacity=_optional(
            w["pod_capacity"], "workload.pod_capacity", strict=True, unit="requests per second"
        ),
        keepalive_timeout=_optional(w["keepalive_timeout"], "workload.keepalive_timeout", strict=True),
    )

    lb_raw = resolved["lb"]
    hc_raw = lb_raw["health_check"]
    health: HealthCheck | None = None
    if hc_raw is not None:
        hc = _mapping(hc_raw, "lb.health_check")
        _check_keys(hc, "lb.health_check")
        for key in _SECTIONS["lb.health_check"]:
            if key not in hc:
                raise ConfigError(f"lb.health_check.{key}", "required (or set lb.health_check: null)")
        health = HealthCheck(
            interval=_number(hc["interval"], "lb.health_check.interval", strict=True),
            timeout=_number(hc["timeout"], "lb.health_check.timeout"),
            healthy_threshold=_int(hc["healthy_threshold"], "lb.health_check.healthy_threshold", low=1),
            unhealthy_threshold=_int(hc["unhealthy_threshold"], "lb.health_check.unhealthy_threshold", low=1),
        )
    includes_hc = lb_raw.get("attach_delay_includes_health_check", False)
    if not isinstance(includes_hc, bool):
        raise ConfigError("lb.attach_delay_includes_health_check", f"must be true or false, got {includes_hc!r}")
    lb = LoadBalancer(
        preset=lb_raw["preset"],
        attach_delay=dist(lb_raw["attach_delay"], "lb.attach_delay"),
        detach_delay=dist(lb_raw["detach_delay"], "lb.detach_delay"),
        health_check=health,
        deregistration_delay=_number(lb_raw["deregistration_delay"], "lb.deregistration_delay"),
        attach_delay_includes_health_check=includes_hc,
        routing=_choice(lb_raw["routing"], "lb.routing", ROUTING_MODES),
        connection_termination=_bool(lb_raw["connection_termination"], "lb.connection_termination"),
        unhealthy_propagation=_number(lb_raw["unhealthy_propagation"], "lb.unhealthy_propagation"),
        retries=_int(lb_raw["retries"], "lb.retries", high=10),
        cross_zone=_bool(lb_raw["cross_zone"], "lb.cross_zone"),
        idle_timeout=_optional(lb_raw["idle_timeout"], "lb.idle_timeout", strict=True),
        connections_per_endpoint=_int(lb_raw["connections_per_endpoint"], "lb.connections_per_endpoint", low=1),
        keepalive_race_window=_number(lb_raw["keepalive_race_window"], "lb.keepalive_race_window"),
    )

    c = resolved["controller"]
    gate = c["readiness_gate"]
    if not isinstance(gate, bool):
        raise ConfigError("controller.readiness_gate", f"must be true or false, got {gate!r}")
    controller = Controller(reaction=dist(c["reaction"], "controller.reaction"), readiness_gate=gate)

    d = resolved["drain"]
    grace = _number(d["termination_grace_period"], "drain.termination_grace_period")
    sleep = _number(d["pre_stop_sleep"], "drain.pre_stop_sleep")
    if sleep >= grace:
        default = " s, Kubernetes' default terminationGracePeriodSeconds" if grace == _DEFAULT_GRACE else " s"
        raise ConfigError(
            "drain.pre_stop_sleep",
            f"must be < drain.termination_grace_period ({grace:g}{default}), got {sleep:g}: "
            "the preStop hook runs inside the grace period; set drain.termination_grace_period "
            f"above the preStop sleep plus the time to finish requests (e.g. {math.ceil(sleep) + 10})",
        )
    health_drain = _number(d["health_check_drain"], "drain.health_check_drain")
    drain = Drain(pre_stop_sleep=sleep, termination_grace_period=grace, health_check_drain=health_drain)

    o = resolved["objective"]
    objective = Objective(
        failed_requests=_number(o["failed_requests"], "objective.failed_requests", unit="requests"),
        quantile=_number(o["quantile"], "objective.quantile", low=0.0, strict=True, high=1.0, unit=""),
    )
    return Scenario(kind, runs, seed, traffic, workload, lb, controller, drain, objective)


# --------------------------------------------------------------------------- step 3: sweep


def _get(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def _set(tree: dict[str, Any], path: str, value: float) -> None:
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[last] = value


@dataclass(frozen=True, slots=True)
class _Axis:
    path: str
    values: tuple[float, ...]
    uncertain: bool
    resolution: float


_AXIS_KEYS = ("from", "to", "step", "values", "uncertain", "resolution")


def _axis(path: str, spec: Any, field: str) -> _Axis:
    """One sweep entry: a list, ``{from, to, step}`` or ``{values}``, optionally with
    ``uncertain: true|false`` and ``resolution: R`` (the refinement step)."""
    uncertain = not path.startswith(_DECISION_PREFIXES)
    resolution = DEFAULT_RESOLUTION
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_AXIS_KEYS))
        if unknown:
            raise ConfigError(f"{field}.{unknown[0]}", f"unknown key (expected one of: {', '.join(_AXIS_KEYS)})")
        if "uncertain" in spec:
            if not isinstance(spec["uncertain"], bool):
                raise ConfigError(f"{field}.uncertain", f"must be true or false, got {spec['uncertain']!r}")
            uncertain = spec["uncertain"]
        if "resolution" in spec:
            resolution = _number(spec["resolution"], f"{field}.resolution", strict=True, unit="")
        if "values" in spec:
            if any(k in spec for k in ("from", "to", "step")):
                raise ConfigError(f"{field}.values", "give either values or {from, to, step}, not both")
            return _Axis(path, _listed(spec["values"], f"{field}.values"), uncertain, resolution)
        for key in ("from", "to", "step"):
            if key not in spec:
                raise ConfigError(f"{field}.{key}", "required for a {from, to, step} sweep (or give values: [...])")
        start = _number(spec["from"], f"{field}.from", low=-math.inf, unit="")
        stop = _number(spec["to"], f"{field}.to", low=start, unit="")
        step = _number(spec["step"], f"{field}.step", strict=True, unit="")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_SWEEP_POINTS:
            raise ConfigError(field, f"expands to {count} values, more than {MAX_SWEEP_POINTS}")
        return _Axis(path, tuple(round(start + i * step, 9) for i in range(count)), uncertain, resolution)
    if isinstance(spec, list | tuple):
        return _Axis(path, _listed(spec, field), uncertain, resolution)
    raise ConfigError(field, f"must be a list of values or {{from, to, step}}, got {type(spec).__name__}")


def _listed(spec: Any, field: str) -> tuple[float, ...]:
    if not isinstance(spec, list | tuple):
        raise ConfigError(field, f"must be a list of values, got {type(spec).__name__}")
    if not spec:
        raise ConfigError(field, "must list at least one value")
    values = []
    for i, v in enumerate(spec):
        if not _is_number(v) or not math.isfinite(v):
            raise ConfigError(f"{field}[{i}]", f"must be a number, got {v!r}")
        values.append(float(v))
    return tuple(sorted(set(values)))


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _point(
    tree: Mapping[str, Any], params: tuple[tuple[str, float], ...], base_dir: Path | None
) -> SweepPoint:
    point_tree = copy.deepcopy(dict(tree))
    for path, value in params:
        _set(point_tree, path, _plain(value))
    try:
        scenario = parse_scenario(point_tree, base_dir=base_dir)
    except ConfigError as exc:
        blamed = next((p for p, _ in params if exc.field.startswith(p)), params[0][0])
        value = dict(params)[blamed]
        raise ConfigError(f"sweep.{blamed}", f"value {value:g} is invalid: {exc}") from None
    return SweepPoint(params, scenario)


def point_at(study: Study, params: Mapping[str, float]) -> SweepPoint:
    """The study's scenario with ``params`` (dotted path -> value) written over it, validated."""
    if study.tree is None:
        raise ValueError("study was built without its resolved form")
    return _point(study.tree, tuple(params.items()), study.base_dir)


def build_study(resolved: Mapping[str, Any], *, base_dir: Path | None = None) -> Study:
    """Parse the base scenario and every sweep point of a resolved raw form."""
    tree = {k: v for k, v in resolved.items() if k != "sweep"}
    base = parse_scenario(tree, base_dir=base_dir)
    if "sweep" not in resolved or resolved["sweep"] is None:
        if "sweep" in resolved:
            raise ConfigError("sweep", "is empty: name at least one field to sweep")
        return Study(base, (), (SweepPoint((), base),), tree=tree, base_dir=base_dir)
    sweep = _mapping(resolved["sweep"], "sweep")
    if not sweep:
        raise ConfigError("sweep", "is empty: name at least one field to sweep")
    axes: list[_Axis] = []
    for path, spec in sweep.items():
        field = f"sweep.{path}"
        if path in ("runs", "seed", "scenario") or path.startswith(("sweep", "objective")):
            raise ConfigError(field, "cannot be swept (sweep a model field such as drain.pre_stop_sleep)")
        try:
            current = _get(tree, path)
        except KeyError:
            raise ConfigError(field, "does not name a field of the scenario") from None
        if not _is_number(current):
            raise ConfigError(field, f"does not name a numeric field (its value is {current!r})")
        axes.append(_axis(path, spec, field))
    if math.prod(len(axis.values) for axis in axes) > MAX_SWEEP_POINTS:
        raise ConfigError("sweep", f"expands to more than {MAX_SWEEP_POINTS} points")
    points = [
        _point(tree, tuple((axis.path, value) for axis, value in zip(axes, combo, strict=True)), base_dir)
        for combo in itertools.product(*(axis.values for axis in axes))
    ]
    return Study(
        base, tuple(axis.path for axis in axes), tuple(points),
        uncertain=tuple(axis.path for axis in axes if axis.uncertain),
        resolutions=tuple((axis.path, axis.resolution) for axis in axes),
        tree=tree, base_dir=base_dir,
    )


def load_study(
    raw: Any, *, base_dir: Path | None = None, runs: int | None = None, seed: int | None = None
) -> Study:
    """Validate a raw scenario mapping (with optional --runs/--seed overrides) into a Study."""
    if isinstance(raw, Mapping):
        raw = dict(raw)
        if runs is not None:
            raw["runs"] = runs
        if seed is not None:
            raw["seed"] = seed
    return build_study(resolve(raw), base_dir=base_dir)


def read_file(path: Path) -> Any:
    """The raw mapping in a YAML or JSON scenario file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("scenario", f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_text(text, str(path))


def parse_text(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError("scenario", f"{name} is not valid YAML or JSON{where}") from None


DEFAULT_SCENARIO = "default.yaml"


def default_scenario_text() -> str:
    """The packaged default scenario (identical to simulations/default.yaml)."""
    return resources.files("negsync.sim").joinpath("scenarios", DEFAULT_SCENARIO).read_text()


def _read(path: Path | None) -> tuple[Any, Path | None]:
    if path is None:
        return parse_text(default_scenario_text(), DEFAULT_SCENARIO), None
    raw = read_file(path)
    if raw is None:
        raise ConfigError(
            "scenario",
            f"{path} is empty: start from simulations/default.yaml, or print the default with every "
            "value filled in (negsync simulate --show) and edit that",
        )
    return raw, path.resolve().parent


def load_path(
    path: Path | None, *, runs: int | None = None, seed: int | None = None
) -> Study:
    """Load a scenario file, or the packaged default when ``path`` is None."""
    raw, base_dir = _read(path)
    return load_study(raw, base_dir=base_dir, runs=runs, seed=seed)


def resolved_path(path: Path | None, *, runs: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """The resolved raw form of a scenario file (defaults and preset filled in), validated."""
    raw, base_dir = _read(path)
    if isinstance(raw, Mapping):
        raw = dict(raw)
        if runs is not None:
            raw["runs"] = runs
        if seed is not None:
            raw["seed"] = seed
    resolved = resolve(raw)
    build_study(resolved, base_dir=base_dir)
    out: dict[str, Any] = {}
    for key in _SECTIONS[""]:
        if key not in resolved:
            continue
        value = resolved[key]
        if key in _SECTIONS and isinstance(value, Mapping):  # the file's key order, for reading
            order = _SECTIONS[key]
            value = {k: value[k] for k in sorted(value, key=lambda k: order.index(k) if k in order else len(order))}
        out[key] = value
    return out


__all__ = [
    "CAUSES", "KINDS", "Controller", "Drain", "Fixed", "HealthCheck", "LoadBalancer", "Objective",
    "Scenario", "Study", "SweepPoint", "Traffic", "Workload", "build_study", "load_path", "load_study",
    "parse_scenario", "point_at", "resolve", "resolved_path",
]
