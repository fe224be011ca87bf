"""A loopback HTTP proxy in front of moto that injects ELBv2 faults the way AWS shows them.

Faults are per action (``RegisterTargets``, ``DescribeTargetHealth``...):

* :meth:`ElbProxy.fail_next` answers the next calls with an error (status, code, optional
  ``Retry-After`` header) — 429 Throttling, 503 ServiceUnavailable;
* :meth:`ElbProxy.slow_next` forwards the next calls to moto and then delays the response, so the
  change *is applied* but the client times out — the ambiguous case a retry must survive;
* :meth:`ElbProxy.reject_ips` answers 400 ``InvalidTarget`` to every RegisterTargets naming one of
  the IPs — a partial batch failure the reconciler must bisect;
* :meth:`ElbProxy.hold` parks RegisterTargets calls (after the first ``pass_first``) until released.

Every request is recorded with its time, action, targets and raw parameters.

**Where moto differs from AWS, the proxy answers as AWS does** (moto 5.2 is a protocol peer, not
the truth).  Each rule cites its source; where the truth is not documented the proxy is stricter
than AWS, never more lenient:

* RegisterTargets, AvailabilityZone rules (ELBv2 API reference, ``TargetDescription``): an IP
  outside the VPC needs a zone — "The Availability Zone is required for IP address '…' because it
  is not in the VPC" (AWS's answer quoted in aws-load-balancer-controller PR #1862); an IP inside
  the VPC cannot be overridden to ``all`` — "The IP address '…' is within the VPC, and cannot have
  its Availability Zone overridden to 'all'" (LBC issue #561); and on an ALB target group (HTTP,
  HTTPS) whose ``load_balancing.cross_zone.enabled`` attribute is ``false``, ``all`` is refused for
  an IP outside the VPC — "When cross-zone load balancing is disabled on this target group, you
  must specify an Availability Zone for IP target '…' since it is outside of the VPC" (LBC issue
  #4477, PR #4496: "this does not apply to NLB").  moto accepts all three.
* DescribeTargetHealth reports each IP target's AvailabilityZone: the zone it was registered with,
  or for an IP in one of the VPC's subnets the subnet's zone, which AWS detects (LBC PR #4544: "AWS
  auto-assigns an AZ (e.g., us-east-1d) to the target").  moto reports none.
* DescribeNetworkInterfaces with the filter ``addresses.private-ip-address`` matches every private
  IPv4 address of an ENI, secondary ones included (EC2 API reference, DescribeNetworkInterfaces:
  "The private IPv4 addresses associated with the network interface"); moto matches only the
  primary address, so the proxy resolves the filter itself and asks moto by ENI ID.
* DescribeSecurityGroupRules reports the Description of a rule that references another security
  group (EC2 API reference, SecurityGroupRule.Description); moto drops it for those rules (it keeps
  it in DescribeSecurityGroups), so the proxy puts it back from there.
* DeregisterTargets succeeds for a target that is not registered (AWS; moto answers InvalidTarget),
  and a target is only removed when Id, Port *and* AvailabilityZone match what AWS recorded — a
  recomputed zone that differs deregisters nothing and leaves the target behind (LBC PR #4544).
  AWS's exact matching of an absent zone is not documented: the proxy treats an absent zone as
  the subnet's detected zone (what AWS would assign on registration) and nothing else, so a
  target registered with an explicit zone is only removed by naming that zone — stricter.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Self

import boto3
from botocore.exceptions import ClientError

from tests.support.loopback import LoopbackServer

_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
ET.register_namespace("", _NS)


@dataclass
class Call:
    at: float
    action: str
    targets: tuple[tuple[str, int], ...]
    status: int = 200
    params: dict[str, list[str]] = field(default_factory=dict)
    access_key: str = ""  # the AccessKeyId the request was signed with (SigV4 Credential=...)


def descriptions_of(params: dict[str, list[str]]) -> list[dict[str, str]]:
    """``Targets.member.N.{Id,Port,AvailabilityZone}`` of a query → one dict per target."""
    found: dict[str, dict[str, str]] = {}
    for key, values in params.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "Targets":
            found.setdefault(parts[2], {})[parts[3]] = values[0]
    return [found[n] for n in sorted(found, key=int) if "Id" in found[n]]


def targets_of(params: dict[str, list[str]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((t["Id"], int(t.get("Port", 0))) for t in descriptions_of(params)))


@dataclass
class ElbProxy(LoopbackServer):
    thread_name = "elb-proxy"

    upstream: str
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    #: AccessKeyIds that STS answers through this proxy handed out (AssumeRole*).
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _faults: dict[str, list[tuple[int, str, int | None]]] = field(default_factory=dict)
    _slow: dict[str, list[float]] = field(default_factory=dict)
    _rejected: set[str] = field(default_factory=set)
    _held: threading.Event = field(default_factory=threading.Event)
    _pass_first: int = 0
    #: (target group ARN, Id, Port) → the zone given at registration ("all" or a zone name).
    _zones: dict[tuple[str, str, int], str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _ignored: int = 0
    _reject_code: str = "InvalidTarget"
    _groups: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _vpcs: dict[str, Any] = field(default_factory=dict)
    _state: str | None = None

    # -- controls --------------------------------------------------------------------------------
    def fail_next(self, action: str, count: int = 1, *, status: int = 400, code: str = "Throttling",
                  retry_after: int | None = None) -> None:
        with self.lock:
            self._faults.setdefault(action, []).extend([(status, code, retry_after)] * count)

    def report_state(self, state: str | None) -> None:
        """Report every target in this health state (moto says ``healthy`` at once; AWS keeps a new
        target ``initial`` for interval × healthy-threshold seconds).  None: moto's own state."""
        with self.lock:
            self._state = state

    def ignore_deregistrations(self, count: int) -> None:
        """Answer the next DeregisterTargets with success and change nothing (what AWS does when the
        description names no registered target)."""
        with self.lock:
            self._ignored += count

    def slow_next(self, action: str, count: int, seconds: float) -> None:
        with self.lock:
            self._slow.setdefault(action, []).extend([seconds] * count)

    def reject_ips(self, ips: set[str], *, code: str = "InvalidTarget") -> None:
        """Answer 400 ``code`` to every RegisterTargets naming one of ``ips``."""
        with self.lock:
            self._rejected = set(ips)
            self._reject_code = code

    def hold(self, *, pass_first: int = 0) -> None:
        """Park RegisterTargets calls after the next ``pass_first`` until :meth:`release`."""
        with self.lock:
            self._pass_first = pass_first
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def actions(self, action: str, *, status: int | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.action == action and (status is None or c.status == status)]

    # -- server ----------------------------------------------------------------------------------
    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        return _handler(self)

    def start(self) -> Self:
        super().start()
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        self.release()  # held handlers must not outlive the server
        super().stop()

    # -- AWS-faithful answers (see the module docstring) --------------------------------------------
    def client(self, service: str) -> Any:
        """A client straight to moto (not recorded, not faulted) for the proxy's own look-ups."""
        with self.lock:
            if service not in self._clients:
                self._clients[service] = _session().client(service, endpoint_url=self.upstream)
            return self._clients[service]

    def _group(self, arn: str) -> dict[str, Any] | None:
        # Type, protocol and VPC of a group never change: cached (its attributes are not).
        with self.lock:
            if arn in self._groups:
                return self._groups[arn]
        try:
            groups = self.client("elbv2").describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
        except ClientError:
            return None
        with self.lock:
            self._groups[arn] = groups[0] if groups else None
        return groups[0] if groups else None

    def _vpc(self, vpc_id: str) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network],
                                        list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]]:
        # Cached for the proxy's life (one test): tests shape their VPC before the first target call.
        with self.lock:
            if vpc_id in self._vpcs:
                return self._vpcs[vpc_id]
        ec2 = self.client("ec2")
        vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
        cidrs = {vpc["CidrBlock"]} | {a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet") or ()}
        cidrs |= {a["Ipv6CidrBlock"] for a in vpc.get("Ipv6CidrBlockAssociationSet") or ()}
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        zoned = [(ipaddress.ip_network(s["CidrBlock"]), s["AvailabilityZone"]) for s in subnets]
        found = ([ipaddress.ip_network(c) for c in cidrs], zoned)
        with self.lock:
            self._vpcs[vpc_id] = found
        return found

    def _cross_zone_off(self, arn: str) -> bool:
        attributes = self.client("elbv2").describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        return any(a["Key"] == "load_balancing.cross_zone.enabled" and a["Value"] == "false" for a in attributes)

    def register_error(self, params: dict[str, list[str]]) -> str | None:
        """The ValidationError message AWS would give this RegisterTargets, if any."""
        arn = (params.get("TargetGroupArn") or [""])[0]
        group = self._group(arn)
        if group is None or group.get("TargetType") != "ip":
            return None  # moto answers TargetGroupNotFound itself
        networks, subnets = self._vpc(group["VpcId"])
        alb = group.get("Protocol") in ("HTTP", "HTTPS")
        cross_zone_off: bool | None = None
        for target in descriptions_of(params):
            try:
                address = ipaddress.ip_address(target["Id"])
            except ValueError:
                continue
            zone = target.get("AvailabilityZone")
            inside = any(address.version == n.version and address in n for n in networks)
            if inside and zone == "all":
                detected = _subnet_zone(str(address), subnets) or ""
                return (f"The IP address '{address}' is within the VPC, and cannot have its Availability Zone "
                        f"overridden to 'all' from '{detected}'")
            if not inside and not zone:
                return f"The Availability Zone is required for IP address '{address}' because it is not in the VPC"
            if not inside and zone == "all" and alb:
                if cross_zone_off is None:
                    cross_zone_off = self._cross_zone_off(arn)
                if cross_zone_off:
                    return ("When cross-zone load balancing is disabled on this target group, you must specify an "
                            f"Availability Zone for IP target '{address}' since it is outside of the VPC")
        return None

    def registered(self, params: dict[str, list[str]]) -> None:
        arn = (params.get("TargetGroupArn") or [""])[0]
        with self.lock:
            for target in descriptions_of(params):
                key = (arn, target["Id"], int(target.get("Port", 0)))
                if target.get("AvailabilityZone"):
                    self._zones[key] = target["AvailabilityZone"]
                else:
                    self._zones.pop(key, None)

    def reported(self, arn: str) -> list[dict[str, Any]]:
        """DescribeTargetHealth as AWS would report it: each Target with its AvailabilityZone."""
        group = self._group(arn)
        described = self.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        subnets = self._vpc(group["VpcId"])[1] if group else []
        for description in described:
            target = description["Target"]
            with self.lock:
                zone = self._zones.get((arn, target["Id"], int(target.get("Port", 0))))
            if zone is None:
                zone = _subnet_zone(target["Id"], subnets)
            if zone is not None:
                target["AvailabilityZone"] = zone
        return described

    def deregister(self, params: dict[str, list[str]]) -> bool:
        """Deregister what matches exactly; False when the group does not exist (moto answers then)."""
        arn = (params.get("TargetGroupArn") or [""])[0]
        group = self._group(arn)
        if group is None:
            return False
        with self.lock:
            if self._ignored > 0:
                self._ignored -= 1
                return True
        subnets = self._vpc(group["VpcId"])[1]
        present = {(t["Target"]["Id"], t["Target"].get("Port")): t["Target"].get("AvailabilityZone")
                   for t in self.reported(arn)}
        matched = []
        for target in descriptions_of(params):
            key = (target["Id"], int(target.get("Port", 0)))
            if key not in present:
                continue  # not registered: AWS succeeds and does nothing
            zone = target.get("AvailabilityZone")
            if zone is None:
                zone = _subnet_zone(target["Id"], subnets)
            if zone == present[key]:
                matched.append({"Id": key[0], "Port": key[1]})
        if matched:
            self.client("elbv2").deregister_targets(TargetGroupArn=arn, Targets=matched)
            with self.lock:
                for target in matched:
                    self._zones.pop((arn, str(target["Id"]), int(target["Port"])), None)
        return True

    def rewrite_eni_filter(self, params: dict[str, list[str]]) -> dict[str, list[str]]:
        """``addresses.private-ip-address`` resolved over all of an ENI's addresses (see module docstring)."""
        for key, values in list(params.items()):
            if not (key.startswith("Filter.") and key.endswith(".Name") and values == ["addresses.private-ip-address"]):
                continue
            prefix = key.removesuffix(".Name")
            wanted = {v for k, v in ((k, vs[0]) for k, vs in params.items()) if k.startswith(f"{prefix}.Value.")}
            enis = self.client("ec2").describe_network_interfaces()["NetworkInterfaces"]
            matched = [e["NetworkInterfaceId"] for e in enis
                       if wanted & {a["PrivateIpAddress"] for a in e.get("PrivateIpAddresses") or ()}]
            params = {k: v for k, v in params.items() if not k.startswith(f"{prefix}.Value.")}
            params[key] = ["network-interface-id"]
            for n, eni in enumerate(matched or ["eni-00000000000000000"], start=1):
                params[f"{prefix}.Value.{n}"] = [eni]
        return params

    def _decide(self, action: str, targets: tuple[tuple[str, int], ...]) -> tuple[tuple[int, str, int | None] | None, float]:
        with self.lock:
            pending = self._faults.get(action)
            fault = pending.pop(0) if pending else None
            if fault is None and action == "RegisterTargets" and self._rejected & {ip for ip, _ in targets}:
                fault = (400, self._reject_code, None)
            slow = self._slow.get(action)
            delay = slow.pop(0) if slow and fault is None else 0.0
        return fault, delay

    def _wait_if_held(self, action: str) -> None:
        if action != "RegisterTargets":
            return
        with self.lock:
            if self._pass_first > 0:
                self._pass_first -= 1
                return
        deadline = time.monotonic() + 30
        while self._held.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)


def _subnet_zone(ident: str, subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]) -> str | None:
    """The zone AWS detects for an IP target: that of the VPC subnet holding it (None outside them)."""
    try:
        address = ipaddress.ip_address(ident)
    except ValueError:
        return None
    return next((zone for network, zone in subnets if address.version == network.version and address in network), None)


_SESSIONS: list[boto3.Session] = []
_SESSION_LOCK = threading.Lock()


def _session() -> boto3.Session:
    # One for every proxy: its loader caches the service models (~1 s to parse per new session).
    with _SESSION_LOCK:
        if not _SESSIONS:
            _SESSIONS.append(boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                           region_name="us-east-1"))
        return _SESSIONS[0]


def _error_body(code: str, message: str = "") -> bytes:
    text = (message or f"injected {code}").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{text}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def _with_rule_descriptions(proxy: ElbProxy, payload: bytes) -> bytes:
    """moto's DescribeSecurityGroupRules answer with the descriptions of group-referencing rules restored."""
    root = ET.fromstring(payload)
    namespace = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""

    def text(element: ET.Element, name: str) -> str:
        child = element.find(namespace + name)
        return (child.text or "") if child is not None else ""

    for rule in root.iter(namespace + "item"):
        referenced = rule.find(namespace + "referencedGroupInfo")
        if referenced is None or rule.find(namespace + "description") is not None:
            continue
        peer = text(referenced, "groupId")
        group = proxy.client("ec2").describe_security_groups(GroupIds=[text(rule, "groupId")])["SecurityGroups"][0]
        egress = text(rule, "isEgress") == "true"
        for permission in group["IpPermissionsEgress" if egress else "IpPermissions"]:
            if (permission.get("IpProtocol") == text(rule, "ipProtocol")
                    and str(permission.get("FromPort")) == text(rule, "fromPort")
                    and str(permission.get("ToPort")) == text(rule, "toPort")):
                for pair in permission.get("UserIdGroupPairs") or ():
                    if pair.get("GroupId") == peer and pair.get("Description"):
                        ET.SubElement(rule, namespace + "description").text = pair["Description"]
    return ET.tostring(root, encoding="utf-8")


def _deregistered_body() -> bytes:
    return (f'<DeregisterTargetsResponse xmlns="{_NS}"><DeregisterTargetsResult/>'
            "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000001</RequestId></ResponseMetadata>"
            "</DeregisterTargetsResponse>").encode()


def _with_zones(payload: bytes, described: list[dict[str, Any]], state: str | None = None) -> bytes:
    """moto's DescribeTargetHealth answer with each Target's AvailabilityZone added (and the state set)."""
    zones = {(d["Target"]["Id"], str(d["Target"].get("Port"))): d["Target"].get("AvailabilityZone")
             for d in described}
    root = ET.fromstring(payload)
    for target in root.iter(f"{{{_NS}}}Target"):
        ident, port = target.find(f"{{{_NS}}}Id"), target.find(f"{{{_NS}}}Port")
        zone = zones.get((ident.text if ident is not None else "", port.text if port is not None else "None"))
        if zone and target.find(f"{{{_NS}}}AvailabilityZone") is None:
            ET.SubElement(target, f"{{{_NS}}}AvailabilityZone").text = zone
    if state is not None:
        for element in root.iter(f"{{{_NS}}}State"):
            element.text = state
    return ET.tostring(root, encoding="utf-8", xml_declaration=False)


def _handler(proxy: ElbProxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)
    host, port = upstream.hostname or "127.0.0.1", upstream.port

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            try:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True  # the client gave up (time-out): fine

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            params = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
            action = (params.get("Action") or [""])[0]
            targets = targets_of(params)
            fault, delay = proxy._decide(action, targets)
            message = ""
            if fault is None and action == "RegisterTargets":
                message = proxy.register_error(params) or ""
                if message:
                    fault = (400, "ValidationError", None)
            authorization = self.headers.get("Authorization") or ""
            access_key = authorization.partition("Credential=")[2].partition("/")[0]
            call = Call(time.monotonic(), action, targets, fault[0] if fault else 200, params, access_key)
            with proxy.lock:
                proxy.calls.append(call)
            if fault is not None:
                status, code, retry_after = fault
                headers = [("Content-Type", "text/xml")]
                if retry_after is not None:
                    headers.append(("Retry-After", str(retry_after)))
                self._reply(status, headers, _error_body(code, message))
                return
            if action == "DeregisterTargets" and proxy.deregister(params):
                if delay:
                    time.sleep(delay)
                self._reply(200, [("Content-Type", "text/xml")], _deregistered_body())
                return
            proxy._wait_if_held(action)
            if action == "DescribeNetworkInterfaces":
                body = urllib.parse.urlencode(proxy.rewrite_eni_filter(params), doseq=True).encode()
            connection = http.client.HTTPConnection(host, port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                kept = [(k, v) for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")]
            finally:
                connection.close()
            if response.status == 200 and action.startswith("AssumeRole"):
                found = ET.fromstring(payload).iter()
                with proxy.lock:
                    proxy.issued.extend(e.text or "" for e in found if e.tag.endswith("}AccessKeyId"))
            if response.status == 200 and action == "DescribeSecurityGroupRules":
                payload = _with_rule_descriptions(proxy, payload)
            if response.status == 200 and action == "RegisterTargets":
                proxy.registered(params)
            if response.status == 200 and action == "DescribeTargetHealth":
                payload = _with_zones(payload, proxy.reported((params.get("TargetGroupArn") or [""])[0]), proxy._state)
            if delay:
                time.sleep(delay)  # applied upstream, answered too late
            self._reply(response.status, kept, payload)

        do_POST = _relay
        do_GET = _relay

    return Handler
