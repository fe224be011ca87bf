"""Raw samples in a ``field,seconds`` CSV (:mod:`negsync.calibration.samplecsv`).

The parser's contract directly: one :class:`Measurement` per field, errors naming the line.  (Bad
rows through ``negsync calibrate --from`` — exit 2, one line naming the flag — are among the
command's bad inputs in tests/calibration/test_command.py.)
"""

from __future__ import annotations

import pytest

from negsync.calibration.samplecsv import is_csv, measurements
from negsync.errors import ConfigError


def test_rows_group_into_one_measurement_per_field_in_file_order() -> None:
    text = "field , seconds\ncontroller.reaction, 0.5\nlb.attach_delay,12\ncontroller.reaction,0.25\n"
    found = measurements(text, source="s.csv")
    assert [(m.parameter, m.samples, m.source) for m in found] == [
        ("controller.reaction", (0.5, 0.25), "s.csv"), ("lb.attach_delay", (12.0,), "s.csv")]


@pytest.mark.parametrize(
    ("row", "message"),
    [("lb.detach_delay,soon", "line 3: seconds is not a number: 'soon'"),
     ("lb.detach_delay,", "line 3: seconds is not a number"),
     ("lb.detach_delay,inf", "line 3: seconds must be >= 0"),
     ("lb.detach_delay,nan", "line 3: seconds must be >= 0"),
     ("lb.health_check,1", "line 3: field must be one of controller.reaction, lb.attach_delay, lb.detach_delay")],
)
def test_a_bad_row_names_its_line(row: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        measurements(f"field,seconds\nlb.detach_delay,1\n{row}\n", source="s.csv")
    assert raised.value.field == "--from" and message in raised.value.message


def test_a_csv_is_recognised_by_its_header_only() -> None:
    assert is_csv("\n  Field,seconds\n") and not is_csv("# TYPE x histogram\nfield,1\n")
