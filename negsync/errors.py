"""negsync's exception hierarchy.

Errors a user can cause (a bad scenario file, a malformed TargetBinding) carry the dotted path
of the field at fault, so a CLI can print one line and a controller can write one condition.
Provider errors say what the caller should do next, not which SDK raised them::

    NegsyncError
     ├── ConfigError                 bad user input; .field names it (CLI exit 2, binding condition)
     └── ProviderError               a cloud call did not do what was asked
          ├── TransientError         throttling, 5xx, time-outs: retry later (.retry_after hint)
          │    └── QuotaExceeded     a resource quota (e.g. NEGs per project): waiting alone will not clear it
          ├── RejectedError          the API refused the batch as invalid (HTTP 400): bisect it
          ├── OwnershipConflict      the target exists but belongs to someone else: never touch it
          ├── InvalidTarget          the target cannot be used (e.g. target group type not ``ip``)
          └── TargetNotFound         the target does not exist (yet)
"""

from __future__ import annotations


class NegsyncError(Exception):
    """Base of every error negsync raises on purpose."""


class ConfigError(NegsyncError):
    """User input that cannot be used; ``field`` is a dotted path such as ``lb.attach_delay.p99``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ProviderError(NegsyncError):
    """A cloud call failed."""


class TransientError(ProviderError):
    """Worth retrying after a back-off; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(TransientError):
    """A resource quota is used up (not a per-minute rate): report it loudly and retry slowly."""


class RejectedError(ProviderError):
    """The API rejected a batch as invalid; one bad member fails the whole call."""


class OwnershipConflict(ProviderError):
    """The target is owned by another cluster, binding or tool."""


class InvalidTarget(ProviderError):
    """The target exists but cannot be managed by negsync as configured."""


class TargetNotFound(ProviderError):
    """The target does not exist."""
