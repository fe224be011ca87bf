"""The exception hierarchy (:mod:`negsync.errors`): what a caller can rely on when it catches one."""

from __future__ import annotations

import pytest

from negsync.errors import (
    ConfigError,
    InvalidTarget,
    NegsyncError,
    OwnershipConflict,
    ProviderError,
    QuotaExceeded,
    RejectedError,
    TargetNotFound,
    TransientError,
)


def test_a_config_error_names_its_field_first_and_keeps_both_parts() -> None:
    error = ConfigError("lb.attach_delay.p99", "must be >= p50")
    assert str(error) == "lb.attach_delay.p99: must be >= p50"
    assert (error.field, error.message) == ("lb.attach_delay.p99", "must be >= p50")


def test_a_config_error_without_a_field_is_just_the_message() -> None:
    assert str(ConfigError("", "no scenario given")) == "no scenario given"


def test_a_retry_hint_is_optional_and_keyword_only() -> None:
    assert TransientError("throttled").retry_after is None
    assert TransientError("throttled", retry_after=2.5).retry_after == 2.5
    with pytest.raises(TypeError):
        TransientError("throttled", 2.5)  # type: ignore[misc]


def test_a_quota_is_transient_so_the_retry_path_takes_it_and_slowly() -> None:
    quota = QuotaExceeded("NEGs per project", retry_after=600.0)
    assert isinstance(quota, TransientError) and quota.retry_after == 600.0


@pytest.mark.parametrize("kind", [TransientError, QuotaExceeded, RejectedError, OwnershipConflict, InvalidTarget,
                                  TargetNotFound])
def test_every_provider_error_is_caught_as_one_and_none_is_a_config_error(kind: type[ProviderError]) -> None:
    error = kind("x")
    assert isinstance(error, ProviderError) and isinstance(error, NegsyncError)
    assert not isinstance(error, ConfigError)


def test_only_throttling_and_quota_are_retried_as_transient() -> None:
    permanent = [RejectedError, OwnershipConflict, InvalidTarget, TargetNotFound]
    assert not any(issubclass(kind, TransientError) for kind in permanent)
