"""Properties of the pure diff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negsync.core.diffs import apply, diff
from negsync.core.model import TargetEndpoint

members = st.builds(
    TargetEndpoint,
    st.sampled_from([f"10.0.0.{i}" for i in range(1, 30)]),
    st.sampled_from([80, 8080]),
    st.sampled_from(["", "node-a"]),
)
member_sets = st.frozensets(members, max_size=40)


@given(desired=member_sets, actual=member_sets)
def test_applying_the_diff_to_actual_yields_desired(desired: frozenset, actual: frozenset) -> None:
    assert apply(diff(desired, actual), actual) == desired


@given(desired=member_sets, actual=member_sets, in_flight=member_sets)
def test_in_flight_members_are_left_to_their_call(desired: frozenset, actual: frozenset, in_flight: frozenset) -> None:
    plan = diff(desired, actual, in_flight)
    assert not (plan.attach | plan.detach) & in_flight
    # Everything not in flight converges.
    after = apply(plan, actual)
    assert after - in_flight == desired - in_flight


@given(desired=member_sets, actual=member_sets, owned=member_sets)
def test_only_owned_members_are_ever_detached(desired: frozenset, actual: frozenset, owned: frozenset) -> None:
    plan = diff(desired, actual, owned=owned)
    assert plan.detach <= owned
    assert plan.attach == desired - actual


@pytest.mark.parametrize(
    ("desired", "actual", "detach", "attach"),
    [
        ({"a", "b"}, {"b", "c"}, {"c"}, {"a"}),
        (set(), {"a"}, {"a"}, set()),
        ({"a"}, set(), set(), {"a"}),
        ({"a"}, {"a"}, set(), set()),
    ],
)
def test_diff_examples(desired: set, actual: set, detach: set, attach: set) -> None:
    def to(names: set) -> set[TargetEndpoint]:
        return {TargetEndpoint(f"10.0.0.{ord(n)}", 80) for n in names}

    plan = diff(to(desired), to(actual))
    assert plan.detach == to(detach)
    assert plan.attach == to(attach)
    assert bool(plan) == bool(detach or attach)
