"""``negsync controller``: the flags, the :class:`Settings` they fill, and the process around the controller.

Every flag is declared once, as a field of :class:`Settings`: the field's metadata carries the
flag's name, argparse group, help text, value type and choices, and both :func:`add_arguments`
and :meth:`Settings.from_args` are derived from those fields (``docs/reference.md`` is rendered
from the resulting parser).  Two fields are not flags (``identity``, ``watch_timeout``): they are
derived at start-up or fixed, and say so in their metadata.

:func:`run` is the process: logging, the API client (in-cluster config first), the provider of
``--provider``, telemetry, then :class:`~negsync.kube.controller.Controller` — whose
:class:`~negsync.kube.manager.Manager` also runs the health/metrics/drain-wait servers and the
webhook — until SIGTERM.  Only the chosen provider's SDK is imported (:func:`build_provider`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from negsync.core.clock import Clock, RealClock
from negsync.core.httpserver import parse_address
from negsync.core.latency import Fixed
from negsync.core.ports import TargetProvider
from negsync.errors import ConfigError
from negsync.kube.apiclient import cluster_uid, load_api_client
from negsync.kube.caches import Caches
from negsync.kube.controller import Controller
from negsync.kube.manager import Background
from negsync.kube.webhook import WebhookCertificateError, WebhookServer, start_webhook
from negsync.logs import configure as configure_logging
from negsync.providers.memory import MemoryProvider
from negsync.providers.ratelimit import parse_rate_limits
from negsync.serving import Servers
from negsync.telemetry import Telemetry

log = logging.getLogger("negsync.controller")  # the logger name operators' queries use (docs/operations.md)


# -- value types (their names are what docs/reference.md shows: "duration", "integer ≥ 1", "[host]:port")
def _duration(text: str) -> float:
    """Seconds from '15', '15s', '2m', '1h' or '500ms'."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 15s, 2m)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# -- the declaration ---------------------------------------------------------------------------
KUBE, SYNC, SERVE, ELECTION, CLOUD = "Kubernetes", "sync", "serving", "leader election", "clouds"
GROUPS = (KUBE, SYNC, SERVE, ELECTION, CLOUD)  # argparse group order, as docs/reference.md lists them


@dataclass(frozen=True, slots=True)
class Flag:
    """How one :class:`Settings` field is set on the command line."""

    name: str  # "--workers"
    group: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    switch: bool = False  # store_true
    env: str | None = None  # the flag's default is read from this variable when set

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


def _flag(default: Any, name: str, group: str, help: str, **how: Any) -> Any:
    return dataclasses.field(default=default, metadata={"flag": Flag(name, group, help, **how)})


def _derived(default: Any, why: str) -> Any:
    return dataclasses.field(default=default, metadata={"derived": why})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``negsync controller`` is configured with; field order is the flags' order."""

    kubeconfig: str | None = _flag(
        None, "--kubeconfig", KUBE, "kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config)")
    namespace: str = _flag("", "--namespace", KUBE, "watch only this namespace (default: all namespaces)")
    cluster_name: str = _flag("", "--cluster-name", KUBE, "cluster name, recorded in NEG descriptions and Events")
    cluster_uid: str = _flag(
        "", "--cluster-uid", KUBE, "stable cluster id for NEG names and ownership (default: the kube-system namespace uid)")
    provider: str = _flag("memory", "--provider", SYNC, "load-balancer provider", choices=("gcp", "aws", "memory"))
    workers: int = _flag(4, "--workers", SYNC, "reconcile workers", type=_positive_int)
    call_workers: int = _flag(8, "--call-workers", SYNC, "threads issuing cloud calls", type=_positive_int)
    sync_min_interval: float = _flag(
        0.5, "--sync-min-interval", SYNC, "minimum time between two calls on one target (bounds the call rate)",
        type=_duration)
    resync_period: float = _flag(
        300.0, "--resync-period", SYNC, "re-read every target this often to repair drift made outside negsync",
        type=_duration)
    member_list_period: float = _flag(
        60.0, "--member-list-period", SYNC,
        "re-list every target's members at least this often, so endpoints the cloud removed by itself (a VM "
        "stopped, preempted or deleted) are re-attached (default 60s)", type=_duration)
    health_poll_interval: float = _flag(
        5.0, "--health-poll-interval", SYNC, "re-read target health this often while a readiness gate is pending",
        type=_duration)
    gate_timeout: float = _flag(
        600.0, "--gate-timeout", SYNC, "release a readiness gate after this long even if the LB never reports healthy",
        type=_duration)
    metrics_addr: str = _flag(":9090", "--metrics-addr", SERVE, "address of /metrics (port 0: off)", type=_address)
    health_addr: str = _flag(
        ":8080", "--health-addr", SERVE, "address of /healthz, /readyz and /drain-wait", type=_address)
    drain_margin: float | None = _flag(
        None, "--drain-margin", SERVE, "extra wait after a detach completes before /drain-wait answers (default: "
        "measured p99 of detach latency, at least 2s; 10s before any sample)", type=_duration)
    max_drain_waiters: int = _flag(
        256, "--max-drain-waiters", SERVE, "concurrent /drain-wait requests; more get 429", type=_positive_int)
    max_drain_waiters_per_namespace: int = _flag(
        64, "--max-drain-waiters-per-namespace", SERVE,
        "concurrent /drain-wait requests for pods of one namespace; more get 429, so one namespace's rollout "
        "cannot take the whole --max-drain-waiters pool", type=_positive_int)
    webhook_addr: str = _flag(
        ":0", "--webhook-addr", SERVE, "HTTPS address of the readiness-gate injection webhook, e.g. :9443 as "
        "deploy/ sets it (default port 0: off, for runs outside a cluster)", type=_address)
    webhook_cert_dir: str | None = _flag(
        None, "--webhook-cert-dir", SERVE, "directory with tls.crt/tls.key (e.g. from cert-manager); default: "
        "self-generated, with the CA patched into the MutatingWebhookConfiguration")
    log_level: str = _flag("info", "--log-level", SERVE, "lowest level written to the JSON log on stderr",
                           choices=("debug", "info", "warning", "error"))
    leader_elect: bool = _flag(False, "--leader-elect", ELECTION, "elect a leader on a Lease; only it writes",
                               switch=True)
    lease_namespace: str = _flag(
        "negsync-system", "--leader-elect-namespace", ELECTION,
        "namespace of the Lease (and of ownership ConfigMaps)", env="POD_NAMESPACE")
    lease_name: str = _flag("negsync-controller", "--leader-elect-id", ELECTION, "name of the Lease")
    lease_duration: float = _flag(
        15.0, "--leader-elect-lease-duration", ELECTION,
        "how long a Lease is valid without renewal (controller-runtime's default)", type=_duration)
    renew_deadline: float = _flag(
        10.0, "--leader-elect-renew-deadline", ELECTION,
        "a leader that cannot renew within this steps down (before its Lease can expire)", type=_duration)
    retry_period: float = _flag(
        2.0, "--leader-elect-retry-period", ELECTION, "how often to try to acquire or renew the Lease", type=_duration)
    aws_endpoint_url: str | None = _flag(None, "--aws-endpoint-url", CLOUD, "ELBv2/EC2 endpoint (private endpoints, tests)")
    aws_max_attempts: int = _flag(10, "--aws-max-attempts", CLOUD, "botocore retry attempts", type=_positive_int)
    aws_retry_mode: str = _flag("standard", "--aws-retry-mode", CLOUD, "botocore retry mode",
                                choices=("standard", "adaptive"))
    aws_rate_limits: str = _flag(
        "", "--aws-rate-limits", CLOUD,
        "client-side ELBv2 throttle groups shared per region, KEY=RATE:BURST with KEY an operation, pattern or A|B, "
        "e.g. 'Describe*=5:20,RegisterTargets|DeregisterTargets=3:10' (merged into the defaults, which stay below "
        "AWS's account buckets: docs/aws.md)")
    gcp_compute_endpoint: str | None = _flag(
        None, "--gcp-compute-endpoint", CLOUD, "Compute API root (private endpoints, tests)")
    gcp_anonymous: bool = _flag(
        False, "--gcp-anonymous", CLOUD,
        "send no Google credentials (only with --gcp-compute-endpoint: a private or test endpoint)", switch=True)
    gcp_rate_limit: float = _flag(10.0, "--gcp-rate-limit", CLOUD, "NEG API calls per second per project", type=float)
    memory_attach_delay: float = _flag(
        0.0, "--memory-attach-delay", CLOUD, "memory provider: seconds from attach to healthy", type=_duration)
    memory_no_health_check: bool = _flag(
        False, "--memory-no-health-check", CLOUD,
        "memory provider: report no health checking (gates pass with NoHealthCheck)", switch=True)
    # The pod's name (downward API in deploy/base) says which replica leads; a random suffix keeps
    # a restarted process distinct from its predecessor's still-valid Lease record.
    identity: str = _derived("", "POD_NAME (or the host name) plus a random suffix, at start-up")
    watch_timeout: int = _derived(300, "seconds a watch stream lasts before it is re-opened (not tunable)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if not args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period > 0:
            raise ConfigError("--leader-elect-lease-duration",
                              "need lease duration > renew deadline > retry period > 0")
        if not args.member_list_period > 0:
            raise ConfigError("--member-list-period", f"must be > 0, got {args.member_list_period:g}s")
        values = {field.name: getattr(args, flag.dest) for field, flag in flags()}
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        return cls(**values, identity=identity)


def flags() -> list[tuple[dataclasses.Field[Any], Flag]]:
    """Each flag with the :class:`Settings` field it sets, in declaration order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(Settings) if "flag" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for field, flag in flags():
        group = groups[flag.group]
        default = os.environ.get(flag.env, field.default) if flag.env else field.default
        if flag.switch:
            group.add_argument(flag.name, action="store_true", help=flag.help)
        elif flag.type is not None:
            group.add_argument(flag.name, type=flag.type, choices=flag.choices, default=default, help=flag.help)
        else:
            group.add_argument(flag.name, choices=flag.choices, default=default, help=flag.help)


# -- building the pieces from settings -----------------------------------------------------------
class NodeInstances:
    """Node name → GCE instance name from the node's providerID ``gce://<project>/<zone>/<instance>``.

    Bound to the controller's node cache once the controller exists (the provider is built first).
    """

    def __init__(self) -> None:
        self.caches: Caches | None = None

    def __call__(self, node: str) -> str | None:
        record = self.caches.nodes.get(("", node)) if self.caches is not None else None
        if record is None:
            return None  # not seen yet: skipped now, the node's arrival re-queues every binding
        if not record.provider_id.startswith("gce://"):
            return node  # self-managed VMs without a providerID: the node name is the instance name
        return str(record.provider_id.rstrip("/").rsplit("/", 1)[-1]) or None

    def subnet(self, node: str) -> str | None:
        """The node's subnetwork label; "" = the cluster's default subnetwork, None = node not seen yet."""
        record = self.caches.nodes.get(("", node)) if self.caches is not None else None
        return None if record is None else str(record.subnet)


def build_provider(settings: Settings, *, api_client: Any, clock: Clock,
                   instances: NodeInstances | None = None) -> TargetProvider:
    if settings.provider == "memory":
        return MemoryProvider(clock=clock, attach_delay=Fixed(settings.memory_attach_delay),
                              health_checking=not settings.memory_no_health_check)
    # A cloud provider is imported only when chosen: boto3 and googleapiclient each take about a
    # second and tens of MB to import, and a controller runs one provider.
    if settings.provider == "aws":
        from negsync.providers.aws import AwsProvider

        limits = (parse_rate_limits(settings.aws_rate_limits, field="--aws-rate-limits")
                  if settings.aws_rate_limits else None)
        aws = AwsProvider(endpoint_url=settings.aws_endpoint_url, max_attempts=settings.aws_max_attempts,
                          retry_mode=settings.aws_retry_mode, rate_limits=limits, clock=clock)
        log.info("AWS credentials found", extra={"method": aws.check_credentials()})
        return aws
    from negsync.providers.gcp import GcpProvider  # see above: its SDK only when chosen

    return GcpProvider(cluster_uid=cluster_uid(api_client, settings.cluster_uid),
                       compute_endpoint=settings.gcp_compute_endpoint,
                       rate_limit=(settings.gcp_rate_limit, max(1, int(settings.gcp_rate_limit * 2))), clock=clock,
                       anonymous=settings.gcp_anonymous, instance_for_node=instances,
                       subnet_for_node=instances.subnet if instances is not None else None)


def start_webhook_from_settings(settings: Settings, *, controller: Controller, provider: str) -> WebhookServer | None:
    """The readiness-gate injection webhook, unless ``--webhook-addr`` has port 0."""
    if parse_address(settings.webhook_addr)[1] == 0:
        return None
    try:
        return start_webhook(caches=controller.caches, address=settings.webhook_addr,
                             cert_dir=settings.webhook_cert_dir, admission_api=controller.admission,
                             # Every replica adds its own CA to the bundle (see negsync.kube.webhook).
                             leader_patch=True, provider=provider,
                             namespace=os.environ.get("POD_NAMESPACE", "negsync-system"))
    except WebhookCertificateError as exc:
        raise ConfigError("--webhook-cert-dir", str(exc)) from None


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    settings = Settings.from_args(args)
    api_client = load_api_client(settings.kubeconfig)
    clock = RealClock()
    instances = NodeInstances()
    provider = build_provider(settings, api_client=api_client, clock=clock, instances=instances)
    telemetry = Telemetry.setup(metrics_addr=settings.metrics_addr, provider=provider.name)
    controller = Controller(api_client=api_client, provider=provider, settings=settings, clock=clock,
                            telemetry=telemetry)
    instances.caches = controller.caches
    drain_wait = controller.drain_wait(margin=settings.drain_margin, max_waiters=settings.max_drain_waiters,
                                       max_waiters_per_namespace=settings.max_drain_waiters_per_namespace)
    telemetry.track_drain_wait(drain_wait)
    servers = Servers(controller=controller, health_addr=settings.health_addr, metrics_addr=settings.metrics_addr,
                      telemetry=telemetry, extra_routes={"/drain-wait": drain_wait},
                      # /readyz: besides caches and leader, what every runnable reports (the webhook's trust)
                      readiness_checks=[controller.manager.not_ready])
    # Certificate problems are configuration errors: raised here, before anything runs (exit 2).
    webhook = start_webhook_from_settings(settings, controller=controller, provider=provider.name)
    if webhook is not None:
        telemetry.track_webhook(webhook)
        # Already serving (start_webhook binds and patches the caBundle): the manager stops it and
        # asks it for readiness (the API server trusts this replica's CA).
        controller.manager.add(Background(name="webhook", begin=lambda: None, end=webhook.stop,
                                          readiness=webhook.trust or (lambda: None)), first=True)
    # Servers first, as controller-runtime starts its HTTP servers before caches and controllers.
    controller.manager.add(Background(name="http", begin=servers.start, end=servers.stop), first=True)
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal received, shutting down", extra={"signal": signum})
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller.start()
    log.info("controller started", extra={"provider": provider.name, "namespace": settings.namespace or "*",
                                          "identity": settings.identity})
    while not stopping.wait(1.0) and controller.manager.failure is None:
        telemetry.sample(controller)
    controller.stop()
    telemetry.shutdown()
    if controller.manager.failure is not None:
        log.error("controller stopped: a runnable failed", extra={"error": str(controller.manager.failure)})
        return 1
    log.info("controller stopped")
    return 0


__all__ = ["Flag", "NodeInstances", "Settings", "add_arguments", "build_provider", "flags", "run"]
