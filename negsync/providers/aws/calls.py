"""Every AWS call of the provider: the credential chain, one client per (service, region), pacing, errors, paging.

* **Client.** boto3 ``elbv2`` (plus ``ec2`` for DescribeVpcs and security-group rules) with
  botocore's default credential chain — IRSA and EKS Pod Identity work without code here;
  :meth:`AwsApi.check_credentials` resolves it once at start-up so that "no credentials at all"
  is a configuration error (CLI exit 2), not a condition on every binding.  One client per
  (service, region), created lazily under a lock because boto3 *sessions* are not thread-safe
  (clients are).  Retries are botocore's own (``standard`` or ``adaptive`` mode,
  ``total_max_attempts``); negsync does not wrap a second retry loop around them — what escapes
  botocore becomes :class:`TransientError` and the reconciler's back-off takes over.  Timeouts
  are always on, so a hung connection cannot stall a worker thread.  The endpoint is botocore's
  to pick: ``endpoint_url`` overrides it, else ``AWS_ENDPOINT_URL`` /
  ``AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`` / ``AWS_ENDPOINT_URL_EC2`` (botocore's support).
* **Pacing: the account's shared budget.** AWS throttles ELBv2 per account and region with
  buckets every caller shares ("elb-api-throttling"): all ``Describe*`` actions together, the
  registration actions together, and every action together.  negsync keeps one
  :class:`~negsync.providers.ratelimit.TokenBucket` per such group and region
  (:data:`DEFAULT_RATE_LIMITS`, below AWS's refill rates, so other tools keep room), as the LB
  Controller's ``pkg/aws/throttle/defaults.go`` does; a call pays into every group it belongs to.
  Every HTTP attempt — retries and pages included — takes its tokens in botocore's
  ``before-send`` hook, so a retry storm is paced like first attempts are.
* **Paging is botocore's.** :meth:`AwsApi.call` reads every page of an operation that has a
  paginator in botocore's model (``client.can_paginate``; ``paginators-1.json`` of elbv2
  2015-12-01 and ec2 2016-11-15: DescribeTargetGroups, DescribeVpcs, DescribeNetworkInterfaces,
  DescribeSecurityGroupRules) and merges them (``build_full_result``), so no caller sees only a
  first page.  DescribeTargetHealth and DescribeTargetGroupAttributes have no paginator (nor a
  Marker in their input shapes): one call returns everything.
* **Errors.** A botocore ``ClientError`` becomes negsync's error through
  :func:`negsync.providers.aws.errors.to_error` (one outcome per code); connection failures that
  botocore already retried are transient; missing credentials are not.

The call sites name the service and operation as literal strings:
``tests/deploy/test_iam_matches_code.py`` checks them against the IAM policy in docs/aws.md.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from negsync import __version__
from negsync.core.backoff import parse_retry_after
from negsync.core.clock import Clock
from negsync.errors import ConfigError, ProviderError, TransientError
from negsync.providers.aws.errors import to_error
from negsync.providers.ratelimit import RateLimits

__all__ = [
    "AWS_THROTTLE_LIMITS",
    "DEFAULT_RATE_LIMITS",
    "EC2_RATE_LIMITS",
    "RETRY_MODES",
    "AwsApi",
    "error_code",
    "translate",
]

log = logging.getLogger(__name__)

#: AWS's own ELBv2 buckets per account and region: throttle group → (refill per second, capacity).
#: Describe* and Register/Deregister from the "elb-api-throttling" page of the ELB user guide;
#: the account-level bucket of all actions as in LBC ``pkg/aws/throttle/defaults.go`` (``.*``).
AWS_THROTTLE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {
    "RegisterTargets|DeregisterTargets": (4.0, 20),
    "Describe*": (10.0, 40),
    "*": (10.0, 40),
}

#: negsync's ELBv2 throttle groups → (tokens per second, burst): each below AWS's refill rate
#: (:data:`AWS_THROTTLE_LIMITS`), so the controller leaves room for other tools in the account.
DEFAULT_RATE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {
    "RegisterTargets|DeregisterTargets": (3.0, 10),
    "Describe*": (5.0, 20),
    "*": (8.0, 20),
}

#: EC2 calls (DescribeVpcs, security-group rules) in one group of their own: EC2 throttles apart
#: from ELBv2, and negsync makes few of them.
EC2_RATE_LIMITS: Final[Mapping[str, tuple[float, int]]] = {"*": (5.0, 10)}

RETRY_MODES: Final = ("standard", "adaptive")

# How long one HTTP attempt may wait for a token before giving up as transient.  Generous: at
# 4/s a full 200-call backlog drains in under a minute.
_PACING_TIMEOUT: Final = 60.0


class _PacingTimeout(Exception):
    """Raised from the before-send hook when no token arrives in time; becomes TransientError."""


class AwsApi:
    """boto3 clients per (service, region) with their throttle groups, and the one paced, error-mapped call."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        max_attempts: int,
        retry_mode: str,
        rate_limits: Mapping[str, tuple[float, int]],
        clock: Clock,
        session: boto3.Session | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        if retry_mode not in RETRY_MODES:
            raise ConfigError("aws.retryMode", f"must be one of {', '.join(RETRY_MODES)}, got {retry_mode!r}")
        if max_attempts < 1:
            raise ConfigError("aws.maxAttempts", f"must be >= 1, got {max_attempts}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigError("aws.timeouts", "connect and read timeouts must be positive")
        self.endpoint_url = endpoint_url or None
        self.rate_limits = dict(rate_limits)
        RateLimits(self.rate_limits)  # validate now, not on the first call
        self._clock = clock
        self._session = session
        self._config = Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Worker threads share one client per region; the default pool of 10 would discard
            # connections under load.
            max_pool_connections=32,
            user_agent_extra=f"negsync/{__version__}",
        )
        # Creating a client takes ~0.1 s: its own lock, so readers of other caches never wait on it.
        self._client_lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._limits: dict[tuple[str, str], RateLimits] = {}

    def client(self, service: str, region: str) -> Any:
        """The cached boto3 client for ``service`` ("elbv2" or "ec2") in ``region``."""
        key = (service, region)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._client_lock:  # boto3 sessions are not thread-safe; clients are
            client = self._clients.get(key)
            if client is None:
                if self._session is None:
                    self._session = boto3.Session()
                client = self._session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=self._config
                )
                client.meta.events.register(
                    "before-send", functools.partial(_pace, self._region_limits(region, service))
                )
                self._clients[key] = client
        return client

    def check_credentials(self) -> str:
        """Resolve botocore's default credential chain once, at start-up; returns the method found.

        The chain is botocore's own, in its order: environment keys, web identity (IRSA:
        ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), shared files, the container provider
        (EKS Pod Identity: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``),
        instance metadata.  Finding none is a configuration error (CLI exit 2) rather than a
        condition on every binding; a provider that is found but fails to answer is reported per
        call later (it may be a passing outage of the Pod Identity agent).
        """
        with self._client_lock:
            if self._session is None:
                self._session = boto3.Session()
            session = self._session
        try:
            credentials = session.get_credentials()
        except (BotoCoreError, ValueError) as err:
            log.warning("AWS credentials could not be loaded yet: %s", err)
            return "unavailable"
        if credentials is None:
            raise ConfigError(
                "AWS credentials",
                "none found: give the ServiceAccount an IAM role (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), "
                "an EKS Pod Identity association (AWS_CONTAINER_CREDENTIALS_FULL_URI), or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY; see docs/aws.md",
            )
        return str(getattr(credentials, "method", "") or "unknown")

    def limits(self, region: str, service: str = "elbv2") -> RateLimits:
        """The throttle groups pacing ``service`` in ``region``: every client there shares them."""
        with self._client_lock:
            return self._region_limits(region, service)

    def _region_limits(self, region: str, service: str) -> RateLimits:
        # Called with the lock held.  Per region because AWS throttles per account and region.
        limits = self._limits.get((region, service))
        if limits is None:
            table = self.rate_limits if service == "elbv2" else EC2_RATE_LIMITS
            limits = self._limits[(region, service)] = RateLimits(table, clock=self._clock)
        return limits

    def call(self, service: str, region: str, operation: str, **params: Any) -> dict[str, Any]:
        """``operation`` with botocore's retries, paced, every page merged, failures as negsync errors."""
        client = self.client(service, region)
        method = xform_name(operation)
        what = f"{operation} in {region}"
        try:
            if client.can_paginate(method):
                merged: dict[str, Any] = client.get_paginator(method).paginate(**params).build_full_result()
                return merged
            response: dict[str, Any] = getattr(client, method)(**params)
            return response
        except ClientError as err:
            raise translate(err, service=service, operation=operation, region=region) from err
        except _PacingTimeout as err:
            raise TransientError(f"{what}: no rate-limit token within {_PACING_TIMEOUT:g}s") from err
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise ProviderError(
                f"{what}: no usable AWS credentials (IRSA or Pod Identity set up?): {err}"
            ) from err
        except (BotoConnectionError, HTTPClientError) as err:  # refused, reset, connect/read time-outs
            # botocore already retried these; what is left is an outage worth backing off from.
            raise TransientError(f"{what}: {err}") from err
        except BotoCoreError as err:
            raise ProviderError(f"{what}: {err}") from err


def _pace(limits: RateLimits, event_name: str = "", **_: Any) -> None:
    """botocore ``before-send`` hook: take the operation's token before each HTTP attempt."""
    operation = event_name.rsplit(".", 1)[-1]
    if not limits.acquire(operation, timeout=_PACING_TIMEOUT):
        raise _PacingTimeout(operation)


def error_code(err: BaseException) -> str:
    """The AWS error code behind a negsync error raised by :meth:`AwsApi.call` ("" if none)."""
    cause = err.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def translate(err: ClientError, *, service: str, operation: str, region: str) -> ProviderError:
    """A botocore ClientError (after botocore's own retries) as negsync's error (see errors)."""
    error = err.response.get("Error", {})
    metadata = err.response.get("ResponseMetadata", {})
    retry_after = parse_retry_after((metadata.get("HTTPHeaders") or {}).get("retry-after"))
    return to_error(
        service=service,
        operation=operation,
        code=str(error.get("Code", "")),
        message=str(error.get("Message", "")),
        status=int(metadata.get("HTTPStatusCode") or 0),
        where=region,
        retry_after=retry_after,
    )
