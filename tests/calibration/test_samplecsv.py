"""Raw samples in a ``field,seconds`` CSV (:mod:`negsync.calibration.samplecsv`).

Bad rows through ``negsync calibrate --from`` (exit 2, one line naming the flag), the parser's
contract directly: one :class:`Measurement` per field, errors naming the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from negsync.calibration.samplecsv import is_csv, measurements
from negsync.cli import main
from negsync.errors import ConfigError


@pytest.mark.parametrize(
    ("content", "message"),
    [("field,seconds\nlb.nope,1\n", "field must be one of"), ("field,seconds\nlb.detach_delay,-1\n", ">= 0"),
     ("field,value\n", "header")],
)
def test_bad_input_is_one_line_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                               message: str) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    assert main(["calibrate", "--from", str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from" in err[0] and message in err[0]


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
