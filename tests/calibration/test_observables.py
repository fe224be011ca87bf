"""What a measurement says about itself (:mod:`negsync.calibration.observables`): summary, warnings, thinning."""

from __future__ import annotations

import numpy as np
import pytest

from negsync.calibration.observables import MAX_SAMPLES, MIN_SAMPLES, OBSERVABLES, PARAMETERS, Measurement, thin


def test_every_parameter_has_its_observable_defined() -> None:
    assert set(PARAMETERS) == set(OBSERVABLES)


def test_the_summary_gives_count_source_quantiles_observable_and_details() -> None:
    measured = Measurement("lb.detach_delay", tuple(float(v) for v in range(1, 101)), "alb.log",
                           details=("of which the detach call took p50 0.1 s",))
    first, detail = measured.summary().splitlines()
    assert first.startswith("calibrated lb.detach_delay: 100 samples from alb.log: p50 50.5 s, p99 99 s")
    assert first.endswith(f"({OBSERVABLES['lb.detach_delay']})")
    assert detail == "  of which the detach call took p50 0.1 s"


def test_too_few_samples_add_a_warning_after_the_cautions() -> None:
    few = Measurement("controller.reaction", (0.1,) * (MIN_SAMPLES - 1), "m", cautions=("bucketed",))
    assert few.warnings()[0] == "warning: controller.reaction: bucketed"
    assert len(few.warnings()) == 2 and f"only {MIN_SAMPLES - 1} samples" in few.warnings()[1]
    enough = Measurement("controller.reaction", (0.1,) * MIN_SAMPLES, "m")
    assert enough.warnings() == []


def test_thin_keeps_short_lists_rounded_and_in_order() -> None:
    assert thin([3.123456, 1.0, 2.00004]) == [3.1235, 1.0, 2.0]


def test_thin_keeps_the_shape_of_a_long_list_in_max_samples_values() -> None:
    values = np.random.default_rng(7).lognormal(0.0, 1.0, 20 * MAX_SAMPLES)
    thinned = thin(values.tolist())
    assert len(thinned) == MAX_SAMPLES and thinned == sorted(thinned)
    for q in (0.5, 0.9, 0.99):
        assert float(np.quantile(thinned, q)) == pytest.approx(float(np.quantile(values, q)), rel=0.02)
