"""A TargetBinding's spec, parsed from its raw JSON into a frozen record — or a field-named error.

The kube layer hands the raw ``spec`` dict here; the CRD's OpenAPI schema already rejects most
bad input at admission, but a controller must never trust that (the schema can be older than the
controller, or the CRD installed without validation), so every rule is checked again here and
reported as a :class:`~negsync.errors.ConfigError` whose ``field`` is the path under ``spec``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from negsync.errors import ConfigError

IpFamily = Literal["IPv4", "IPv6"]

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_TG_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"targetgroup/(?P<name>[A-Za-z0-9-]{1,32})/(?P<id>[0-9a-f]{16})$"
)
_NAME_PREFIX = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME_PREFIX = 20
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ServiceRefDict(TypedDict, total=False):
    name: str
    port: int | str


class TargetBindingSpecDict(TypedDict, total=False):
    serviceRef: ServiceRefDict
    target: dict[str, Any]
    readinessGate: bool
    ipFamily: str


@dataclass(frozen=True, slots=True)
class GcpNegTarget:
    project: str
    network: str
    subnetwork: str = ""
    zones: tuple[str, ...] = ()
    name_prefix: str = "k8s"
    kind: Literal["gcp"] = "gcp"
    shared: bool = False


@dataclass(frozen=True, slots=True)
class AwsIngressRule:
    """One ``networking.ingress`` entry: let ``peers`` (security group IDs or CIDRs) reach ``ports``.

    ``ports`` holds (protocol, port); empty means the endpoints' own ports, as in the LB
    Controller's TargetGroupBinding ``networking`` (its ``ports`` may be omitted the same way).
    """

    peers: tuple[str, ...]
    ports: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class AwsNetworking:
    """``spec.target.awsTargetGroup.networking``: security-group rules negsync keeps for the binding."""

    ingress: tuple[AwsIngressRule, ...] = ()
    security_group: str = ""  # the group to open; empty: the security group of the endpoints' ENIs


@dataclass(frozen=True, slots=True)
class AwsTargetGroupTarget:
    arn: str
    shared: bool = False
    kind: Literal["aws"] = "aws"
    networking: AwsNetworking | None = None

    @property
    def region(self) -> str:
        match = _TG_ARN.match(self.arn)
        return match["region"] if match else ""


@dataclass(frozen=True, slots=True)
class MemoryTarget:
    """The in-memory provider's target: a named pool, for demos, the simulator and tests."""

    name: str
    kind: Literal["memory"] = "memory"
    shared: bool = False


TargetSpec = GcpNegTarget | AwsTargetGroupTarget | MemoryTarget


@dataclass(frozen=True, slots=True)
class BindingSpec:
    service_name: str
    service_port: int | str
    target: TargetSpec
    readiness_gate: bool = True
    ip_family: IpFamily = "IPv4"


def _string(raw: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{field}.{key}", "is required")
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{field}.{key}", f"must be a string, got {type(value).__name__}")
    return value


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field, "is required and must be an object")
    return value


def parse_port(value: Any, *, field: str) -> int | str:
    """A Service port given by number (1–65535) or by name (an IANA_SVC_NAME)."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(field, "must be a port number or name")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ConfigError(field, f"must be between 1 and 65535, got {value}")
        return value
    if isinstance(value, str):
        if value.isdigit():
            return parse_port(int(value), field=field)
        if len(value) > 15 or not _PORT_NAME.match(value):
            raise ConfigError(field, f"is not a valid port name: {value!r}")
        return value
    raise ConfigError(field, f"must be a port number or name, got {type(value).__name__}")


def _gcp(raw: Mapping[str, Any]) -> GcpNegTarget:
    field = "spec.target.gcpNeg"
    unknown = set(raw) - {"project", "network", "subnetwork", "zones", "namePrefix"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown field")
    project = _string(raw, "project", field)
    if not _PROJECT.match(project):
        raise ConfigError(f"{field}.project", f"is not a valid GCP project id: {project!r}")
    zones_raw = raw.get("zones") or []
    if not isinstance(zones_raw, list) or not all(isinstance(z, str) and z for z in zones_raw):
        raise ConfigError(f"{field}.zones", "must be a list of zone names")
    prefix = _string(raw, "namePrefix", field, required=False) or "k8s"
    if len(prefix) > _MAX_NAME_PREFIX or not _NAME_PREFIX.match(prefix):
        raise ConfigError(
            f"{field}.namePrefix",
            f"must be 1-{_MAX_NAME_PREFIX} lowercase letters, digits or '-', starting with a letter",
        )
    return GcpNegTarget(
        project=project,
        network=_string(raw, "network", field),
        subnetwork=_string(raw, "subnetwork", field, required=False),
        zones=tuple(zones_raw),
        name_prefix=prefix,
    )


_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")


def _aws_networking(raw: Any, field: str) -> AwsNetworking:
    raw = _mapping(raw, field)
    unknown = set(raw) - {"ingress", "securityGroup"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown field")
    group = _string(raw, "securityGroup", field, required=False)
    if group and not _SECURITY_GROUP.match(group):
        raise ConfigError(f"{field}.securityGroup", f"is not a security group ID (sg-...): {group!r}")
    rules_raw = raw.get("ingress", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{field}.ingress", "must be a list")
    rules: list[AwsIngressRule] = []
    for i, rule_raw in enumerate(rules_raw):
        where = f"{field}.ingress[{i}]"
        rule = _mapping(rule_raw, where)
        unknown = set(rule) - {"from", "ports"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        peers_raw = rule.get("from")
        if not isinstance(peers_raw, list) or not peers_raw:
            raise ConfigError(f"{where}.from", "must list at least one peer (securityGroup or ipBlock)")
        peers: list[str] = []
        for j, peer_raw in enumerate(peers_raw):
            peer = _mapping(peer_raw, f"{where}.from[{j}]")
            if set(peer) == {"securityGroup"}:
                group_id = _string(_mapping(peer["securityGroup"], f"{where}.from[{j}].securityGroup"), "groupID",
                                   f"{where}.from[{j}].securityGroup")
                if not _SECURITY_GROUP.match(group_id):
                    raise ConfigError(f"{where}.from[{j}].securityGroup.groupID",
                                      f"is not a security group ID (sg-...): {group_id!r}")
                peers.append(group_id)
            elif set(peer) == {"ipBlock"}:
                cidr = _string(_mapping(peer["ipBlock"], f"{where}.from[{j}].ipBlock"), "cidr", f"{where}.from[{j}].ipBlock")
                try:
                    peers.append(str(ipaddress.ip_network(cidr, strict=False)))
                except ValueError:
                    raise ConfigError(f"{where}.from[{j}].ipBlock.cidr", f"is not a CIDR block: {cidr!r}") from None
            else:
                raise ConfigError(f"{where}.from[{j}]", "must set exactly one of securityGroup or ipBlock")
        ports_raw = rule.get("ports", [])
        if not isinstance(ports_raw, list):
            raise ConfigError(f"{where}.ports", "must be a list")
        ports: list[tuple[str, int]] = []
        for j, port_raw in enumerate(ports_raw):
            entry = _mapping(port_raw, f"{where}.ports[{j}]")
            unknown = set(entry) - {"protocol", "port"}
            if unknown:
                raise ConfigError(f"{where}.ports[{j}].{sorted(unknown)[0]}", "unknown field")
            protocol = entry.get("protocol", "TCP")
            if protocol not in ("TCP", "UDP"):
                raise ConfigError(f"{where}.ports[{j}].protocol", f"must be TCP or UDP, got {protocol!r}")
            number = entry.get("port")
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise ConfigError(f"{where}.ports[{j}].port", f"must be a port number 1-65535, got {number!r}")
            ports.append((protocol.lower(), number))
        rules.append(AwsIngressRule(peers=tuple(peers), ports=tuple(ports)))
    return AwsNetworking(ingress=tuple(rules), security_group=group)


def _aws(raw: Mapping[str, Any]) -> AwsTargetGroupTarget:
    field = "spec.target.awsTargetGroup"
    unknown = set(raw) - {"arn", "shared", "networking"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown field")
    arn = _string(raw, "arn", field)
    if not _TG_ARN.match(arn):
        raise ConfigError(f"{field}.arn", f"is not an ELBv2 target group ARN: {arn!r}")
    shared = raw.get("shared", False)
    if not isinstance(shared, bool):
        raise ConfigError(f"{field}.shared", "must be true or false")
    networking = _aws_networking(raw["networking"], f"{field}.networking") if raw.get("networking") is not None else None
    return AwsTargetGroupTarget(arn=arn, shared=shared, networking=networking)


def _memory(raw: Mapping[str, Any]) -> MemoryTarget:
    unknown = set(raw) - {"name"}
    if unknown:
        raise ConfigError(f"spec.target.memory.{sorted(unknown)[0]}", "unknown field")
    return MemoryTarget(name=_string(raw, "name", "spec.target.memory"))


_TARGETS: dict[str, Callable[[Mapping[str, Any]], TargetSpec]] = {"gcpNeg": _gcp, "awsTargetGroup": _aws, "memory": _memory}


def parse_binding_spec(spec: Any) -> BindingSpec:
    """Validate a TargetBinding ``spec``; the first problem found is raised with its field path."""
    spec = _mapping(spec, "spec")
    service = _mapping(spec.get("serviceRef"), "spec.serviceRef")
    service_name = _string(service, "name", "spec.serviceRef")
    if "port" not in service:
        raise ConfigError("spec.serviceRef.port", "is required")
    port = parse_port(service["port"], field="spec.serviceRef.port")
    target_raw = _mapping(spec.get("target"), "spec.target")
    kinds = [k for k in target_raw if target_raw[k] is not None]
    unknown = [k for k in kinds if k not in _TARGETS]
    if unknown:
        raise ConfigError(f"spec.target.{unknown[0]}", "unknown target kind (gcpNeg or awsTargetGroup)")
    if len(kinds) != 1:
        raise ConfigError(
            "spec.target",
            "must set exactly one of gcpNeg or awsTargetGroup" + (f", got {', '.join(kinds)}" if kinds else ""),
        )
    kind = kinds[0]
    target = _TARGETS[kind](_mapping(target_raw[kind], f"spec.target.{kind}"))
    gate = spec.get("readinessGate", True)
    if not isinstance(gate, bool):
        raise ConfigError("spec.readinessGate", "must be true or false")
    family = spec.get("ipFamily", "IPv4")
    if family not in ("IPv4", "IPv6"):
        raise ConfigError("spec.ipFamily", f"must be IPv4 or IPv6, got {family!r}")
    return BindingSpec(
        service_name=service_name, service_port=port, target=target, readiness_gate=gate, ip_family=family
    )
