"""What each AWS error code means for negsync: one outcome per code, for every ELBv2 error botocore knows.

The reconciler acts on five outcomes, not on codes:

* ``transient`` → :class:`TransientError`: back off (server hint honoured) and retry.
* ``rejected`` → :class:`RejectedError`: the batch holds an endpoint AWS refuses; the reconciler
  bisects the batch and reports the bad endpoint (an ``EndpointRejected`` Event), the rest go in.
* ``gone`` → :class:`TargetNotFound`: the target group (or its load balancer) does not exist;
  a ``SyncFailed`` condition and Event, retried on the reconciler's exponential back-off — never a
  hot loop, and nothing is deregistered on the binding's behalf.
* ``denied`` → :class:`InvalidTarget` whose message names the IAM action that was refused
  (``elasticloadbalancing:RegisterTargets``) and the policy to compare with; also back-off.
* ``unusable`` → :class:`InvalidTarget`: a quota or configuration of the account or group that a
  retry cannot fix (``TooManyTargets``, ``OperationNotPermitted``...); condition, back-off.

The table :data:`ELBV2_OUTCOMES` covers every exception shape of botocore's ELBv2 service model
(``botocore/data/elbv2/2015-12-01/service-2.json``; ``tests/providers/aws/test_errors.py``
fails when a botocore upgrade adds one), plus the common query-API errors every AWS service can
return (ELBv2 API reference, "Common Errors") and the EC2 codes of the calls negsync makes.
Codes not in any table fall back on the HTTP status: 5xx and 429 transient, else ``unusable``.

Only this package knows AWS error codes: :mod:`negsync.providers.aws.calls` hands a botocore
``ClientError``'s code to :func:`to_error`, and registration reads one ValidationError's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from negsync.errors import InvalidTarget, ProviderError, RejectedError, TargetNotFound, TransientError

__all__ = ["COMMON_OUTCOMES", "EC2_OUTCOMES", "ELBV2_OUTCOMES", "Outcome", "iam_action", "outcome_of", "to_error"]

Outcome = Literal["transient", "rejected", "gone", "denied", "unusable"]

#: Every exception of the ELBv2 service model, by its wire code (the shape's ``error.code``).
ELBV2_OUTCOMES: Final[Mapping[str, Outcome]] = {
    # Server side, retry later: HTTP 500/429 in the model.
    "HealthUnavailable": "transient",  # DescribeTargetHealth, 500 "could not be retrieved due to an internal error"
    "InsufficientCapacity": "transient",
    "PriorRequestNotComplete": "transient",  # 429
    "CapacityReservationPending": "transient",
    # One endpoint of the batch is refused: bisect, report it, register the rest.
    "InvalidTarget": "rejected",
    "TooManyRegistrationsForTargetId": "rejected",  # that IP is registered with too many load balancers
    "AvailabilityZoneNotSupported": "rejected",  # a zone given for one target the LB does not have
    # The group or its load balancer is gone.
    "TargetGroupNotFound": "gone",
    "LoadBalancerNotFound": "gone",
    "ResourceNotFound": "gone",
    # Quotas and configuration a retry does not fix.
    "TooManyTargets": "unusable",  # the group (or the LB) holds its maximum number of targets
    "TooManyTargetGroups": "unusable",
    "TooManyLoadBalancers": "unusable",
    "TooManyListeners": "unusable",
    "TooManyRules": "unusable",
    "TooManyActions": "unusable",
    "TooManyCertificates": "unusable",
    "TooManyTags": "unusable",
    "TooManyTrustStores": "unusable",
    "TooManyTrustStoreRevocationEntries": "unusable",
    "TooManyUniqueTargetGroupsPerLoadBalancer": "unusable",
    "TargetGroupAssociationLimit": "unusable",
    "CapacityUnitsLimitExceeded": "unusable",
    "CapacityDecreaseRequestLimitExceeded": "unusable",
    "OperationNotPermitted": "unusable",
    "InvalidConfigurationRequest": "unusable",
    "ResourceInUse": "unusable",
    # Errors of actions negsync never calls (listeners, certificates, trust stores...): if one ever
    # shows up it is a configuration problem, not something a retry or a bisection fixes.
    "ALPNPolicyNotFound": "unusable",
    "AllocationIdNotFound": "unusable",
    "CaCertificatesBundleNotFound": "unusable",
    "CertificateNotFound": "unusable",
    "DeleteAssociationSameAccount": "unusable",
    "DuplicateListener": "unusable",
    "DuplicateLoadBalancerName": "unusable",
    "DuplicateTagKeys": "unusable",
    "DuplicateTargetGroupName": "unusable",
    "DuplicateTrustStoreName": "unusable",
    "IncompatibleProtocols": "unusable",
    "InvalidCaCertificatesBundle": "unusable",
    "InvalidLoadBalancerAction": "unusable",
    "InvalidRevocationContent": "unusable",
    "InvalidScheme": "unusable",
    "InvalidSecurityGroup": "unusable",
    "InvalidSubnet": "unusable",
    "ListenerNotFound": "unusable",
    "PriorityInUse": "unusable",
    "RevocationContentNotFound": "unusable",
    "RevocationIdNotFound": "unusable",
    "RuleNotFound": "unusable",
    "SSLPolicyNotFound": "unusable",
    "SubnetNotFound": "unusable",
    "AssociationNotFound": "unusable",
    "TrustStoreInUse": "unusable",
    "TrustStoreNotFound": "unusable",
    "TrustStoreNotReady": "unusable",
    "UnsupportedProtocol": "unusable",
}

#: Errors any AWS query API can return (API reference "Common Errors"), and STS/credential codes.
COMMON_OUTCOMES: Final[Mapping[str, Outcome]] = {
    "Throttling": "transient",
    "ThrottlingException": "transient",  # ELBv2's documented throttle code ("Rate exceeded")
    "ThrottledException": "transient",
    "RequestLimitExceeded": "transient",  # EC2's throttle code
    "RequestThrottled": "transient",
    "RequestThrottledException": "transient",
    "TooManyRequestsException": "transient",
    "EC2ThrottledException": "transient",
    "SlowDown": "transient",
    "InternalFailure": "transient",
    "InternalError": "transient",
    "ServiceUnavailable": "transient",
    "ServiceUnavailableException": "transient",
    "Unavailable": "transient",
    "RequestTimeout": "transient",
    "RequestTimeoutException": "transient",
    "RequestExpired": "transient",  # clock skew; botocore corrects its offset on the retry
    "ExpiredToken": "transient",  # IRSA/Pod Identity credentials rotate; botocore refreshes them
    "ExpiredTokenException": "transient",
    "IDPCommunicationError": "transient",
    "ValidationError": "rejected",  # a 400 naming a target (AZ rules, IP outside the allowed ranges)
    "InvalidParameterValue": "rejected",
    "InvalidParameterCombination": "rejected",
    "AccessDenied": "denied",
    "AccessDeniedException": "denied",
    "UnauthorizedOperation": "denied",  # EC2's code
    "NotAuthorized": "denied",
    "OptInRequired": "denied",  # the account is not subscribed to the service in this region
    "AuthFailure": "denied",
    "InvalidClientTokenId": "denied",
    "UnrecognizedClientException": "denied",
    "SignatureDoesNotMatch": "denied",
    "IncompleteSignature": "denied",
    "MissingAuthenticationToken": "denied",
    "InvalidAction": "unusable",
    "MissingAction": "unusable",
    "MissingParameter": "unusable",
    "MalformedQueryString": "unusable",
    "InvalidQueryParameter": "unusable",
}

#: EC2 codes of the calls negsync makes (DescribeVpcs, security-group rules).
EC2_OUTCOMES: Final[Mapping[str, Outcome]] = {
    "InvalidVpcID.NotFound": "unusable",
    "InvalidGroup.NotFound": "gone",
    "InvalidGroupId.Malformed": "unusable",
    "InvalidPermission.Duplicate": "unusable",  # handled before mapping: the rule is already there
    "InvalidPermission.NotFound": "unusable",  # handled before mapping: the rule is already gone
    "RulesPerSecurityGroupLimitExceeded": "unusable",
    "InvalidNetworkInterfaceID.NotFound": "gone",
}

_CREDENTIAL_CODES: Final = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)

_IAM_PREFIX: Final[Mapping[str, str]] = {"elbv2": "elasticloadbalancing", "ec2": "ec2", "sts": "sts"}


def iam_action(service: str, operation: str) -> str:
    """The IAM action a call needs: ``elasticloadbalancing:RegisterTargets``, ``ec2:DescribeVpcs``."""
    return f"{_IAM_PREFIX.get(service, service)}:{operation}"


def outcome_of(code: str, *, status: int = 400) -> Outcome:
    """The outcome of an AWS error code; unknown codes by HTTP status (5xx and 429 transient)."""
    for table in (ELBV2_OUTCOMES, COMMON_OUTCOMES, EC2_OUTCOMES):
        if code in table:
            return table[code]
    if status >= 500 or status == 429:
        return "transient"
    return "unusable"


def to_error(
    *,
    service: str,
    operation: str,
    code: str,
    message: str,
    status: int,
    where: str,
    retry_after: float | None = None,
) -> ProviderError:
    """The negsync error for one AWS error answer (after botocore's own retries)."""
    text = f"{operation} in {where}: {code}: {message}".rstrip(": ")
    outcome = outcome_of(code, status=status)
    if outcome == "transient":
        return TransientError(text, retry_after=retry_after)
    if outcome == "rejected":
        return RejectedError(text)
    if outcome == "gone":
        return TargetNotFound(text)
    if outcome == "denied":
        if code in _CREDENTIAL_CODES:
            return InvalidTarget(
                f"{text} (AWS does not accept negsync's credentials: check the IRSA role annotation "
                "or the Pod Identity association, docs/aws.md)"
            )
        return InvalidTarget(
            f"{text} (the IAM policy does not allow {iam_action(service, operation)}; "
            "compare the role's policy with docs/aws.md)"
        )
    return InvalidTarget(text)
