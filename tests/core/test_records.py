"""The reconcile records: when a result counts as synced, and the counts summed over targets."""

from __future__ import annotations

from negsync.core.model import BindingKey, TargetRef
from negsync.core.records import ReconcileResult, TargetStatus

KEY = BindingKey("shop", "web")
ZONE_A, ZONE_B = TargetRef("gcp", "zone-a", "neg"), TargetRef("gcp", "zone-b", "neg")


def test_synced_means_no_error_no_conflict_and_nothing_pending() -> None:
    done = (TargetStatus(ZONE_A, 3, 3, 2, 0, 0), TargetStatus(ZONE_B, 2, 2, 2, 1, 0))
    assert ReconcileResult(key=KEY, targets=done).synced
    assert ReconcileResult(key=KEY).synced  # no targets (yet): nothing to wait for
    pending = (done[0], TargetStatus(ZONE_B, 2, 1, 1, 0, 1))
    assert not ReconcileResult(key=KEY, targets=pending).synced
    assert not ReconcileResult(key=KEY, targets=done, errors=("zone-b: HTTP 503",)).synced
    assert not ReconcileResult(key=KEY, targets=done, conflicts=("zone-a: not ours",)).synced


def test_counts_are_summed_over_targets() -> None:
    result = ReconcileResult(key=KEY, targets=(TargetStatus(ZONE_A, 3, 3, 2, 0, 0), TargetStatus(ZONE_B, 2, 1, 1, 4, 1)))
    assert [result.count(name) for name in ("desired", "registered", "healthy", "draining", "pending")] == [5, 4, 3, 4, 1]
