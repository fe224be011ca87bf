"""The AWS provider package: ELBv2 target groups of type ``ip``, kept equal to a Service's endpoints.

One module per concept (the design of each is in its docstring):

* ``provider`` — :class:`AwsProvider`, the :class:`~negsync.providers.base.TargetProvider`;
* ``calls`` — the credential chain, clients per (service, region), the account's shared throttle
  budget, botocore's paginators, the one error-mapped call; ``errors`` — every error code's outcome;
* ``groups`` — target-group resolution: description, VPC CIDRs, the own-zone rule;
* ``validation`` — which endpoints a group can take, and their TargetDescriptions (pure);
* ``registration`` — RegisterTargets / DeregisterTargets, deregistering as AWS reported;
* ``health`` — members with health from DescribeTargetHealth, and the gates' poll budget;
* ``claims`` — which binding manages which group (``shared``);
* ``networking`` — security-group rules of ``networking`` sections.

Only this package imports boto3/botocore; it never imports the GCP provider (shared code lives in
:mod:`negsync.providers.base` and :mod:`negsync.providers.ratelimit`).
"""

from __future__ import annotations

from negsync.providers.aws.calls import AWS_THROTTLE_LIMITS, DEFAULT_RATE_LIMITS, EC2_RATE_LIMITS
from negsync.providers.aws.claims import CLAIMS, TargetGroupClaims
from negsync.providers.aws.groups import TargetGroupInfo
from negsync.providers.aws.health import HEALTH_POLL_SHARE, ReportedTarget, health_from_state
from negsync.providers.aws.provider import AwsProvider
from negsync.providers.aws.registration import MAX_TARGETS_PER_CALL
from negsync.providers.aws.validation import ALL_ZONES, InvalidEndpoints, invalid_endpoints

__all__ = [
    "ALL_ZONES",
    "AWS_THROTTLE_LIMITS",
    "CLAIMS",
    "DEFAULT_RATE_LIMITS",
    "EC2_RATE_LIMITS",
    "HEALTH_POLL_SHARE",
    "MAX_TARGETS_PER_CALL",
    "AwsProvider",
    "InvalidEndpoints",
    "ReportedTarget",
    "TargetGroupClaims",
    "TargetGroupInfo",
    "health_from_state",
    "invalid_endpoints",
]
